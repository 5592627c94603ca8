"""A local run's step logs, read whole, as a head or tail, or followed from a cursor.

Each step's log is a file in the run folder; a reused step shows the log of
the run that executed it, headed by where it came from. :func:`follow` and
:func:`follow_chunks` return what was written since a cursor (step -> byte
offset), only complete lines while a step runs, so a waiting R session
prints each line once; nothing is ever dropped.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ...errors import AmlrError
from ...registry import TERMINAL, Registry
from .status import require_folder


def _read_lines(path: Optional[str], n: Optional[int] = None, tail: bool = False) -> list[str]:
    """A log's lines; with ``n``, only the first (or, with ``tail``, the last) ``n``, reading no more than that."""
    if not path or not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        if n is None:
            return fh.read().decode("utf-8", "replace").splitlines()
        if not tail:
            out: list[str] = []
            for raw in fh:
                if len(out) >= n:
                    break
                out.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
            return out
        return _tail_lines(fh, n)


def _tail_lines(fh: Any, n: int, block: int = 64 * 1024) -> list[str]:
    """The last ``n`` lines, read backwards block by block (memory: those lines and one block)."""
    end = fh.seek(0, os.SEEK_END)
    data = b""
    pos = end
    while pos > 0 and data.count(b"\n") <= n:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        data = fh.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:] if n else []


def _step_log(reg: Registry, s: dict[str, Any], n: Optional[int] = None, tail: bool = False) -> list[str]:
    """A step's log; for a reused step, the log of the run that executed it, headed by where it came from."""
    lines = _read_lines(s.get("log_path"), n, tail)
    if not s.get("reused") or not s.get("reused_from"):
        return lines
    try:
        origin = reg.get_step(s["reused_from"], s["name"])
    except AmlrError:
        lines = lines + [f"amlr: the log of run {s['reused_from']} is no longer available."]
    else:
        lines = lines + [f"amlr: ---- log of step `{s['name']}` in run {s['reused_from']} ----"] + \
            _read_lines(origin.get("log_path"), n, tail)
    if n is None:
        return lines
    return lines[-n:] if tail else lines[:n]



def logs(reg: Registry, run: dict[str, Any], step: Optional[str], n: Optional[int] = None,
         tail: bool = False) -> dict[str, list[str]]:
    require_folder(run, "logs")
    chosen = [reg.get_step(run["id"], step)] if step else reg.get_steps(run["id"])
    out = {}
    for s in chosen:
        path = s.get("log_path")
        if path and not os.path.exists(path) and s["status"] in ("Completed", "Failed") and not s.get("reused"):
            out[s["name"]] = [f"amlr: the log file of step `{s['name']}` ({path}) is missing; it was deleted."]
        else:
            out[s["name"]] = _step_log(reg, s, n, tail)
    return out


def follow(reg: Registry, run: dict[str, Any], cursor: dict[str, int]) -> dict[str, Any]:
    """New complete log lines since ``cursor`` (step -> byte offset)."""
    finished = run["status"] in TERMINAL
    out: list[dict[str, str]] = []
    new_cursor = dict(cursor)
    for s in reg.get_steps(run["id"]):
        path = s.get("log_path")
        if not path or not os.path.exists(path):
            continue
        offset = int(cursor.get(s["name"], 0))
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(4 * 1024 * 1024)
        step_done = finished or s["status"] in TERMINAL
        if not step_done:
            cut = chunk.rfind(b"\n")
            chunk = chunk[: cut + 1] if cut >= 0 else b""
        if not chunk:
            continue
        new_cursor[s["name"]] = offset + len(chunk)
        for line in chunk.decode("utf-8", "replace").splitlines():
            out.append({"step": s["name"], "line": line})
    return {"lines": out, "cursor": new_cursor}


DONE_KEY = ""  # cursor entry listing the steps whose whole log has been sent (no step has this name)


def follow_chunks(reg: Registry, run: dict[str, Any], cursor: dict[str, Any], steps: list[dict[str, Any]],
                  limit: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """New log text of each step since ``cursor`` (step -> byte offset), in chunks of at most ``limit`` bytes.

    Only steps that have started are looked at, and a step whose log was sent
    to its end after it finished is not looked at again. A chunk ends at a
    line end unless the step has finished (its last, unterminated line) or a
    single line is longer than ``limit``; nothing is ever dropped.
    """
    cursor = dict(cursor)
    done = set(cursor.get(DONE_KEY) or [])
    finished = run["status"] in TERMINAL
    chunks: list[dict[str, str]] = []
    for s in steps:
        name = s["name"]
        if name in done or (s["status"] in ("NotStarted", "Queued") and not finished):
            continue
        path = s.get("log_path")
        step_done = finished or s["status"] in TERMINAL
        offset = int(cursor.get(name, 0))
        try:
            size = os.stat(path).st_size if path else 0
        except OSError:
            size = 0
        if path and size > offset:
            with open(path, "rb") as fh:
                fh.seek(offset)
                while offset < size:
                    data = fh.read(min(limit, size - offset))
                    if not data:
                        break
                    if offset + len(data) < size or not step_done:
                        cut = data.rfind(b"\n")
                        if cut >= 0:
                            data = data[:cut + 1]
                        elif len(data) < limit:
                            break  # a partial line: wait for its end
                    offset += len(data)
                    chunks.append({"step": name, "text": data.decode("utf-8", "replace")})
                    fh.seek(offset)
            cursor[name] = offset
        if step_done and offset >= size:
            done.add(name)
    cursor[DONE_KEY] = sorted(done)
    return chunks, cursor
