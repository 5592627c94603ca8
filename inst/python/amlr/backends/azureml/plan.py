"""Steps 1 and 2 of the classic backend: the plan (local only) and the uploads it needs."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ... import snapshot
from ...environment import (
    ResolvedEnvironment,
    resolve_environment,
    write_build_context,
)
from ...errors import InvalidSpec
from ... import packaging, sweepazure
from ...spec import Pipeline, Step
from .common import METRICS_SINK, INPUTS_PREFIX, _read_json, _write_json


# -- 1. plan (local) -------------------------------------------------------------------


@dataclass
class StepPlan:
    step: Step
    snapshot: snapshot.Snapshot
    environment: ResolvedEnvironment
    compute: str


@dataclass
class Plan:
    pipeline: Pipeline
    run_dir: str
    steps: list[StepPlan]
    input_hashes: dict[str, str] = field(default_factory=dict)
    """Local input path -> content hash (snapshot.hash_path)."""

    @property
    def environments(self) -> dict[str, ResolvedEnvironment]:
        return {p.environment.identity: p.environment for p in self.steps}

    def content_hash(self) -> str:
        """What decides the pipeline's behaviour, independent of where it was built (for publishing)."""
        payload = {
            "name": self.pipeline.name,
            "steps": [
                {
                    "name": p.step.name,
                    "script": p.step.script,
                    "args": p.step.args,
                    "inputs": {
                        k: (f"path:{self.input_hashes[v.path or '']}" if v.kind == "path" else v.to_json())
                        for k, v in sorted(p.step.inputs.items())
                    },
                    "outputs": sorted(p.step.outputs),
                    "snapshot": p.snapshot.hash,
                    "environment": p.environment.identity,
                    "compute": p.compute,
                    "allow_reuse": p.step.allow_reuse,
                    "step_type": p.step.step_type,
                }
                for p in self.steps
            ],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _fixed_values(step: Step) -> dict[str, str]:
    """Inputs the script gets as text: web URIs (it reads them itself); datastore URIs are mounted."""
    return {name: inp.uri or "" for name, inp in step.inputs.items()
            if inp.kind == "uri" and datastore_uri(inp.uri or "") is None}


def plan_pipeline(pipeline: Pipeline, run_dir: str, *, default_compute: Optional[str] = None,
                  warn: Optional[Callable[[str], None]] = None,
                  default_dockerfile: Optional[str] = None) -> Plan:
    """Snapshots (under ``run_dir/snapshots``), resolved environments and compute per step."""
    sweepazure.refuse_on_classic(pipeline)
    computes = {s.name: s.compute or pipeline.compute or default_compute for s in pipeline.steps}
    for name, compute in computes.items():
        if not compute:
            raise InvalidSpec(
                f"Step `{name}` has no compute target, which Azure ML needs: give r_step(compute = ...), "
                "r_pipeline(compute = ...) or submit_r_pipeline(..., compute = \"<cluster name>\").",
                field=f"steps[{name}].compute",
            )
    staged = packaging.stage_steps(pipeline, os.path.join(run_dir, "snapshots"), metrics_sink=METRICS_SINK,
                                   values=_fixed_values, warn=warn)
    envs: dict[str, ResolvedEnvironment] = {}
    steps: list[StepPlan] = []
    for step in pipeline.steps:
        env_spec = step.environment or pipeline.environment
        key = json.dumps(env_spec, sort_keys=True)
        if key not in envs:
            envs[key] = resolve_environment(env_spec, default_dockerfile=default_dockerfile)
        steps.append(StepPlan(step, staged[step.name].snapshot, envs[key], computes[step.name] or ""))
    hashes: dict[str, str] = {}
    for step in pipeline.steps:
        for inp in step.inputs.values():
            if inp.kind == "path" and inp.path not in hashes:
                hashes[inp.path or ""] = snapshot.hash_path(inp.path or "")
    return Plan(pipeline, run_dir, steps, hashes)


# -- 2. side effects on the workspace ----------------------------------------------------


def input_path_on_datastore(local_path: str, digest: str) -> str:
    """Where a local input lives on the datastore: keyed by content, so it is uploaded once."""
    base = f"{INPUTS_PREFIX}/{digest[:32]}"
    return f"{base}/{os.path.basename(local_path)}" if os.path.isfile(local_path) else base


def upload_inputs(plan: Plan, datastore: Any, *, cache_path: Optional[str] = None,
                  cache_key: str = "") -> dict[str, str]:
    """Upload each local-path input not uploaded before; local path -> path on the datastore.

    ``cache_path`` (a JSON file) remembers what went to which datastore, so an
    unchanged input costs no request at all; ``overwrite=False`` keeps a
    repeated upload cheap when the cache is gone.
    """
    cache = _read_json(cache_path) if cache_path else {}
    done: dict[str, str] = {}
    for local_path, digest in sorted(plan.input_hashes.items()):
        target = input_path_on_datastore(local_path, digest)
        key = f"{cache_key}/{datastore.name}/{target}"
        if not cache.get(key):
            if os.path.isfile(local_path):
                datastore.upload_files([local_path], target_path=target.rsplit("/", 1)[0], overwrite=False,
                                       show_progress=False)
            else:
                datastore.upload(src_dir=local_path, target_path=target, overwrite=False, show_progress=False)
            cache[key] = time.time()
        done[local_path] = target
    if cache_path:
        _write_json(cache_path, cache)
    return done


def needs_build_context(env: ResolvedEnvironment) -> bool:
    """A Dockerfile that COPYs files needs them uploaded; one that does not goes inline."""
    return env.builds_image and bool(env.context_files)


def upload_build_contexts(workspace: Any, plan: Plan) -> dict[str, Any]:
    """Write each Dockerfile's build context under the run folder and upload it; identity -> DockerBuildContext."""
    from azureml.core.environment import DockerBuildContext

    out: dict[str, Any] = {}
    for identity, env in plan.environments.items():
        if not needs_build_context(env):
            continue
        path = write_build_context(env, os.path.join(plan.run_dir, "build_contexts", env.version))
        out[identity] = DockerBuildContext.from_local_directory(workspace, path, "Dockerfile")
    return out


def datastore_uri(uri: str) -> Optional[tuple[str, str]]:
    """(datastore, path) for an ``azureml://.../datastores/<name>/paths/<path>`` URI, else None."""
    if not uri.lower().startswith("azureml://"):
        return None
    parts = uri[len("azureml://"):].split("/")
    if "datastores" in parts and "paths" in parts:
        ds = parts.index("datastores")
        paths = parts.index("paths")
        if paths == ds + 2:
            return parts[ds + 1], "/".join(parts[paths + 1:]).rstrip("/")
    return None
