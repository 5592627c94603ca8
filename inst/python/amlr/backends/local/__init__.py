"""The local backend: every step a process on this machine, in DAG order.

``submit`` packages the snapshots, records the run and starts a detached
runner (forked, or ``python -m amlr runner``); the runner schedules the
steps, starts each step's R with the bootstrapper's own checks and
environment, and writes status, logs and metrics to the run folder and the
registry. Readers never trust a "Running" row blindly: if the
runner is gone, the run is marked Failed with the reason.
"""
# The backend is split along that path: env (what a step inherits of the
# session), plan (snapshots and fingerprints: spec.json), launch (submit),
# runner (the run: scheduling, signals, its end) and steprun (one step: reuse,
# inputs, R, outputs), then the readers: status (refresh, cancel, waiting for
# the end), logfiles (logs, follow) and outputs (download). This module is the
# backend's entry (backends.BACKENDS): the Backend protocol and the optional
# hooks the bridge looks for (follow_chunks, end_waiter, folder_note,
# POLL_SECONDS); everything else is imported from its own module. submit
# imports launch when called, so readers and the runner skip packaging.
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .logfiles import follow, follow_chunks, logs
from .outputs import download
from .status import POLL_SECONDS, cancel, end_waiter, folder_note, metrics, refresh, steps

if TYPE_CHECKING:  # pragma: no cover - types only
    from ...registry import Registry
    from ...spec import Pipeline

__all__ = ["POLL_SECONDS", "cancel", "download", "end_waiter", "folder_note", "follow", "follow_chunks", "logs",
           "metrics", "refresh", "steps", "submit"]


def submit(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """Stage, record and start a local run (:func:`.launch.submit`).

    Imported only when a run is submitted: a reader (status, logs, waiting)
    and ``python -m amlr runner`` skip packaging and snapshots.
    """
    from .launch import submit as launch

    return launch(reg, pipeline, experiment, run_id, options)
