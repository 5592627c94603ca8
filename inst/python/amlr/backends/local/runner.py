"""The local runner: one detached process that runs one local run to its end.

:class:`Runner` records the run as Running, schedules the steps in DAG order
on a thread pool (at most ``max_parallel`` at once, a sweep's or map's
``max_concurrent`` respected, steps downstream of a failure canceled), and
ends the run in a terminal state whatever happens: a signal from outside, a
``run_cancel()``, or a crash of its own. It becomes a subreaper so that what a
step leaves behind can be found and ended. Running one step is
:class:`.steprun.StepRunner`'s part; ``python -m amlr runner`` calls
:func:`run_runner`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Any, Optional

from ... import procs, sweep
from ...errors import AmlrError
from ...registry import ACTIVE, Registry
from ...spec import validate
from .steprun import StepRunner


class Runner(StepRunner):
    """Runs one local run to its end; lives in its own detached process."""

    def __init__(self, reg: Registry, run_id: str, max_parallel: int, regenerate: bool = False):
        self.reg = reg
        self.regenerate = regenerate
        self.run_id = run_id
        self.max_parallel = max(1, max_parallel)
        self.run_dir = reg.run_dir(run_id)
        with open(os.path.join(self.run_dir, "spec.json"), encoding="utf-8") as fh:
            self.plan = json.load(fh)
        self.pipeline = validate(self.plan["pipeline"], check_paths=False)
        self.cancelled = threading.Event()
        self.stopped_by: Optional[int] = None  # a signal from outside, not run_cancel()
        self.subreaper = False
        self.lock = threading.Lock()
        self.children: dict[str, subprocess.Popen] = {}
        self.outputs: dict[str, dict[str, str]] = {}

    def on_signal(self, signum: int, frame: Any) -> None:
        if frame is not None and self.stopped_by is None:
            self.stopped_by = signum
        self.cancelled.set()
        with self.lock:
            children = list(self.children.values())
        for child in children:
            procs.signal_group(child.pid, signal.SIGTERM)

    def run(self) -> str:
        for sig in procs.TERMINATING_SIGNALS:
            signal.signal(sig, self.on_signal)
        # Orphans of a step (a `setsid` escapee) become our children, so they can be found and ended.
        self.subreaper = procs.become_subreaper()
        self.reg.update_run(
            self.run_id,
            status="Running",
            started=time.time(),
            runner_pid=os.getpid(),
            runner_identity=procs.process_identity(os.getpid()),
        )
        status = "Failed"
        error: Optional[str] = None
        try:
            status, error = self._schedule()
            if self.subreaper:
                procs.reap_orphans(grace=1.0)
        except Exception as exc:  # the run must end in a terminal state whatever happens
            error = f"amlr runner crashed: {type(exc).__name__}: {exc}"
            for s in self.reg.get_steps(self.run_id):
                if s["status"] in ACTIVE:
                    self.reg.update_step(self.run_id, s["name"], status="Failed", error=error, ended=time.time())
            raise
        finally:
            self.reg.update_run(self.run_id, status=status, ended=time.time(), error=error)
            try:
                self.reg.write_run_file(self.run_id)
            except (OSError, AmlrError):
                pass
        return status

    def _schedule(self) -> tuple[str, Optional[str]]:
        steps = {s.name: s for s in self.pipeline.steps}
        pending = [s.name for s in self.pipeline.steps]
        state: dict[str, str] = {}
        # Only the runner schedules: readers and submitters skip this import.
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            while pending or running:
                if self.cancelled.is_set() or self.reg.get_run(self.run_id)["cancel_requested"]:
                    self.cancelled.set()
                    self.on_signal(signal.SIGTERM, None)
                for name in list(pending):
                    bad, ready = sweep.readiness(steps[name], state)
                    if self.cancelled.is_set() or bad:
                        reason = (
                            "the run was canceled" if self.cancelled.is_set()
                            else f"upstream step `{bad[0]}` ended {state[bad[0]]}"
                        )
                        state[name] = "Canceled"
                        self.reg.update_step(self.run_id, name, status="Canceled", error=reason)
                        pending.remove(name)
                    elif ready and len(running) < self.max_parallel and \
                            sweep.slot_free(steps[name], list(running.values()), steps):
                        pending.remove(name)
                        self.reg.update_step(self.run_id, name, status="Queued")
                        running[pool.submit(self._run_step, steps[name])] = name
                if not running:
                    continue
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    state[name] = fut.result()
        failed = sweep.failures(self.pipeline, state)
        if self.cancelled.is_set():
            if self.stopped_by is not None and not self.reg.get_run(self.run_id)["cancel_requested"]:
                name = signal.Signals(self.stopped_by).name
                return "Canceled", (f"the amlr runner (pid {os.getpid()}) was stopped by {name} from outside amlr "
                                    "(not run_cancel())")
            return "Canceled", "canceled by run_cancel()"
        if failed:
            return "Failed", f"step `{failed[0]}` failed"
        return "Completed", None


def run_runner(home: str, run_id: str, max_parallel: int, cwd: Optional[str] = None,
               regenerate: bool = False) -> int:
    if cwd:
        os.chdir(cwd)
    status = Runner(Registry(home), run_id, max_parallel, regenerate).run()
    return 0 if status == "Completed" else 1
