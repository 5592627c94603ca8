"""The run registry: one SQLite file that every R session and runner shares.

Several R sessions submit and read at once, and detached runners write while
they do, so: WAL journal, a generous busy timeout, a connection per operation
and short ``BEGIN IMMEDIATE`` transactions. Remote runs are recorded here too,
which is what makes ``"latest"`` work for every backend.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from .errors import RunNotFound, StepNotFound

SCHEMA_VERSION = 1
TERMINAL = ("Completed", "Failed", "Canceled")
ACTIVE = ("NotStarted", "Queued", "Running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    run_dir TEXT,
    runner_pid INTEGER,
    runner_identity TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    remote_id TEXT,
    portal_url TEXT,
    workspace TEXT,
    n_steps INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    reused INTEGER NOT NULL DEFAULT 0,
    reused_from TEXT,
    exit_code INTEGER,
    started REAL,
    ended REAL,
    fingerprint TEXT,
    allow_reuse INTEGER NOT NULL DEFAULT 1,
    log_path TEXT,
    outputs TEXT,
    pid INTEGER,
    error TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS steps_fingerprint ON steps (fingerprint, status);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value_num REAL,
    value_str TEXT,
    time TEXT,
    PRIMARY KEY (run_id, step, name, idx)
);
"""


def default_home() -> str:
    """Where R's ``tools::R_user_dir("amlr", "data")`` points when R did not say."""
    env = os.environ.get("AMLR_HOME")
    if env:
        return env
    base = os.environ.get("R_USER_DATA_DIR") or os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "R", "amlr")


def new_run_id(prefix: str = "amlr") -> str:
    return time.strftime(f"{prefix}_%Y%m%d_%H%M%S_", time.gmtime()) + os.urandom(3).hex()


