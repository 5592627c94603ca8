"""Delete old runs and the stored content that only they use (``run_prune()``).

A local run folder holds its snapshots (hard links into the content store
``<home>/objects``), logs, metrics and outputs. Pruning a run removes its
folder and its registry rows; a store object that no remaining snapshot links
to any more (link count 1: only the store's own name) goes too. Runs that are
still active are never pruned, nor are runs whose outputs a later run reused
unless that later run is pruned as well: deleting them would turn the later
run's outputs into dangling paths. A dry run says what would go and how many
bytes that frees, without touching anything.

Remote runs (Azure ML) lose only their local record and run folder; the jobs
on Azure ML stay.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Any, Iterable, Optional

from .errors import BadRequest
from .registry import ACTIVE, Registry

DAY = 86400.0


def _walk_files(root: str) -> Iterable[os.stat_result]:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                yield os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue


def choose(runs: list[dict[str, Any]], *, keep: Optional[int], older_than_days: Optional[float],
           now: Optional[float] = None) -> list[dict[str, Any]]:
    """The runs to prune: beyond the ``keep`` newest and/or older than the cut-off; never active ones."""
    now = time.time() if now is None else now
    ordered = sorted(runs, key=lambda r: r["created"], reverse=True)
    out = []
    for i, run in enumerate(ordered):
        if run["status"] in ACTIVE:
            continue
        beyond_keep = keep is None or i >= keep
        old_enough = older_than_days is None or now - run["created"] >= older_than_days * DAY
        if beyond_keep and old_enough:
            out.append(run)
    return out


def _reused_by_survivors(reg: Registry, chosen: set[str]) -> set[str]:
    """Chosen runs whose outputs a run that stays has reused: they stay too."""
    with reg.read() as con:
        rows = con.execute("SELECT DISTINCT run_id, reused_from FROM steps WHERE reused = 1 AND reused_from IS NOT NULL")
        pairs = [(r["run_id"], r["reused_from"]) for r in rows]
    return {origin for user, origin in pairs if origin in chosen and user not in chosen}


def freed_bytes(folders: list[str], store: str) -> int:
    """Bytes that deleting ``folders`` frees: files whose every link is inside them (or is the store's blob)."""
    store_inodes: set[tuple[int, int]] = set()
    if os.path.isdir(store):
        store_inodes = {(st.st_dev, st.st_ino) for st in _walk_files(store)}
    links: dict[tuple[int, int], list[int]] = {}
    for folder in folders:
        for st in _walk_files(folder):
            entry = links.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size])
            entry[0] += 1
    total = 0
    for key, (seen, nlink, size) in links.items():
        if seen + (1 if key in store_inodes else 0) >= nlink:
            total += size
    return total


def collect_store(store: str) -> int:
    """Remove store objects that no snapshot links to any more; bytes freed."""
    freed = 0
    if not os.path.isdir(store):
        return 0
    for dirpath, _dirs, files in os.walk(store):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if st.st_nlink <= 1:
                    os.remove(path)
                    freed += st.st_size
            except OSError:
                continue
    return freed


def prune(reg: Registry, *, keep: Optional[int] = None, older_than_days: Optional[float] = None,
          experiment: Optional[str] = None, dry_run: bool = False) -> dict[str, Any]:
    if keep is None and older_than_days is None:
        raise BadRequest("Say which runs to prune: keep = <how many of the newest to keep> and/or "
                         "older_than = <days>.", field="keep")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise BadRequest(f"`keep` must be a whole number of runs (0 or more), not {keep!r}.", field="keep")
    if older_than_days is not None and (isinstance(older_than_days, bool)
                                        or not isinstance(older_than_days, (int, float)) or older_than_days < 0):
        raise BadRequest(f"`older_than` must be a number of days (0 or more), not {older_than_days!r}.",
                         field="older_than")
    runs = reg.list_runs(experiment, limit=0)
    chosen = choose(runs, keep=keep, older_than_days=older_than_days)
    ids = {r["id"] for r in chosen}
    kept_for_reuse = _reused_by_survivors(reg, ids)
    chosen = [r for r in chosen if r["id"] not in kept_for_reuse]
    folders = [r["run_dir"] for r in chosen if r.get("run_dir") and os.path.isdir(r["run_dir"])]
    store = os.path.join(reg.home, "objects")
    out: dict[str, Any] = {
        "runs": [r["id"] for r in chosen],
        "kept_for_reuse": sorted(kept_for_reuse),
        "bytes": freed_bytes(folders, store),
        "dry_run": dry_run,
    }
    if dry_run or not chosen:
        return out
    with reg.write() as con:
        for run in chosen:
            con.execute("DELETE FROM metrics WHERE run_id = ?", (run["id"],))
            con.execute("DELETE FROM steps WHERE run_id = ?", (run["id"],))
            con.execute("DELETE FROM runs WHERE id = ?", (run["id"],))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    collect_store(store)
    return out
