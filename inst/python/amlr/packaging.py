"""Per-step snapshots: one function every backend packages its steps with.

Each step gets its own snapshot -- its code (:mod:`amlr.stepcode`), the
bootstrapper and its contract (:mod:`amlr.stepcontract`) -- so a step's
snapshot hash is its code identity everywhere: the local backend's reuse
fingerprint, and the code asset / source directory that Azure ML's own reuse
compares. Identical snapshots share one folder (content-addressed), so an
Azure backend uploads each only once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional

from . import snapshot, stepcode, stepcontract
from .spec import Pipeline, Step

HERE = os.path.dirname(os.path.abspath(__file__))
BOOTSTRAPPER = os.path.join(HERE, "bootstrapper.py")
COMPANIONS = ("stepmetrics.py",)
"""What the bootstrapper imports: copied next to it, to ``_amlr/``, in every snapshot."""


def companions() -> dict[str, bytes]:
    """The bootstrapper's companion files as snapshot entries (reserved path -> bytes)."""
    out = {}
    for name in COMPANIONS:
        with open(os.path.join(HERE, name), "rb") as fh:
            out[f"{snapshot.RESERVED_DIR}/{name}"] = fh.read()
    return out


@dataclass
class StagedStep:
    snapshot: snapshot.Snapshot
    code: stepcode.StepCode
    contract: dict


def contract_for(step: Step, *, metrics_sink: str, values: Optional[Mapping[str, str]] = None) -> dict:
    return stepcontract.document(
        step=step.name, script=step.script, args=step.args, env=step.env, inputs=list(step.inputs),
        outputs=step.outputs, values=values, metrics_sink=metrics_sink,
    )


def _reader(root: str) -> Callable[[str], str]:
    def read(rel: str) -> str:
        with open(os.path.join(root, *rel.split("/")), "rb") as fh:
            return fh.read(4 * 1024 * 1024).decode("utf-8")

    return read


def stage_steps(pipeline: Pipeline, snapshots_dir: str, *, metrics_sink: str,
                values: Callable[[Step], Mapping[str, str]] = lambda step: {},
                exclude: Iterable[str] = (), warn: Optional[Callable[[str], None]] = None,
                store: Optional[str] = None) -> dict[str, StagedStep]:
    """Snapshot every step of ``pipeline`` under ``snapshots_dir/<hash12>``."""
    exclude = list(exclude)
    listings: dict[str, list[str]] = {}
    scripts: dict[str, set[str]] = {}
    for step in pipeline.steps:
        src = os.path.realpath(step.source_dir)
        if src not in listings:
            listings[src] = snapshot.list_files(src, exclude, warn=warn)
        scripts.setdefault(src, set()).add(step.script.replace(os.sep, "/"))
    snapshot.require_scripts(pipeline.steps, listings)
    warned: set[str] = set()

    def warn_once(message: str) -> None:
        if warn is not None and message not in warned:
            warned.add(message)
            warn(message)

    out: dict[str, StagedStep] = {}
    runtime = companions()
    for step in pipeline.steps:
        src = os.path.realpath(step.source_dir)
        script = step.script.replace(os.sep, "/")
        code = stepcode.step_code(script, listings[src], _reader(src), other_scripts=scripts[src] - {script},
                                  extra_files=step.files)
        contract = contract_for(step, metrics_sink=metrics_sink, values=values(step))
        extra = {**runtime, stepcontract.contract_path(step.name): stepcontract.to_bytes(contract)}
        snap = snapshot.stage_snapshot(src, snapshots_dir, bootstrapper_path=BOOTSTRAPPER, warn=warn_once,
                                       exclude=exclude, files=code.files, extra=extra, store=store)
        out[step.name] = StagedStep(snap, code, contract)
    return out