@dataclass
class Registry:
    home: str

    @property
    def path(self) -> str:
        return os.path.join(self.home, "registry.sqlite")

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.home, "runs", run_id)

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(self.home, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout = 60000")
        return con

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            self._ensure_schema(con)
            yield con
        finally:
            con.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            self._ensure_schema(con)
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _ensure_schema(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        # WAL is a property of the file: set once, outside a transaction.
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    con.execute(statement)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # -- runs -----------------------------------------------------------------

    def insert_run(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        with self.write() as con:
            con.execute(
                "INSERT INTO runs (id, experiment, pipeline, backend, status, created, run_dir, remote_id,"
                " portal_url, workspace, n_steps) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run["id"],
                    run["experiment"],
                    run["pipeline"],
                    run["backend"],
                    run.get("status", "NotStarted"),
                    run.get("created", time.time()),
                    run.get("run_dir"),
                    run.get("remote_id"),
                    run.get("portal_url"),
                    json.dumps(run["workspace"]) if run.get("workspace") else None,
                    len(steps),
                ),
            )
            for pos, step in enumerate(steps):
                con.execute(
                    "INSERT INTO steps (run_id, name, position, status, fingerprint, allow_reuse, log_path, outputs)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (
                        run["id"],
                        step["name"],
                        pos,
                        step.get("status", "NotStarted"),
                        step.get("fingerprint"),
                        int(step.get("allow_reuse", True)),
                        step.get("log_path"),
                        json.dumps(step.get("outputs") or {}),
                    ),
                )

    def update_run(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.write() as con:
            con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def update_step(self, run_id: str, name: str, **fields: Any) -> None:
        if "outputs" in fields and not isinstance(fields["outputs"], str):
            fields["outputs"] = json.dumps(fields["outputs"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.write() as con:
            con.execute(f"UPDATE steps SET {cols} WHERE run_id = ? AND name = ?", (*fields.values(), run_id, name))

    def resolve(self, run: Any) -> str:
        """A run id from an id or ``"latest"``."""
        if isinstance(run, dict):
            run = run.get("id")
        if run is None or run == "latest":
            with self.read() as con:
                row = con.execute("SELECT id FROM runs ORDER BY created DESC, rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise RunNotFound(
                    f"There are no runs yet in {self.home}; submit one with submit_r_pipeline()."
                )
            return row["id"]
        if not isinstance(run, str):
            raise RunNotFound("`run` must be an amlr_run, a run id or \"latest\".")
        with self.read() as con:
            row = con.execute("SELECT id FROM runs WHERE id = ? OR remote_id = ?", (run, run)).fetchone()
        if row is None:
            raise RunNotFound(f"No run `{run}` in {self.home}; see run_list() for the runs amlr knows.")
        return row["id"]

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.read() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"No run `{run_id}` in {self.home}; see run_list() for the runs amlr knows.")
        out = dict(row)
        out["workspace"] = json.loads(out["workspace"]) if out.get("workspace") else None
        return out

    def get_steps(self, run_id: str) -> list[dict[str, Any]]:
        with self.read() as con:
            rows = con.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,)).fetchall()
        out = []
        for row in rows:
            d = dict(row)
            d["outputs"] = json.loads(d["outputs"]) if d.get("outputs") else {}
            d["reused"] = bool(d["reused"])
            out.append(d)
        return out

    def get_step(self, run_id: str, name: str) -> dict[str, Any]:
        for s in self.get_steps(run_id):
            if s["name"] == name:
                return s
        names = ", ".join(s["name"] for s in self.get_steps(run_id))
        raise StepNotFound(f"Run `{run_id}` has no step `{name}` (its steps: {names}).")

    def list_runs(self, experiment: Optional[str] = None, limit: int = 20) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if experiment:
            sql += " WHERE experiment = ?"
            params.append(experiment)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit and limit > 0:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self.read() as con:
            rows = con.execute(sql, params).fetchall()
        return [dict(r) for r in rows]

    def find_reusable(self, fingerprint: str, exclude_run: str) -> Optional[dict[str, Any]]:
        with self.read() as con:
            rows = con.execute(
                "SELECT s.*, r.backend FROM steps s JOIN runs r ON r.id = s.run_id"
                " WHERE s.fingerprint = ? AND s.status = 'Completed' AND s.run_id != ? AND r.backend = 'local'"
                " ORDER BY s.ended DESC",
                (fingerprint, exclude_run),
            ).fetchall()
        for row in rows:
            d = dict(row)
            outputs = json.loads(d["outputs"]) if d.get("outputs") else {}
            if all(os.path.isdir(p) for p in outputs.values()):
                d["outputs"] = outputs
                return d
        return None

    # -- metrics --------------------------------------------------------------

    def add_metrics(self, run_id: str, step: str, records: list[dict[str, Any]]) -> int:
        if not records:
            return 0
        with self.write() as con:
            counts: dict[str, int] = {}
            for row in con.execute(
                "SELECT name, MAX(idx) + 1 AS n FROM metrics WHERE run_id = ? AND step = ? GROUP BY name",
                (run_id, step),
            ):
                counts[row["name"]] = row["n"]
            for rec in records:
                name = str(rec.get("name"))
                value = rec.get("value")
                idx = counts.get(name, 0)
                counts[name] = idx + 1
                num = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                text = None if num is not None else (None if value is None else str(value))
                con.execute(
                    "INSERT OR REPLACE INTO metrics (run_id, step, name, idx, value_num, value_str, time)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (run_id, step, name, idx, num, text, rec.get("time")),
                )
        return len(records)

    def get_metrics(self, run_id: str) -> list[dict[str, Any]]:
        with self.read() as con:
            rows = con.execute(
                "SELECT m.step, m.name, m.value_num, m.value_str, m.idx, m.time FROM metrics m"
                " LEFT JOIN steps s ON s.run_id = m.run_id AND s.name = m.step"
                " WHERE m.run_id = ? ORDER BY s.position, m.name, m.idx",
                (run_id,),
            ).fetchall()
        return [dict(r) for r in rows]
