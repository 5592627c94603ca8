"""Submitting a local run: expand sweeps and maps, write the plan, record the run, start its runner.

:func:`submit` turns every ``r_sweep()``/``r_map()`` into ordinary steps
(:mod:`amlr.sweep`), writes the plan (:mod:`.plan`), inserts the run and its
steps into the registry and starts a detached runner -- forked from this
process where :mod:`amlr.procs` allows it, the embedded bridge's warm spare
runner, else ``python -m amlr runner`` -- recording its pid and identity at once. A submit that fails leaves neither a
registry row nor a run folder behind.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from ... import procs, sweep
from ...registry import Registry
from ...spec import Pipeline
from .plan import input_folder, prepare
from .runner import run_runner



def _remove_run_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def submit(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    warnings: list[str] = []
    # r_sweep()/r_map(): ordinary steps per trial/item plus a collector step (amlr.sweep).
    pipeline = sweep.expand(pipeline, lambda step, name: input_folder(reg, step, name))
    run_dir = reg.run_dir(run_id)
    try:
        plan = prepare(reg, pipeline, run_id, warn=warnings.append)
    except BaseException:
        _remove_run_dir(run_dir)  # a failed submit leaves nothing behind
        raise
    try:
        return _record_and_start(reg, pipeline, experiment, run_id, options, plan, warnings)
    except BaseException:
        try:
            reg.delete_run(run_id)
        except Exception:  # noqa: BLE001, S110 - the original error is the one to report
            pass
        _remove_run_dir(run_dir)
        raise


def _start_runner(home: str, run_id: str, max_parallel: int, run_dir: str, regenerate: bool, log_path: str) -> int:
    """Start the run's detached runner; its pid.

    Forked from a standalone ``python -m amlr`` (no interpreter start-up); under
    an embedded Python, the bridge's warm spare runner (``procs.SPARE_RUNNER``);
    else a new interpreter.
    """
    if procs.FORK_RUNNER and os.name == "posix":
        return procs.fork_detached(lambda: run_runner(home, run_id, max_parallel, cwd=run_dir,
                                                      regenerate=regenerate), log_path=log_path)
    if procs.USE_SPARE_RUNNER:
        pid = procs.SPARE_RUNNER.take({"home": home, "run_id": run_id, "max_parallel": max_parallel,
                                       "cwd": run_dir, "regenerate": regenerate, "log_path": log_path,
                                       "env": dict(os.environ)})
        if pid is not None:
            return pid
    proc = procs.spawn_detached(
        [procs.python_executable(), "-S", "-m", "amlr", "runner", "--home", home, "--max-parallel",
         str(max_parallel), *(["--regenerate-outputs"] if regenerate else []), run_id],
        cwd=run_dir, log_path=log_path, env=procs.runner_env(),
    )
    proc.returncode = 0  # it outlives us: no warning about an unreaped child
    return proc.pid


def _record_and_start(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any],
                      plan: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    run_dir = reg.run_dir(run_id)
    reg.insert_run(
        {
            "id": run_id,
            "experiment": experiment,
            "pipeline": pipeline.name,
            "backend": "local",
            "status": "Queued",
            "run_dir": run_dir,
        },
        [
            {
                "name": s.name,
                "fingerprint": plan["steps"][s.name]["fingerprint"],
                "allow_reuse": s.allow_reuse,
                "log_path": plan["steps"][s.name]["log"],
                "outputs": plan["steps"][s.name]["outputs"],
            }
            for s in pipeline.steps
        ],
    )
    reg.write_run_file(run_id)
    max_parallel = int(options.get("max_parallel") or os.cpu_count() or 1)
    regenerate = bool(options.get("regenerate_outputs"))
    log_path = os.path.join(run_dir, "runner.log")
    pid = _start_runner(reg.home, run_id, max_parallel, run_dir, regenerate, log_path)
    # Record the runner at once, so a reader can tell a dead runner from a slow start.
    reg.update_run(run_id, runner_pid=pid, runner_identity=procs.process_identity(pid))
    out = reg.get_run(run_id)
    out["warnings"] = warnings
    return out
