"""Process bookkeeping for detached runners and their step processes.

A pid alone is not an identity: after a reboot or a long pause the same number
may belong to an unrelated process. Where the OS tells a process's start time
(Linux ``/proc``), the pair (pid, start time) is the identity we store.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Optional, Sequence


def python_executable() -> str:
    """The interpreter to start children with, also when Python is embedded in R.

    Under reticulate ``sys.executable`` may name the R binary, not Python.
    """
    exe = sys.executable or ""
    if "python" in os.path.basename(exe).lower():
        return exe
    for name in ("python3", "python"):
        for folder in ("bin", "Scripts", ""):
            candidate = os.path.join(sys.exec_prefix, folder, name + (".exe" if os.name == "nt" else ""))
            if os.path.isfile(candidate):
                return candidate
    return "python3"


def process_identity(pid: int) -> Optional[str]:
    """A string that changes if ``pid`` is reused; None if the process is gone."""
    if not pid_alive(pid):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
        # The command name may contain spaces and parentheses: split after the last ')'.
        fields = raw[raw.rindex(")") + 2 :].split()
        return f"{pid}:{fields[19]}"
    except (OSError, ValueError, IndexError):
        return f"{pid}:"


def pid_alive(pid: Optional[int]) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().decode("ascii", "replace")
            if state[state.rindex(")") + 2 :].startswith("Z"):
                return False  # a zombie has finished; nobody reaped it yet
        except (OSError, ValueError):
            pass
    return True


def same_process(pid: Optional[int], identity: Optional[str]) -> bool:
    if not pid:
        return False
    current = process_identity(pid)
    if current is None:
        return False
    return identity is None or current == identity or identity.endswith(":") or current.endswith(":")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate_group(pgid: Optional[int], grace: float = 5.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever is left after ``grace``."""
    if not pgid or os.name != "posix":
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def spawn_detached(argv: Sequence[str], *, cwd: str, log_path: str, env: Optional[dict] = None) -> subprocess.Popen:
    """Start ``argv`` in its own session so it outlives the R session that asked."""
    log = open(log_path, "ab")
    try:
        kwargs: dict = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True
        else:  # pragma: no cover - Windows
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | 0x00000008  # DETACHED_PROCESS
        return subprocess.Popen(
            list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, close_fds=True, **kwargs,
        )
    finally:
        log.close()
