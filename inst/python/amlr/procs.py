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
from typing import Any, Callable, Mapping, Optional, Sequence


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


def _proc_stat(pid: int) -> Optional[tuple[str, str, int, int]]:
    """(command, state, ppid, pgrp) from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("utf-8", "replace")
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        return comm, fields[0], int(fields[1]), int(fields[2])
    except (OSError, ValueError, IndexError):
        return None


def _all_pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def describe(pid: int) -> str:
    info = _proc_stat(pid)
    return f"pid {pid} ({info[0]})" if info else f"pid {pid}"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, where /proc tells."""
    out = []
    for pid in _all_pids():
        info = _proc_stat(pid)
        if info and info[3] == pgid and info[1] != "Z":
            out.append(pid)
    return sorted(out)


def signal_pid(pid: int, signum: int) -> None:
    """Send ``signum`` to one process that may be gone already."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to a process group that may be gone already."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_group(pgid: Optional[int], grace: float = 5.0) -> list[str]:
    """SIGTERM a process group, then SIGKILL whatever is left after ``grace``.

    Returns a description of each process that was still alive to be ended
    (where ``/proc`` tells; else an empty list).
    """
    if not pgid or os.name != "posix":
        return []
    # Processes already dying (a parent-death signal on its way) are not "left running".
    settle = time.monotonic() + 0.3
    members = group_members(pgid)
    while members and time.monotonic() < settle:
        time.sleep(0.02)
        members = group_members(pgid)
    found = [describe(p) for p in members]
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return found
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid) or (found and not group_members(pgid)):
            return found
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return found


# Signals that end a process by default and can be caught: a runner or a
# bootstrapper handles all of them, so none ends it without clean-up.
TERMINATING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Linux: adopt orphaned descendants (a step's ``setsid`` escapee) instead of init."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def orphans(exclude: Sequence[int] = ()) -> list[int]:
    """Our children that we did not start ourselves (adopted as a subreaper)."""
    me = os.getpid()
    skip = set(exclude)
    return sorted(pid for pid in _all_pids()
                  if pid not in skip and (_proc_stat(pid) or ("", "", 0, 0))[2] == me)


def reap_orphans(exclude: Sequence[int] = (), spare_groups: Sequence[int] = (), grace: float = 1.0,
                 rounds: int = 5) -> list[str]:
    """End and reap adopted orphans (not ``exclude``, not in ``spare_groups``); describe each.

    An orphan that leads its own process group (a ``setsid`` escapee) is ended
    with its whole group; what that leaves behind is adopted in turn, so this
    looks again, a few rounds.
    """
    spare = set(spare_groups)
    found: list[str] = []
    for _ in range(rounds):
        victims = [p for p in orphans(exclude) if (_proc_stat(p) or ("", "", 0, -1))[3] not in spare]
        if not victims:
            break
        for pid in victims:
            info = _proc_stat(pid)
            if info is None or info[1] == "Z":
                continue
            if info[3] == pid:  # a group leader: its group goes with it
                members = group_members(pid)
                found += [describe(m) for m in members]
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            else:
                found.append(describe(pid))
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        _reap(victims, grace)
    return list(dict.fromkeys(found))


def _reap(pids: Sequence[int], grace: float) -> None:
    deadline = time.monotonic() + grace
    pending = set(pids)
    while pending:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                pending.discard(pid)
        if not pending:
            return
        if time.monotonic() >= deadline:
            for pid in pending:
                try:
                    os.killpg(pid, signal.SIGKILL) if (_proc_stat(pid) or ("", "", 0, -1))[3] == pid \
                        else os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            for pid in pending:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            return
        time.sleep(0.05)


def exit_code(returncode: int) -> int:
    """Popen's -N (killed by signal N) as the shell's 128+N, as the bootstrapper reports it."""
    return 128 - returncode if returncode < 0 else returncode


def spawn_step(argv: Sequence[str], *, cwd: str, stdout: Any, env: dict) -> subprocess.Popen:
    """A step's bootstrapper, in a process group of its own (so the whole step can be ended)."""
    return subprocess.Popen(
        list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
        env=env, start_new_session=True,
    )


# True in a standalone ``python -m amlr`` process (single-threaded, ours to
# fork); False when Python is embedded in R, where forking would copy R.
FORK_RUNNER = False


def redirect_std(log_path: str) -> None:
    """Make this process a detached runner's: stdin from /dev/null, stdout and stderr appended to ``log_path``."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)


def runner_env(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment of a runner started as a new interpreter: amlr importable, output unbuffered."""
    env = dict(os.environ if environ is None else environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
            redirect_std(log_path)
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
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200) | 0x00000008  # DETACHED_PROCESS
        return subprocess.Popen(
            list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, close_fds=True, **kwargs,
        )
    finally:
        log.close()


# -- a spare runner for an embedded Python ------------------------------------------
#
# Python embedded in R (reticulate) cannot fork the runner -- that would copy the
# whole R session into a process that lives as long as the run -- and a fresh
# interpreter's start-up and imports are most of a short run's overhead. So the
# embedded bridge keeps one spare runner waiting: ``python -S -m amlr
# spare-runner``, started ahead of time in a session of its own with the local
# backend already imported. A submit hands it the run as one JSON line on its
# stdin and it becomes that run's runner; the next spare starts at once. A spare
# that reads end-of-file (its R session ended) exits.

USE_SPARE_RUNNER = False
"""Set by the embedded bridge (``api.embedded``); never in a standalone ``python -m amlr``."""


class SpareRunner:
    """The one waiting spare runner of this (embedded) Python."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.owner = 0  # a forked R child (mclapply) must not hand its runs to its parent's spare

    def ready(self) -> bool:
        return self.proc is not None and self.owner == os.getpid() and self.proc.poll() is None

    def start(self) -> Optional[int]:
        """Start the spare if none is waiting; its pid (None when spares are off or it cannot start)."""
        if not USE_SPARE_RUNNER or os.name != "posix":
            return None
        if self.proc is not None and self.ready():
            return self.proc.pid
        try:
            self.proc = subprocess.Popen(
                [python_executable(), "-S", "-m", "amlr", "spare-runner"], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=runner_env(), cwd=os.path.expanduser("~"),
                close_fds=True, start_new_session=True,
            )
        except OSError:
            self.proc = None
            return None
        self.owner = os.getpid()
        return self.proc.pid

    def take(self, job: dict[str, Any]) -> Optional[int]:
        """Hand ``job`` (what ``run_runner`` needs, its log and environment) to the spare; its pid, or None.

        None means no spare was ready and the caller starts a runner itself; a
        new spare is started then. After a spare is taken the next one is
        started when the run has been waited for (:meth:`start` from the
        follower), so its start-up does not compete with the run's own.
        """
        spare, ready = self.proc, self.ready()
        self.proc = None
        pid: Optional[int] = None
        if spare is not None and ready and spare.stdin is not None:
            import json

            try:
                spare.stdin.write(json.dumps(job).encode("utf-8") + b"\n")
                spare.stdin.close()
                spare.returncode = 0  # it outlives us as the run's runner: no warning about an unreaped child
                pid = spare.pid
            except OSError:  # it died between poll() and write(): the caller starts a runner
                pid = None
        if pid is None:
            self.start()
        return pid

    def stop(self) -> None:
        """Let a waiting spare exit (it reads end-of-file)."""
        spare, self.proc = self.proc, None
        if spare is not None and spare.stdin is not None:
            try:
                spare.stdin.close()
                spare.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


SPARE_RUNNER = SpareRunner()
