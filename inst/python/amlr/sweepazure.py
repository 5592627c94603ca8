"""``r_sweep()`` and ``r_map()`` on Azure ML: a sweep node, a node per item, a gather node.

On ``azureml_v2`` a sweep stays one step and becomes a sweep job node:
:func:`azure_sweep` gives its search space, objective, sampling and limits in
the YAML's own shape (export and azure-ai-ml both read it), with choice
values written as amlr writes them locally. A map is expanded as it is
locally (:func:`amlr.sweep.expand`) into one node per item, and its gather
node runs :mod:`amlr.gather` from a code folder named by its content
(:func:`gather_code`). The classic backend refuses both, naming
``azureml_v2`` (:func:`refuse_on_classic`).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import Any, Callable, Mapping

from .sweep import expand
from .sweepspec import USER_ROLES, _fail, format_value, trial_values


def gather_code(snapshots_dir: str) -> str:
    """The code folder of a map's gather node on Azure ML: :mod:`amlr.gather`, named by its content."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gather.py")
    with open(source, "rb") as fh:
        data = fh.read()
    folder = os.path.join(snapshots_dir, "gather-" + hashlib.sha256(data).hexdigest()[:12])
    if not os.path.isfile(os.path.join(folder, "gather.py")):
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, "gather.py.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(folder, "gather.py"))
    return folder


def refuse_on_classic(pipeline: Any) -> None:
    """The classic SDK's HyperDrive cannot be a pipeline step that feeds others: say so, name azureml_v2."""
    from .errors import Unsupported

    for s in pipeline.steps:
        if s.fanout and s.fanout["role"] in USER_ROLES:
            what = "r_sweep()" if s.fanout["role"] == "sweep" else "r_map()"
            raise Unsupported(
                f"Step `{s.name}` is an {what}, which the classic `azureml` backend does not run (HyperDrive "
                "cannot feed the best trial's outputs to the next pipeline step). Submit with backend = "
                "\"azureml_v2\" (a sweep job node), or run it locally.")


def _azure_param_type(p: Mapping[str, Any]) -> str:
    return {"choice": "string", "randint": "integer"}.get(p["type"], "number")


def azure_sweep(step: Any) -> dict[str, Any]:
    """What an Azure ML sweep node needs, in the YAML's own shape (export and azure-ai-ml both read it).

    Choice values travel as strings written as amlr writes them locally
    (``1`` not ``1.0``, ``TRUE``), so a trial's script sees the same text on
    every backend; they must survive the shell that runs a v2 command.
    """
    from .stepcontract import SAFE_WORD_RE

    f = step.fanout
    space: dict[str, Any] = {}
    for name, p in f["params"].items():
        if p["type"] == "choice":
            values = [format_value(v) for v in p["values"]]
            bad = [v for v in values if not SAFE_WORD_RE.match(v)]
            if bad:
                raise _fail(f"steps[{step.name}].params.{name}",
                            f"Value {bad[0]!r} of parameter `{name}` would not survive the shell that runs an Azure "
                            "ML command (Azure ML puts it into the command line); use values of letters, digits "
                            "and ._-+,:=@%/ only, e.g. an index into a list the script holds.")
            space[name] = {"type": "choice", "values": values}
        elif p["type"] == "randint":
            space[name] = {"type": "randint", "upper": p["upper"]}
        else:
            space[name] = {"type": p["type"], "min_value": p["min_value"], "max_value": p["max_value"]}
    if f["sampling"] == "grid":
        total = len(trial_values(f))
        sampling: Any = "grid"
    else:
        total = f["max_trials"]
        sampling = {"type": "random", "seed": f["seed"]}
    limits: dict[str, Any] = {"max_total_trials": total}
    if f.get("max_concurrent"):
        limits["max_concurrent_trials"] = f["max_concurrent"]
    out = {
        "search_space": space,
        "param_types": {n: _azure_param_type(p) for n, p in f["params"].items()},
        "objective": {"goal": f["goal"], "primary_metric": f["objective"]},
        "sampling_algorithm": sampling,
        "limits": limits,
    }
    if f.get("early_termination"):
        policy = dict(f["early_termination"])
        policy.setdefault("evaluation_interval", 1)
        policy.setdefault("delay_evaluation", 0)
        out["early_termination"] = policy
    return out


def expand_maps_for_azure(pipeline: Any, folder_of: Callable[[Any, str], str]) -> Any:
    """Each r_map() as one node per item plus its gather step (a sweep stays one step: a sweep node)."""
    if not any(s.fanout and s.fanout["role"] == "map" for s in pipeline.steps):
        return pipeline
    only_maps = replace(pipeline, steps=[s for s in pipeline.steps if not (s.fanout and s.fanout["role"] == "sweep")])
    expanded = expand(only_maps, folder_of)
    sweeps = [s for s in pipeline.steps if s.fanout and s.fanout["role"] == "sweep"]
    from .spec import topological_order

    steps = list(expanded.steps) + sweeps
    return replace(pipeline, steps=topological_order(steps))
