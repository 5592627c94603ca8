"""The local run's plan, written as ``spec.json`` in the run folder before anything runs.

:func:`prepare` stages each step's snapshot (:mod:`amlr.packaging`), hashes
the local-path inputs, resolves each ``aml_data()`` input to the store
version it means now, and computes each step's fingerprint: its snapshot,
its inputs (upstream fingerprints, content hashes, URIs), outputs,
environment, step type and the session variables it inherits (:mod:`.env`).
Equal fingerprints are what reuse matches. The runner reads this plan and
nothing else about the pipeline.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ... import packaging, snapshot
from ...registry import Registry
from ...spec import Pipeline, Step
from .env import step_base_env


def _fingerprint(step: Step, snapshot_hash: str, upstream: dict[str, str], input_hashes: dict[str, str],
                 base_env: dict[str, str]) -> str:
    inputs: dict[str, str] = {}
    for name, inp in sorted(step.inputs.items()):
        if inp.kind == "step_output":
            inputs[name] = f"step:{upstream[inp.step or '']}:{inp.output}"
        elif inp.kind == "path":
            inputs[name] = f"path:{input_hashes[inp.path or '']}"
        elif inp.kind == "data_asset":  # the resolved version's content: "latest" re-runs only when it changes
            inputs[name] = f"data:{input_hashes[data_key(inp)]}:{inp.mode}"
        else:
            inputs[name] = f"uri:{inp.uri}"
    payload = {
        # The snapshot is the step's code, its contract (script, args, env) and the bootstrapper.
        "snapshot": snapshot_hash,
        "inputs": inputs,
        "outputs": sorted(step.outputs),
        "environment": step.environment,
        "step_type": step.step_type,
        "session_env": base_env,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def prepare(reg: Registry, pipeline: Pipeline, run_id: str, warn=None) -> dict[str, Any]:
    """Per-step snapshots and fingerprints for every step, written to ``spec.json``."""
    data_assets = resolve_data_assets(reg, pipeline)  # an unknown asset fails before anything is written
    run_dir = reg.run_dir(run_id)
    os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
    staged = packaging.stage_steps(pipeline, os.path.join(run_dir, "snapshots"), metrics_sink="none",
                                   values=_fixed_values, exclude=[reg.home], warn=warn,
                                   store=os.path.join(reg.home, "objects"))
    input_hashes: dict[str, str] = {}
    for step in pipeline.steps:
        for inp in step.inputs.values():
            if inp.kind == "path" and inp.path not in input_hashes:
                input_hashes[inp.path or ""] = snapshot.hash_path(inp.path or "")
            if inp.kind == "uri" and warn is not None and (inp.uri or "").lower().startswith(("http://", "https://")):
                warn(f"Input `{next(n for n, i in step.inputs.items() if i is inp)}` of step `{step.name}` is a web "
                     "URL: a local step gets the URL itself and reads it, while on azureml_v2 Azure ML downloads "
                     "it and the step gets a file path.")
    for step_assets in data_assets.values():
        for info in step_assets.values():
            input_hashes[info["key"]] = info["content_hash"]
    base_env = step_base_env()
    fingerprints: dict[str, str] = {}
    for step in pipeline.steps:  # run order: upstream fingerprints exist already
        fingerprints[step.name] = _fingerprint(step, staged[step.name].snapshot.hash, fingerprints, input_hashes,
                                               base_env)
    plan = {
        "pipeline": pipeline.to_json(),
        "steps": {
            s.name: {
                "snapshot": staged[s.name].snapshot.path,
                "snapshot_hash": staged[s.name].snapshot.hash,
                "code_files": staged[s.name].code.files,
                "code_conservative": staged[s.name].code.reason,
                "fingerprint": fingerprints[s.name],
                "log": os.path.join(run_dir, "logs", f"{s.name}.log"),
                "outputs": {o: os.path.join(run_dir, "outputs", s.name, o) for o in s.outputs},
                "metrics": os.path.join(run_dir, "metrics", f"{s.name}.jsonl"),
                "data_assets": data_assets[s.name],
            }
            for s in pipeline.steps
        },
    }
    with open(os.path.join(run_dir, "spec.json"), "w", encoding="utf-8") as fh:
        json.dump(plan, fh, indent=2, sort_keys=True)
    return plan


def _fixed_values(step: Step) -> dict[str, str]:
    """Inputs whose value is known when the job is built: URIs the script reads itself."""
    return {name: inp.uri or "" for name, inp in step.inputs.items() if inp.kind == "uri"}


def data_key(inp: Any) -> str:
    return f"asset:{inp.asset}:{inp.version}"


def resolve_data_assets(reg: Registry, pipeline: Pipeline) -> dict[str, dict[str, dict[str, Any]]]:
    """Step -> input -> the store version that ``aml_data(name, version)`` means now (before anything runs)."""
    out: dict[str, dict[str, dict[str, Any]]] = {s.name: {} for s in pipeline.steps}
    if not any(i.kind == "data_asset" for s in pipeline.steps for i in s.inputs.values()):
        return out  # no asset: the store is not even imported
    from ...store import Store

    store = Store(reg.home)
    for step in pipeline.steps:
        out[step.name] = {}
        for name, inp in sorted(step.inputs.items()):
            if inp.kind != "data_asset":
                continue
            asset = store.get("data", inp.asset or "", inp.version)
            out[step.name][name] = {
                "name": asset.name, "version": asset.version, "requested": inp.version, "mode": inp.mode,
                "content_hash": asset.content_hash, "path": asset.path, "key": data_key(inp),
            }
    return out


def input_folder(reg: Registry, step: Step, name: str) -> str:
    """The local folder an input names now: a path, or a data asset's copy in the store (for files_of())."""
    inp = step.inputs[name]
    if inp.kind == "data_asset":
        from ...store import Store

        return Store(reg.home).get("data", inp.asset or "", inp.version).path or ""
    return inp.path or ""
