"""amlr.sqlitedb: the one way the registry and the store index open SQLite, with real files and processes."""
from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from amlr import sqlitedb
from amlr.registry import Registry
from amlr.store import Store

SCHEMA = "CREATE TABLE t (x INTEGER PRIMARY KEY);\nCREATE INDEX t_x ON t (x);\n"


def _create(path: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    try:
        barrier.wait(30)
        con = sqlitedb.connect(path)
        sqlitedb.ensure_schema(con, SCHEMA, 3)
        con.execute("INSERT INTO t DEFAULT VALUES")
        con.close()
        out.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        out.put(f"{type(exc).__name__}: {exc}")


def run_at_once(target, args, n: int = 6) -> list[str]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    return results


def test_processes_creating_a_new_file_at_once_all_succeed_and_the_schema_is_made_once(tmp_path):
    path = str(tmp_path / "db.sqlite")
    assert run_at_once(_create, (path,)) == ["ok"] * 6
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 6
    assert sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master")) == ["t", "t_x"]


def test_a_connection_has_rows_by_name_a_busy_timeout_and_normal_sync(tmp_path):
    con = sqlitedb.connect(str(tmp_path / "db.sqlite"))
    sqlitedb.ensure_schema(con, SCHEMA, 1)
    sqlitedb.ensure_schema(con, "CREATE TABLE t (y);", 1)  # already at version 1: nothing runs
    con.execute("INSERT INTO t (x) VALUES (7)")
    assert con.execute("SELECT x FROM t").fetchone()["x"] == 7
    assert con.execute("PRAGMA busy_timeout").fetchone()[0] == sqlitedb.BUSY_SECONDS * 1000
    assert con.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert con.isolation_level is None


def test_a_schema_that_fails_half_way_leaves_nothing_behind(tmp_path):
    con = sqlitedb.connect(str(tmp_path / "db.sqlite"))
    with pytest.raises(sqlite3.OperationalError):
        sqlitedb.ensure_schema(con, "CREATE TABLE a (x);\nCREATE TABLE a (x);", 1)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    sqlitedb.ensure_schema(con, SCHEMA, 1)  # and a later, correct attempt succeeds
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1


def _first_use(kind: str, home: str, barrier, out) -> None:
    try:
        barrier.wait(30)
        if kind == "registry":
            reg = Registry(home)
            reg.insert_run({"id": f"r{multiprocessing.current_process().pid}", "experiment": "e", "pipeline": "p",
                            "backend": "local"}, [{"name": "s"}])
            out.put(str(len(reg.list_runs(limit=100))))
        else:
            out.put(str(len(Store(home).list("data"))))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("kind", ["registry", "store"])
def test_sessions_using_a_fresh_home_at_once_neither_fail_nor_call_it_damaged(tmp_path, kind):
    results = run_at_once(_first_use, (kind, str(tmp_path / "home")))
    assert all(r.isdigit() for r in results), results


class LockedOnce:
    """A real connection whose first switch to WAL meets a locked file, as a racing creator can."""

    def __init__(self, con: sqlite3.Connection, message: str = "database is locked") -> None:
        self.con, self.message, self.refused = con, message, 0

    def execute(self, sql: str, *args):
        if "journal_mode" in sql and not self.refused:
            self.refused += 1
            raise sqlite3.OperationalError(self.message)
        return self.con.execute(sql, *args)


def test_a_locked_file_while_creating_the_schema_is_waited_for_not_reported(tmp_path):
    con = LockedOnce(sqlitedb.connect(str(tmp_path / "db.sqlite")))
    sqlitedb.ensure_schema(con, SCHEMA, 2)  # type: ignore[arg-type]
    assert con.refused == 1
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2


def test_other_errors_while_creating_the_schema_are_raised_at_once(tmp_path):
    con = LockedOnce(sqlitedb.connect(str(tmp_path / "db.sqlite")), "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        sqlitedb.ensure_schema(con, SCHEMA, 2)  # type: ignore[arg-type]


class StaleVersionOnce:
    """A real connection whose first look at user_version is stale: another process made the schema meanwhile."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con, self.stale = con, True

    def execute(self, sql: str, *args):
        if "user_version" in sql and "=" not in sql and self.stale:
            self.stale = False
            return self.con.execute("SELECT 0")
        return self.con.execute(sql, *args)


def test_a_schema_made_by_another_process_meanwhile_is_not_made_again(tmp_path):
    path = str(tmp_path / "db.sqlite")
    first = sqlitedb.connect(path)
    sqlitedb.ensure_schema(first, SCHEMA, 1)
    first.execute("INSERT INTO t (x) VALUES (1)")
    late = StaleVersionOnce(sqlitedb.connect(path))
    sqlitedb.ensure_schema(late, SCHEMA, 1)  # type: ignore[arg-type]  # checks again inside its transaction
    assert late.con.execute("SELECT count(*) FROM t").fetchone()[0] == 1
