"""A local run's record outside the database: its statuses, ``run.json``, metrics files.

Every local run folder (``AMLR_HOME/runs/<id>/``) holds ``run.json`` (the run's
row and its steps, rewritten at each step event), ``spec.json`` (the plan),
the step logs and ``metrics/<step>.jsonl``. These are what the registry is
rebuilt from when the SQLite file is lost or damaged (:meth:`Registry.rebuild`):
:func:`record_from_folder` reads ``run.json``, or failing that ``spec.json``
and the final line of each step log.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

TERMINAL = ("Completed", "Failed", "Canceled")
ACTIVE = ("NotStarted", "Queued", "Running")

RUN_FILE = "run.json"
"""In each local run folder: the run's own record, from which the registry can be rebuilt."""
RUN_FIELDS = ("id", "experiment", "pipeline", "backend", "status", "created", "started", "ended", "error", "n_steps")
STEP_FIELDS = ("name", "position", "status", "reused", "reused_from", "exit_code", "started", "ended",
               "fingerprint", "allow_reuse", "log_path", "outputs", "error")


def write_run_file(folder: str, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    """``run.json`` in ``folder`` from the run's row and its step rows, replaced atomically."""
    record = {k: run.get(k) for k in RUN_FIELDS}
    record["steps"] = [{k: s.get(k) for k in STEP_FIELDS} for s in steps]
    tmp = os.path.join(folder, f".{RUN_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(folder, RUN_FILE))


REBUILT_REASON = "the registry was rebuilt from the run folder; how this run ended was not recorded"


def read_metrics_file(path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "name" in rec:
                out.append(rec)
    return out


def log_exit(path: Optional[str]) -> Optional[int]:
    """The exit code that a step log's final bootstrapper line reports."""
    if not path or not os.path.exists(path):
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 4096))
        tail = fh.read().decode("utf-8", "replace").splitlines()
    for line in reversed(tail):
        if line.startswith("Pipeline step execution returned "):
            try:
                return int(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
        if line.startswith("Pipeline step execution was terminated by signal "):
            try:
                return 128 + int(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def record_from_folder(folder: str, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run row and its step rows from ``run.json``, else from ``spec.json`` and the logs."""
    path = os.path.join(folder, RUN_FILE)
    rec: Any = None
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            rec = None  # damaged: fall back to spec.json and the logs
    if isinstance(rec, dict) and rec.get("experiment"):
        steps = rec.get("steps") or []
        run = {k: rec.get(k) for k in ("experiment", "pipeline", "backend", "status", "created", "started",
                                       "ended", "error")}
        run["id"] = run_id
        run["run_dir"] = folder
        if run["status"] not in TERMINAL:
            run["status"], run["error"] = "Failed", REBUILT_REASON
            for s in steps:
                if s.get("status") not in TERMINAL:
                    s["status"], s["error"] = "Failed", REBUILT_REASON
        return run, steps
    with open(os.path.join(folder, "spec.json"), encoding="utf-8") as fh:
        plan = json.load(fh)
    created = os.path.getmtime(os.path.join(folder, "spec.json"))
    steps = []
    codes = []
    for pos, (name, info) in enumerate(plan["steps"].items()):
        code = log_exit(info.get("log"))
        codes.append(code)
        status = "Completed" if code == 0 else "Failed"
        steps.append({"name": name, "position": pos, "status": status, "exit_code": code,
                      "fingerprint": info.get("fingerprint"), "log_path": info.get("log"),
                      "outputs": info.get("outputs") or {},
                      "error": None if code == 0 else (REBUILT_REASON if code is None else f"exit code {code}")})
    ok = all(c == 0 for c in codes)
    name = plan["pipeline"]["name"]
    run = {"id": run_id, "experiment": name, "pipeline": name, "backend": "local",
           "status": "Completed" if ok else "Failed", "created": created, "run_dir": folder,
           "error": None if ok else REBUILT_REASON}
    return run, steps
