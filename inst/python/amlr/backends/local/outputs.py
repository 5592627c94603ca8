"""Copying a local run's step outputs and logs into a folder (``run_download()``).

Everything is checked before anything is copied: the output exists, a
completed step's output folder was not deleted since, no target is
overwritten unless asked, and the destination is a folder that can be
written.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Optional

from ...errors import DestinationUnusable, FileExists, OutputNotFound, RunFolderMissing
from ...registry import Registry
from .status import require_folder


def download(reg: Registry, run: dict[str, Any], step: Optional[str], output: Optional[str], dest: str,
             overwrite: bool) -> list[str]:
    require_folder(run, "outputs and logs")
    chosen = [reg.get_step(run["id"], step)] if step else reg.get_steps(run["id"])
    copies: list[tuple[str, str]] = []
    for s in chosen:
        outs = s["outputs"] or {}
        if output is not None:
            if output not in outs:
                raise OutputNotFound(
                    f"Step `{s['name']}` of run `{run['id']}` has no output `{output}` "
                    f"(its outputs: {', '.join(outs) or 'none'}); pass one of those as `output`, or NULL for all.",
                    field="output")
            outs = {output: outs[output]}
        for name, path in outs.items():
            if s["status"] == "Completed" and not os.path.isdir(path):
                raise RunFolderMissing(
                    f"Output `{name}` of step `{s['name']}` (`{path}`) is gone: it was deleted after the run"
                    + (f" `{s.get('reused_from')}` made it" if s.get("reused_from") else "")
                    + ". Nothing was copied. Submit the pipeline again to make it anew"
                    + (" (allow_reuse = FALSE for that step)." if s.get("reused") else "."), field="output")
            copies.append((path, os.path.join(dest, s["name"], name)))
        if output is None and s.get("log_path") and os.path.exists(s["log_path"]):
            copies.append((s["log_path"], os.path.join(dest, s["name"], "logs", os.path.basename(s["log_path"]))))
    clashes = [target for _, target in copies if os.path.exists(target)]
    if clashes and not overwrite:
        raise FileExists(
            f"{len(clashes)} target(s) already exist, first `{clashes[0]}`; nothing was copied. "
            "Choose another `dest` or pass overwrite = TRUE."
        )
    check_destination(dest)
    written = []
    for src, target in copies:
        if not os.path.exists(src):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(src):
            if os.path.exists(target):
                shutil.rmtree(target)
            shutil.copytree(src, target)
        else:
            shutil.copy2(src, target)
        written.append(target)
    return written


def check_destination(dest: str) -> None:
    """A folder to copy into: not a file, not below one, writable (checked before copying anything)."""
    probe = os.path.abspath(dest)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        where = "is a file" if probe == os.path.abspath(dest) else f"is below the file `{probe}`"
        raise DestinationUnusable(f"`dest` `{dest}` {where}, not a folder; give a folder to copy into.", field="dest")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DestinationUnusable(
            f"`dest` `{dest}` cannot be written (`{probe}` is read-only for you); give a folder you can write to.",
            field="dest")
