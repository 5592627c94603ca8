"""A local run's state as readers see it: a dead runner noticed, the run folder checked, cancel.

A reader never trusts a "Running" row blindly: :func:`refresh` marks a run
whose runner process is gone (killed, or the machine restarted) as Failed,
with the reason, and ends its steps' processes. :func:`end_waiter` lets a
waiting reader sleep until the runner ends (a Linux pidfd) instead of
polling; :func:`cancel` asks the runner to stop and makes sure no step process
survives. A run whose folder was deleted says so (:func:`require_folder`).
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Optional

from ... import procs
from ...errors import RunFolderMissing, RunNotActive
from ...registry import ACTIVE, TERMINAL, Registry

POLL_SECONDS = 0.1  # how often a waiting reader looks at the run folder (the run's end wakes it at once)


def _runner_accounted_for(run: dict[str, Any]) -> bool:
    """True unless the run is unfinished and nobody is running it."""
    if run["status"] in TERMINAL:
        return True
    if run.get("runner_pid"):
        return procs.same_process(run["runner_pid"], run.get("runner_identity"))
    # Submit records the runner right after starting it; give a slow start time.
    return time.time() - run["created"] < 30


def refresh(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    """Mark a run whose runner died as Failed, and clean up after it."""
    if _runner_accounted_for(run):
        return run
    # Look again: the runner may have finished, or been recorded, since the first read.
    run = reg.get_run(run["id"])
    if _runner_accounted_for(run):
        return run
    reason = (
        f"the amlr runner process (pid {run.get('runner_pid')}) ended before the run did "
        "(killed, or the machine restarted)"
    )
    for s in reg.get_steps(run["id"]):
        if s["status"] in ACTIVE:
            if s.get("pid"):
                procs.terminate_group(s["pid"], grace=1.0)
            reg.update_step(run["id"], s["name"], status="Failed" if s["status"] == "Running" else "Canceled",
                            error=reason, ended=time.time())
    reg.update_run(run["id"], status="Failed", error=reason, ended=time.time())
    try:
        reg.write_run_file(run["id"])
    except OSError:
        pass
    return reg.get_run(run["id"])


def steps(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    return reg.get_steps(run["id"])


def require_folder(run: dict[str, Any], what: str) -> None:
    """A run whose folder is gone says so, instead of answering with nothing."""
    folder = run.get("run_dir")
    if folder and not os.path.isdir(folder):
        raise RunFolderMissing(
            f"The folder of run `{run['id']}` (`{folder}`) is gone, so its {what} are lost; the registry only "
            "indexes it. Restore the folder from a backup, or submit the pipeline again.", field="run")


def folder_note(run: dict[str, Any]) -> dict[str, Any]:
    folder = run.get("run_dir")
    if folder and not os.path.isdir(folder):
        run = dict(run)
        run["folder_missing"] = True
    return run


class RunnerWaiter:
    """Sleep until a timeout or until the local runner process ends, whichever is first (a pidfd)."""

    def __init__(self, fd: int):
        import select

        self.fd = fd
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def __call__(self, timeout: float) -> bool:
        return bool(self.poller.poll(max(0, int(timeout * 1000))))

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def end_waiter(reg: Registry, run: dict[str, Any]) -> Optional[RunnerWaiter]:
    """A waiter on the run's runner, where the OS can tell us when a process ends (Linux pidfds)."""
    pid = run.get("runner_pid")
    if run["status"] in TERMINAL or not pid or not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not procs.same_process(pid, run.get("runner_identity")):  # the pid was reused: not our runner
        os.close(fd)
        return None
    return RunnerWaiter(fd)


def cancel(reg: Registry, run: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    if run["status"] in TERMINAL:
        raise RunNotActive(f"Run `{run['id']}` has already ended ({run['status']}); there is nothing to cancel.")
    reg.update_run(run["id"], cancel_requested=1)
    pid = run.get("runner_pid")
    if pid and procs.same_process(pid, run.get("runner_identity")):
        procs.signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and procs.pid_alive(pid):
            time.sleep(0.05)
    # Whatever the runner managed, no step process may survive a cancel.
    for s in reg.get_steps(run["id"]):
        if s.get("pid"):
            procs.terminate_group(s["pid"], grace=1.0)
        if s["status"] in ACTIVE:
            reg.update_step(run["id"], s["name"], status="Canceled", error="canceled by run_cancel()", ended=time.time())
    run = reg.get_run(run["id"])
    if run["status"] not in TERMINAL:
        reg.update_run(run["id"], status="Canceled", ended=time.time(), error="canceled by run_cancel()")
    return reg.get_run(run["id"])


def metrics(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    return reg.get_metrics(run["id"])
