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
from typing import Callable, Optional, Sequence


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


# True in a standalone ``python -m amlr`` process (single-threaded, ours to
# fork); False when Python is embedded in R, where forking would copy R.
FORK_RUNNER = False


def fork_detached(target: Callable[[], int], *, log_path: str) -> int:
    """Run ``target()`` in a detached grandchild; return its pid.

    Forking skips a fresh interpreter's start-up (tens of milliseconds on every
    local run). The double fork leaves no zombie behind: the grandchild is
    adopted by init, in a session of its own, with stdout/stderr in ``log_path``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child processes
        try:
            os.close(read_end)
            os.setsid()
            grandchild = os.fork()
            if grandchild:
                os.write(write_end, str(grandchild).encode("ascii"))
                os._exit(0)
            os.close(write_end)
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.closerange(3, 1024)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = target()
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        finally:
            os._exit(1)
    os.close(write_end)
    try:
        data = b""
        while True:
            chunk = os.read(read_end, 64)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        os.waitpid(child, 0)
    return int(data.decode("ascii"))


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
