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
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from . import sqlitedb
from .errors import HomeUnusable, RegistryDamaged, RunNotFound, StepNotFound
from .runrecord import ACTIVE, RUN_FILE, TERMINAL, read_metrics_file, record_from_folder, write_run_file

__all__ = ["ACTIVE", "SCHEMA_VERSION", "TERMINAL", "Registry", "default_home", "new_run_id"]

SCHEMA_VERSION = 2  # 2: indexes on runs.remote_id and runs.experiment

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
CREATE INDEX IF NOT EXISTS runs_remote_id ON runs (remote_id);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment, created);
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
    # The home and schema are checked once per thread and process; the file's
    # size (damage) on every operation.
    _local: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    @property
    def path(self) -> str:
        return os.path.join(self.home, "registry.sqlite")

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.home, "runs", run_id)

    def ensure_home(self) -> None:
        """Create AMLR_HOME, or say precisely why it cannot be used."""
        home = self.home
        fix = "Set AMLR_HOME to a folder you can write to (Sys.setenv(AMLR_HOME = ...)), or unset it."
        if os.path.exists(home) and not os.path.isdir(home):
            raise HomeUnusable(f"AMLR_HOME `{home}` is a file, not a folder. {fix}", field="home")
        try:
            os.makedirs(home, exist_ok=True)
        except (NotADirectoryError, FileExistsError):
            raise HomeUnusable(
                f"AMLR_HOME `{home}` cannot be created: part of that path is a file, not a folder. {fix}",
                field="home") from None
        except OSError as exc:
            raise HomeUnusable(
                f"AMLR_HOME `{home}` cannot be created ({exc.strerror or exc}). {fix}", field="home") from None
        if not os.access(home, os.W_OK | os.X_OK):
            raise HomeUnusable(f"AMLR_HOME `{home}` is not writable. {fix}", field="home")
        runs = os.path.join(home, "runs")
        if os.path.lexists(runs) and not os.path.isdir(runs):
            raise HomeUnusable(
                f"`{runs}` is a file, but amlr keeps its run folders there. Move that file away, "
                "or set AMLR_HOME to another folder.", field="home")
        if os.path.isdir(self.path):
            raise HomeUnusable(
                f"The run registry `{self.path}` is a folder, not a file. Move that folder away (then "
                "run_registry_rebuild() if run folders exist), or set AMLR_HOME to another folder.", field="home")

    def run_folders(self) -> list[str]:
        """Ids of the run folders under ``runs/`` that hold a recorded run."""
        root = os.path.join(self.home, "runs")
        try:
            names = sorted(os.listdir(root))
        except OSError:
            return []
        return [n for n in names
                if os.path.isfile(os.path.join(root, n, RUN_FILE)) or os.path.isfile(os.path.join(root, n, "spec.json"))]

    def _damaged(self, why: str) -> RegistryDamaged:
        return RegistryDamaged(
            f"The run registry `{self.path}` {why}. The run folders under `{os.path.join(self.home, 'runs')}` "
            "are the record: rebuild the registry from them with run_registry_rebuild() "
            "(the damaged file is kept next to it).",
            field="home",
        )

    def _check_file(self) -> None:
        """An emptied or missing registry next to recorded run folders is damage, not a fresh start."""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = -1
        if size > 0:
            return
        folders = self.run_folders()
        if folders:
            what = "is empty (0 bytes)" if size == 0 else "is missing"
            raise self._damaged(f"{what} but {len(folders)} run folder(s) exist")

    def _connect(self) -> sqlite3.Connection:
        """A new connection per operation (so nothing lingers to be inherited by a fork or to write
        back into a file that was emptied); the home, file and schema checks only the first time."""
        ready = getattr(self._local, "ready", None) == os.getpid()
        if not ready:
            self.ensure_home()
        self._check_file()  # one stat: an emptied or removed file is damage, never a fresh start
        try:
            con = sqlitedb.connect(self.path)
            if not ready:
                sqlitedb.ensure_schema(con, _SCHEMA, SCHEMA_VERSION)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        self._local.ready = os.getpid()
        return con

    def close(self) -> None:
        """Forget that this home was checked (the next operation checks it again)."""
        self._local.ready = None



    def _translate(self, exc: sqlite3.Error) -> Exception:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text
                                                       or "disk image" in text):
            return self._damaged(f"is not a valid SQLite database ({text})")
        if "readonly" in text or "unable to open" in text or "read-only" in text:
            return HomeUnusable(
                f"The run registry `{self.path}` cannot be written ({text}): AMLR_HOME `{self.home}` or the "
                "file is read-only. Make it writable, or set AMLR_HOME to a folder you can write to.",
                field="home")
        return exc

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._translate(exc) from None
        finally:
            con.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self.close()
                raise self._translate(exc) from None
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._translate(exc) from None
        finally:
            con.close()

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
            row = con.execute("SELECT id FROM runs WHERE id = ?", (run,)).fetchone() or \
                con.execute("SELECT id FROM runs WHERE remote_id = ? LIMIT 1", (run,)).fetchone()
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
            _insert_metrics(con, run_id, step, records)
        return len(records)

    def finish_step(self, run_id: str, name: str, metrics: list[dict[str, Any]], **fields: Any) -> None:
        """A step's end in one transaction: its fields and its metrics (one write per step event)."""
        if "outputs" in fields and not isinstance(fields["outputs"], str):
            fields["outputs"] = json.dumps(fields["outputs"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.write() as con:
            if metrics:
                _insert_metrics(con, run_id, name, metrics)
            con.execute(f"UPDATE steps SET {cols} WHERE run_id = ? AND name = ?", (*fields.values(), run_id, name))

    def get_metrics(self, run_id: str, step: Optional[str] = None) -> list[dict[str, Any]]:
        with self.read() as con:
            rows = con.execute(
                "SELECT m.step, m.name, m.value_num, m.value_str, m.idx, m.time FROM metrics m"
                " LEFT JOIN steps s ON s.run_id = m.run_id AND s.name = m.step"
                " WHERE m.run_id = ?" + (" AND m.step = ?" if step is not None else "") +
                " ORDER BY s.position, m.name, m.idx",
                (run_id,) if step is None else (run_id, step),
            ).fetchall()
        return [dict(r) for r in rows]

    # -- the run folders as the record ------------------------------------------

    def ensure(self) -> None:
        """Open (creating if needed) the registry, so damage is found before anything is written."""
        with self.read():
            pass

    def delete_run(self, run_id: str) -> None:
        """Forget a run that never started (a submit that failed half-way)."""
        with self.write() as con:
            con.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def write_run_file(self, run_id: str) -> None:
        """Mirror a local run's row and steps into ``runs/<id>/run.json`` (atomically)."""
        folder = self.run_dir(run_id)
        if os.path.isdir(folder):
            write_run_file(folder, self.get_run(run_id), self.get_steps(run_id))

    def rebuild(self) -> dict[str, Any]:
        """Re-create the registry from the run folders.

        A registry that cannot be opened is moved aside (``registry.sqlite.damaged-<time>``)
        first; one that can keeps its rows (remote runs included) and gains the
        local runs it lacks. Returns counts and where the old file went.
        """
        self.close()
        self.ensure_home()
        moved: Optional[str] = None
        usable = False
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            try:
                con = sqlitedb.connect(self.path)
                try:
                    con.execute("PRAGMA quick_check").fetchall()
                    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                    usable = True
                finally:
                    con.close()
            except sqlite3.Error:
                usable = False
        stale = [s for s in ("-wal", "-shm") if os.path.exists(self.path + s)]
        if (os.path.exists(self.path) and not usable) or (not os.path.exists(self.path) and stale):
            # A journal left next to a lost file must not be applied to the new one: it goes aside too.
            moved = f"{self.path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
            if os.path.exists(self.path):
                os.replace(self.path, moved)
            for suffix in stale:
                os.replace(self.path + suffix, moved + suffix)
        # A fresh file: create the schema before _check_file can object to the folders.
        con = sqlitedb.connect(self.path)
        try:
            sqlitedb.ensure_schema(con, _SCHEMA, SCHEMA_VERSION)
        finally:
            con.close()
        with self.read() as con:
            known = {r["id"] for r in con.execute("SELECT id FROM runs")}
        added: list[str] = []
        skipped: list[str] = []
        for run_id in self.run_folders():
            if run_id in known:
                continue
            try:
                run, steps = record_from_folder(self.run_dir(run_id), run_id)
            except (OSError, ValueError, KeyError, TypeError):
                skipped.append(run_id)
                continue
            self.insert_run(run, steps)
            self.update_run(run_id, **{k: run[k] for k in ("started", "ended", "error") if run.get(k) is not None})
            for step in steps:
                fields = {k: step[k] for k in ("reused", "reused_from", "exit_code", "started", "ended", "error")
                          if step.get(k) is not None}
                if "reused" in fields:
                    fields["reused"] = int(bool(fields["reused"]))
                if fields:
                    self.update_step(run_id, step["name"], **fields)
                metrics_file = os.path.join(self.run_dir(run_id), "metrics", f"{step['name']}.jsonl")
                self.add_metrics(run_id, step["name"], read_metrics_file(metrics_file))
            added.append(run_id)
        return {"path": self.path, "added": added, "skipped": skipped, "moved_to": moved,
                "runs": len(known) + len(added)}


def _insert_metrics(con: sqlite3.Connection, run_id: str, step: str, records: list[dict[str, Any]]) -> None:
    counts: dict[str, int] = {}
    for row in con.execute(
        "SELECT name, MAX(idx) + 1 AS n FROM metrics WHERE run_id = ? AND step = ? GROUP BY name", (run_id, step),
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
