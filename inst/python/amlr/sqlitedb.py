"""The SQLite files amlr keeps -- the run registry and the asset store's index -- opened one way.

Both are shared by several processes (R sessions, detached runners), so: a
connection per operation, autocommit with explicit ``BEGIN IMMEDIATE``
transactions, a generous busy timeout, WAL journal, ``synchronous = NORMAL``
(a commit is in the WAL file before it returns: a crash of any process loses
nothing, only a power cut can lose the last commits), and the schema created
once, in a transaction, its version in ``PRAGMA user_version``.
"""
from __future__ import annotations

import sqlite3
import time

BUSY_SECONDS = 60


def connect(path: str) -> sqlite3.Connection:
    """A connection to ``path`` with rows as :class:`sqlite3.Row` and the busy timeout set."""
    con = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {BUSY_SECONDS * 1000}")
        con.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        con.close()
        raise
    return con


def ensure_schema(con: sqlite3.Connection, schema: str, version: int) -> None:
    """Create ``schema`` (statements separated by ``;``) unless ``user_version`` is already ``version``.

    Switching a new file to WAL does not wait for a busy file, so two processes
    creating it at once would see "database is locked": that is retried (up to
    the busy timeout), never reported as damage.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            if con.execute("PRAGMA user_version").fetchone()[0] >= version:
                return
            con.execute("PRAGMA journal_mode = WAL")  # a property of the file: outside a transaction
            con.execute("BEGIN IMMEDIATE")
            try:
                if con.execute("PRAGMA user_version").fetchone()[0] < version:
                    for statement in filter(None, (s.strip() for s in schema.split(";"))):
                        con.execute(statement)
                    con.execute(f"PRAGMA user_version = {int(version)}")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
