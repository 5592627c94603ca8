"""The classic Azure ML backend: an R pipeline as an azureml-core pipeline.

Every step runs amlr's bootstrapper from the step's snapshot, on the step's
compute target, in an Environment made from the step's ``r_environment()``.
The work is split so that the objects can be built -- and tested -- offline:

1. :func:`plan_pipeline` (local only): snapshots, environments, compute names.
2. Side effects on the workspace: :func:`upload_inputs` (local-path inputs to
   the datastore, once per content hash), :func:`upload_build_contexts`
   (Docker build contexts), both through the SDK.
3. :func:`build_pipeline` (no network): the real ``azureml.pipeline.core``
   objects -- CommandStep / EstimatorStep / PythonScriptStep, PipelineData,
   DataReference, Environment -- and the ``Pipeline`` that holds them.
4. :func:`submit`: ``Experiment.submit``, then a registry row.

How data reaches the bootstrapper: step outputs are ``PipelineData`` and
local-path / datastore inputs are ``DataReference`` mounts. AML mounts both
itself and sets ``$AZUREML_DATAREFERENCE_<port>`` to the mounted path, so the
job image needs no azureml-dataprep / FUSE packages (which dataset mounts,
``OutputFileDatasetConfig`` included, would need inside a user-managed R
image). Every step type runs ``python _amlr/bootstrapper.py --step
_amlr/steps/<step>.json --input NAME <binding> --output NAME <binding>``, the
bindings being the SDK's own objects as arguments of their own (the SDK turns
them into structured input/output arguments that the service substitutes).
Nothing in it is shell text: joined with spaces and run by a shell it means the
same (the shell expands ``$AZUREML_DATAREFERENCE_<port>``), and a binding that
arrives unsubstituted is read from that variable by the bootstrapper. The R
script, its arguments and its variables are in the step's contract file.
Each step has its own snapshot (:mod:`amlr.packaging`), so Azure ML's reuse
re-runs only the steps whose code or contract changed.

The Azure SDKs are imported inside the functions that need them; importing
this module costs nothing, and ``azureml.train.estimator`` (about five
seconds to import) is imported only for ``step_type = "estimator"``.
"""
from __future__ import annotations

import hashlib
import json
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from .. import snapshot
from . import AML_STATUS_MAP as STATUS_MAP, option_text
from .. import workspace as workspaces
from ..environment import (
    ResolvedEnvironment,
    baked_dockerfile,
    registry_password,
    resolve_environment,
    write_build_context,
)
from ..errors import AmlrError, AzureMLError, Credentials, FileExists, InvalidSpec, RunNotActive, StepNotFound
from .. import packaging, stepcontract
from ..stepcontract import BOOTSTRAPPER_IN_SNAPSHOT, OUTPUTS_DIR
from ..registry import TERMINAL, Registry
from ..spec import Pipeline, Step

BOOTSTRAPPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bootstrapper.py")
BACKEND = "azureml"
# ``auto``: AML run history when azureml-core is importable in the image, else
# the values stay in the step log; an R image without Python packages still runs.
METRICS_SINK = "auto"
INPUTS_PREFIX = "amlr/inputs"
DEFAULT_COMPUTE_TYPE = "AmlCompute"
UPLOAD_CACHE = "azureml-uploads.json"
LOG_PREFERENCE = ("user_logs/std_log.txt", "azureml-logs/70_driver_log.txt")


POLL_SECONDS = 5.0  # how often a waiting reader asks Azure ML for news


def map_status(status: Optional[str]) -> str:
    """amlr's status for an AML run/step status (unknown non-terminal states count as Running)."""
    return STATUS_MAP.get(status or "NotStarted", "Running")


def binding(port: str) -> str:
    """How a step's command names the mounted path of its input/output port."""
    return f"$AZUREML_DATAREFERENCE_{port}"


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


# -- 3. build (no network) -------------------------------------------------------------------


def classic_environment(env: ResolvedEnvironment, *, build_context: Any = None,
                        include_secrets: bool = False) -> Any:
    """An ``azureml.core.Environment`` for ``env``, named and versioned by its content.

    The registry password is set only with ``include_secrets`` (at submit
    time, read from its variable then); a built-for-inspection environment
    never holds it.
    """
    from azureml.core import Environment

    aml = Environment(env.name)
    aml.version = env.version
    # The R image brings its own Python for the bootstrapper; AML must not add
    # conda, and the SDK's placeholder variable would only vary the hash.
    aml.python.user_managed_dependencies = True
    aml.python.conda_dependencies = None
    # The public setter is deprecated (and logs so); run-time variables go on the RunConfiguration.
    aml._environment_variables = {}
    if env.image is not None:
        aml.docker.base_image = env.image
        if env.registry_address:
            aml.docker.base_image_registry.address = env.registry_address
            aml.docker.base_image_registry.username = env.registry_username
            if include_secrets:
                password = registry_password(env)
                if password is None:
                    raise Credentials(
                        f"The registry {env.registry_address} needs a password in the environment variable "
                        f"{env.registry_password_env}, which is not set. Set it (e.g. in ~/.Renviron) or pass "
                        "registry_credentials(password = ...).",
                        data={"missing": [env.registry_password_env]},
                    )
                aml.docker.base_image_registry.password = password
        return aml
    aml.docker.base_image = None
    if needs_build_context(env):
        if build_context is None:
            raise AmlrError(f"Environment {env.name} needs its Docker build context uploaded first "
                            "(upload_build_contexts).")
        aml.docker.build_context = build_context
    else:
        aml.docker.base_dockerfile = baked_dockerfile(env)
    return aml


@dataclass
class Built:
    """What :func:`build_pipeline` made: the Pipeline and the objects inside it."""

    pipeline: Any
    steps: dict[str, Any]
    environments: dict[str, Any]
    argv: dict[str, list[str]]
    """Step -> the bootstrapper command line, bindings unexpanded."""
    outputs: dict[str, dict[str, Any]]
    """Step -> output name -> PipelineData."""
    inputs: dict[str, dict[str, Any]]
    """Step -> input name -> InputPortBinding (mounted inputs only)."""

    def describe(self, plan: Plan) -> dict[str, Any]:
        """A JSON summary of what was built, for the run folder; no secret is in it."""
        return {
            "pipeline": plan.pipeline.name,
            "content_hash": plan.content_hash(),
            "steps": {
                p.step.name: {
                    "step_type": p.step.step_type,
                    "compute": p.compute,
                    "snapshot": p.snapshot.path,
                    "snapshot_hash": p.snapshot.hash,
                    "argv": self.argv[p.step.name],
                    "outputs": list(p.step.outputs),
                    "environment": p.environment.to_json(),
                    "allow_reuse": p.step.allow_reuse,
                }
                for p in plan.steps
            },
        }


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


def build_pipeline(workspace: Any, plan: Plan, *, datastore: Any, input_paths: Mapping[str, str],
                   build_contexts: Optional[Mapping[str, Any]] = None,
                   compute_types: Optional[Mapping[str, str]] = None,
                   get_datastore: Optional[Callable[[str], Any]] = None,
                   include_secrets: bool = False,
                   get_dataset: Optional[Callable[[str, str], Any]] = None) -> Built:
    """The azureml-pipeline objects for ``plan``; no request is made.

    ``input_paths`` maps local-path inputs to their place on ``datastore``
    (from :func:`upload_inputs`); ``build_contexts`` maps environment
    identities to uploaded DockerBuildContexts; ``compute_types`` maps compute
    names to AML types (default ``AmlCompute``), so no compute is fetched.
    ``get_datastore`` resolves other datastores named by ``azureml://`` inputs;
    ``get_dataset(name, version)`` the registered datasets that ``aml_data()`` names.
    """
    from azureml.pipeline.core import Pipeline as AmlPipeline, PipelineData

    compute_types = compute_types or {}
    contexts = build_contexts or {}
    environments = {
        identity: classic_environment(env, build_context=contexts.get(identity), include_secrets=include_secrets)
        for identity, env in plan.environments.items()
    }
    outputs: dict[str, dict[str, Any]] = {
        p.step.name: {o: registered_output(PipelineData(o, datastore=datastore), p.step.register.get(o))
                      for o in p.step.outputs}
        for p in plan.steps
    }
    built_steps: dict[str, Any] = {}
    argv: dict[str, list[str]] = {}
    inputs_by_step: dict[str, dict[str, Any]] = {}
    for p in plan.steps:
        ports = _inputs(p.step, outputs, datastore, input_paths, plan.input_hashes, get_datastore, get_dataset)
        bindings = {"input": ports, "output": outputs[p.step.name]}
        command = stepcontract.command(p.step.name, list(ports), p.step.outputs,
                                       lambda kind, name: bindings[kind][name])  # noqa: B023 - called now
        argv[p.step.name] = [w if isinstance(w, str) else binding(w.name) for w in command]
        compute = (p.compute, compute_types.get(p.compute, DEFAULT_COMPUTE_TYPE))
        make = {"estimator": _estimator_step, "python_script": _python_script_step}.get(p.step.step_type, _command_step)
        built_steps[p.step.name] = make(p, environments[p.environment.identity], compute, list(ports.values()),
                                        list(outputs[p.step.name].values()), command)
        inputs_by_step[p.step.name] = ports
    pipeline = AmlPipeline(
        workspace=workspace,
        steps=[built_steps[p.step.name] for p in plan.steps],
        description=plan.pipeline.description or plan.pipeline.name,
        default_datastore=datastore,
    )
    return Built(pipeline, built_steps, environments, argv, outputs, inputs_by_step)


def _inputs(step: Step, outputs: Mapping[str, Mapping[str, Any]], datastore: Any, input_paths: Mapping[str, str],
            input_hashes: Mapping[str, str],
            get_datastore: Optional[Callable[[str], Any]],
            get_dataset: Optional[Callable[[str, str], Any]] = None) -> dict[str, Any]:
    """Input ports (name -> binding) of the inputs Azure ML mounts (web URIs are contract values)."""
    from azureml.data.data_reference import DataReference
    from azureml.pipeline.core.graph import InputPortBinding

    ports: dict[str, Any] = {}
    for name, inp in sorted(step.inputs.items()):
        if inp.kind == "step_output":
            upstream = outputs[inp.step or ""][inp.output or ""]
            # A registered output is a PipelineOutputFileDataset, bound by name instead of as_input().
            ports[name] = upstream.as_input(name) if hasattr(upstream, "as_input") else \
                upstream.as_named_input(name).as_mount()
        elif inp.kind == "data_asset":
            if get_dataset is None:
                raise InvalidSpec(f"Input `{name}` of step `{step.name}` is data asset `{inp.asset}`, which needs a "
                                  "workspace to look up.", field=f"steps[{step.name}].inputs.{name}")
            named = get_dataset(inp.asset or "", inp.version or "latest").as_named_input(name)
            ports[name] = named.as_download() if inp.mode == "download" else named.as_mount()
        elif inp.kind == "path":
            local = inp.path or ""
            if local not in input_paths:
                raise AmlrError(f"Input `{name}` of step `{step.name}` ({local}) was not uploaded (upload_inputs).")
            ref = DataReference(datastore, data_reference_name=f"{name}_{input_hashes[local][:10]}",
                                path_on_datastore=input_paths[local], mode="mount")
            ports[name] = InputPortBinding(name, bind_object=ref, bind_mode="mount")
        else:
            target = datastore_uri(inp.uri or "")
            if target is None:
                continue  # https://, wasbs://, abfss:// ...: the script gets the URI and reads it itself
            store_name, path = target
            store = datastore if store_name == datastore.name else _lookup_datastore(get_datastore, store_name, step,
                                                                                     name)
            digest = hashlib.sha256((inp.uri or "").encode("utf-8")).hexdigest()[:10]
            ref = DataReference(store, data_reference_name=f"{name}_{digest}", path_on_datastore=path, mode="mount")
            ports[name] = InputPortBinding(name, bind_object=ref, bind_mode="mount")
    return ports


def registered_output(data: Any, asset: Optional[str]) -> Any:
    """``r_step(register = )``: the output as a dataset that Azure ML registers (a new version) when the step ends."""
    if not asset:
        return data
    return data.as_dataset().register(name=asset, create_new_version=True)


def get_registered_dataset(workspace: Any, name: str, version: str) -> Any:
    from azureml.core import Dataset

    try:
        return Dataset.get_by_name(workspace, name=name, version=version or "latest")
    except Exception as exc:  # the SDK raises its own exception types for "not found"
        raise AmlrError(
            f"Data asset `{name}` version {version} could not be read from workspace `{workspace.name}` "
            f"({type(exc).__name__}: {str(exc)[:300]}). Check its name and version in Azure ML studio, or register "
            "it with register_data(path, name, backend = \"azureml\")."
        ) from None


def _lookup_datastore(get_datastore: Optional[Callable[[str], Any]], name: str, step: Step, input_name: str) -> Any:
    if get_datastore is None:
        raise InvalidSpec(f"Input `{input_name}` of step `{step.name}` names datastore `{name}`, which is not the "
                          "default datastore.", field=f"steps[{step.name}].inputs.{input_name}")
    return get_datastore(name)


def _runconfig(p: StepPlan, env: Any, compute: tuple[str, str]) -> Any:
    from azureml.core.runconfig import RunConfiguration

    config = RunConfiguration()
    config.environment = env
    config.target = compute[0]
    # Also set on the job, so the studio shows them; the contract sets them for R either way.
    config.environment_variables = dict(p.step.env)
    return config


def _command_step(p: StepPlan, env: Any, compute: tuple[str, str], inputs: list, outputs: list,
                  command: list[Any]) -> Any:
    """A CommandStep whose command is a list: words, and the SDK's binding objects as words of their own.

    No shell text: the command means the same whether the service keeps the
    words apart (and substitutes the bindings) or joins them and runs a shell
    (which expands ``$AZUREML_DATAREFERENCE_<port>``).
    """
    from azureml.pipeline.steps import CommandStep

    return CommandStep(name=p.step.name, command=command, runconfig=_runconfig(p, env, compute),
                       compute_target=compute, source_directory=p.snapshot.path, inputs=inputs or None,
                       outputs=outputs or None, allow_reuse=p.step.allow_reuse)


def _script_args(command: list[Any]) -> list[Any]:
    """The bootstrapper's arguments, for steps that name the script themselves."""
    assert command[1] == BOOTSTRAPPER_IN_SNAPSHOT
    return command[2:]


def _python_script_step(p: StepPlan, env: Any, compute: tuple[str, str], inputs: list, outputs: list,
                        command: list[Any]) -> Any:
    # PythonScriptStep runs the bootstrapper under AML's own Python wrapper
    # (run context and output collection set up before it starts) instead of a
    # shell: the better fit for images whose Python has azureml-core, where
    # log_metric() values then always reach run history.
    from azureml.pipeline.steps import PythonScriptStep

    return PythonScriptStep(
        script_name=BOOTSTRAPPER_IN_SNAPSHOT,
        name=p.step.name,
        arguments=_script_args(command),
        compute_target=compute, runconfig=_runconfig(p, env, compute), inputs=inputs or None,
        outputs=outputs or None, source_directory=p.snapshot.path, allow_reuse=p.step.allow_reuse,
    )


def _estimator_step(p: StepPlan, env: Any, compute: tuple[str, str], inputs: list, outputs: list,
                    command: list[Any]) -> Any:
    """The classic article's Estimator + EstimatorStep (custom image, registry details, user_managed)."""
    from azureml.pipeline.steps import EstimatorStep
    from azureml.train.estimator import Estimator  # seconds to import: only for estimator steps

    common = {"source_directory": p.snapshot.path, "compute_target": compute[0],
              "entry_script": BOOTSTRAPPER_IN_SNAPSHOT, "environment_variables": dict(p.step.env) or None}
    if p.environment.image is not None:
        estimator = Estimator(
            **common,
            custom_docker_image=env.docker.base_image,
            image_registry_details=env.docker.base_image_registry if p.environment.registry_address else None,
            user_managed=True,
        )
    else:
        estimator = Estimator(**common, environment_definition=env)
    return EstimatorStep(
        name=p.step.name, estimator=estimator,
        estimator_entry_script_arguments=_script_args(command),
        inputs=inputs or None, outputs=outputs or None, compute_target=compute, allow_reuse=p.step.allow_reuse,
    )


# -- 4. submit and publish ---------------------------------------------------------------------


def _secrets(plan: Optional[Plan] = None) -> list[str]:
    values = [os.environ.get(workspaces.SECRET_ENV, "")]
    if plan is not None:
        values += [registry_password(env) or "" for env in plan.environments.values()]
    return [v for v in values if len(v) >= 4]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _remote_failure(what: str, exc: Exception, secrets: Iterable[str] = ()) -> AzureMLError:
    detail = _scrub(f"{type(exc).__name__}: {exc}", list(secrets) + _secrets())
    return AzureMLError(f"Azure ML could not {what}: {detail}")


def _compute_types(workspace: Any, plan: Plan) -> dict[str, str]:
    """Compute name -> type, checking that every compute the plan names exists."""
    targets = workspace.compute_targets
    wanted = sorted({p.compute for p in plan.steps})
    missing = [c for c in wanted if c not in targets]
    if missing:
        raise AzureMLError(
            f"Compute target(s) {', '.join(missing)} not found in workspace {workspace.name} "
            f"(it has: {', '.join(sorted(targets)) or 'none'}). Create a compute cluster in the studio, or "
            "give an existing one to r_step(compute = ...)."
        )
    return {c: targets[c].type for c in wanted}


def publish_pipeline(workspace: Any, built: Built, plan: Plan, name: str) -> dict[str, Any]:
    """Publish under a PipelineEndpoint ``name``: an identical pipeline is reused, not published again.

    Identity is :meth:`Plan.content_hash`, stored as the published pipeline's
    ``version``; a changed pipeline becomes the endpoint's new default.
    """
    from azureml.pipeline.core import PipelineEndpoint

    version = plan.content_hash()[:16]
    description = plan.pipeline.description or f"amlr pipeline {plan.pipeline.name}"
    endpoint = _find_endpoint(workspace, name)
    if endpoint is not None:
        for published in endpoint.list_pipelines():
            if getattr(published, "version", None) == version:
                endpoint.set_default(published)
                return _published_info(endpoint, published, version, reused=True)
        published = built.pipeline.publish(name=name, description=description, version=version)
        endpoint.add_default(published)
    else:
        published = built.pipeline.publish(name=name, description=description, version=version)
        endpoint = PipelineEndpoint.publish(workspace=workspace, name=name, description=description,
                                            pipeline=published)
    return _published_info(endpoint, published, version, reused=False)


def _find_endpoint(workspace: Any, name: str) -> Any:
    from azureml.pipeline.core import PipelineEndpoint

    try:
        return PipelineEndpoint.get(workspace=workspace, name=name)
    except Exception as exc:  # the SDK signals "no such endpoint" as an HTTP 404 error
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            return None
        raise


def _published_info(endpoint: Any, published: Any, version: str, *, reused: bool) -> dict[str, Any]:
    return {
        "endpoint": endpoint.name,
        "endpoint_id": endpoint.id,
        "endpoint_url": getattr(endpoint, "endpoint", None),
        "pipeline_id": published.id,
        "version": version,
        "reused": reused,
    }


def _default_datastore(workspace: Any, name: Optional[str]) -> Any:
    if name:
        from azureml.core import Datastore

        return Datastore.get(workspace, name)
    return workspace.get_default_datastore()


@dataclass
class Prepared:
    """A pipeline built against a live workspace, its uploads done: ready to submit or publish."""

    info: workspaces.WorkspaceInfo
    workspace: Any
    plan: Plan
    built: Built
    warnings: list[str]
    secrets: list[str]


def prepare(reg: Registry, pipeline: Pipeline, run_dir: str, options: Mapping[str, Any]) -> Prepared:
    """Plan, connect, upload, build (with secrets, for the SDK only); a summary goes to ``run_dir``."""
    info = workspaces.resolve(options.get("workspace"))
    warnings: list[str] = []
    plan = plan_pipeline(pipeline, run_dir, default_compute=option_text(options, "compute"), warn=warnings.append)
    secrets = _secrets(plan)
    try:
        workspace = workspaces.classic_workspace(info)
        datastore = _default_datastore(workspace, option_text(options, "datastore"))
        compute_types = _compute_types(workspace, plan)
        input_paths = upload_inputs(plan, datastore, cache_path=os.path.join(reg.home, UPLOAD_CACHE),
                                    cache_key=info.arm_id)
        contexts = upload_build_contexts(workspace, plan)
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"prepare the pipeline in workspace {info.workspace_name}", exc, secrets) from None
    built = build_pipeline(
        workspace, plan, datastore=datastore, input_paths=input_paths, build_contexts=contexts,
        compute_types=compute_types, get_datastore=lambda name: _default_datastore(workspace, name),
        include_secrets=True, get_dataset=lambda name, version: get_registered_dataset(workspace, name, version),
    )
    _write_json(os.path.join(run_dir, "azureml.json"), built.describe(plan))
    return Prepared(info, workspace, plan, built, warnings, secrets)


@contextlib.contextmanager
def _discarded_on_failure(folder: str) -> Iterator[None]:
    """Create ``folder``; if what follows fails, nothing was recorded: remove it again."""
    os.makedirs(folder, exist_ok=True)
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@contextlib.contextmanager
def _as_remote_failure(action: str, secrets: Iterable[str]) -> Iterator[None]:
    """An SDK exception becomes a classed amlr error with the secrets redacted."""
    try:
        yield
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(action, exc, secrets) from None


def submit(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """Build, upload, submit; the run is recorded with its PipelineRun id and portal link.

    Options: ``workspace`` (from aml_workspace()), ``compute`` (default compute
    target), ``datastore`` (for uploaded inputs; default: the workspace's),
    ``publish`` / ``publish_name``, ``continue_on_step_failure``,
    ``regenerate_outputs`` (run every step even when AML could reuse it).
    """
    run_dir = reg.run_dir(run_id)
    with _discarded_on_failure(run_dir):
        ready = prepare(reg, pipeline, run_dir, options)
        published = None
        with _as_remote_failure("submit the pipeline", ready.secrets):
            if _opt_bool(options, "publish"):
                published = publish_pipeline(ready.workspace, ready.built, ready.plan,
                                             option_text(options, "publish_name") or pipeline.name)
            from azureml.core import Experiment

            remote = Experiment(ready.workspace, experiment).submit(
                ready.built.pipeline,
                tags={"amlr_run_id": run_id, "amlr_pipeline": pipeline.name},
                continue_on_step_failure=_opt_bool(options, "continue_on_step_failure"),
                regenerate_outputs=_opt_bool(options, "regenerate_outputs"),
            )
            portal = remote.get_portal_url()
    reg.insert_run(
        {
            "id": run_id,
            "experiment": experiment,
            "pipeline": pipeline.name,
            "backend": BACKEND,
            "status": "Queued",
            "run_dir": run_dir,
            "remote_id": remote.id,
            "portal_url": portal,
            "workspace": ready.info.to_json(),
        },
        [{"name": p.step.name, "fingerprint": p.snapshot.hash, "allow_reuse": p.step.allow_reuse,
          "status": "NotStarted"} for p in ready.plan.steps],
    )
    _REMOTE_RUNS[run_id] = remote
    out = reg.get_run(run_id)
    out["warnings"] = ready.warnings
    if published is not None:
        out["published"] = published
    return out


def publish(reg: Registry, pipeline: Pipeline, name: Optional[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """Publish without running (R's publish_r_pipeline()); the build is kept under ``<home>/published``."""
    build_dir = os.path.join(reg.home, "published", f"{pipeline.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    with _discarded_on_failure(build_dir):
        ready = prepare(reg, pipeline, build_dir, options)
        with _as_remote_failure("publish the pipeline", ready.secrets):
            out = publish_pipeline(ready.workspace, ready.built, ready.plan, name or pipeline.name)
    out["warnings"] = ready.warnings
    out["workspace"] = ready.info.to_json()
    out["portal_url"] = workspaces.portal_url(ready.info)
    return out


def _opt_bool(options: Mapping[str, Any], key: str) -> bool:
    value = options.get(key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value is True


# -- readers ----------------------------------------------------------------------------------

# PipelineRun objects by amlr run id: one bridge call (follow) refreshes, reads
# logs and steps; the workspace look-up behind a PipelineRun is done once.
_REMOTE_RUNS: dict[str, Any] = {}


def remote_run(run: Mapping[str, Any]) -> Any:
    """The ``PipelineRun`` behind an amlr run (the one place readers reach Azure ML)."""
    cached = _REMOTE_RUNS.get(run["id"])
    if cached is not None:
        return cached
    if not run.get("remote_id") or not run.get("workspace"):
        raise AzureMLError(f"Run `{run['id']}` has no Azure ML run id recorded; it was never submitted.")
    from azureml.core import Experiment
    from azureml.pipeline.core import PipelineRun

    info = workspaces.from_json(run["workspace"])
    try:
        remote = PipelineRun(Experiment(workspaces.classic_workspace(info), run["experiment"]), run["remote_id"])
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"find run {run['remote_id']}", exc) from None
    _REMOTE_RUNS[run["id"]] = remote
    return remote


def _time(value: Any) -> Optional[float]:
    if not value:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _error_message(details: Mapping[str, Any]) -> Optional[str]:
    err = details.get("error")
    if isinstance(err, dict):
        inner: dict[str, Any] = err["error"] if isinstance(err.get("error"), dict) else err
        return inner.get("message") or None
    return str(err) if err else None


def refresh(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    """Status, start and end from Azure ML (a finished run is not asked again)."""
    if run["status"] in TERMINAL:
        return run
    try:
        details = remote_run(run).get_details()
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the status of run {run.get('remote_id')}", exc) from None
    status = map_status(details.get("status"))
    fields: dict[str, Any] = {"status": status}
    started, ended = _time(details.get("startTimeUtc")), _time(details.get("endTimeUtc"))
    if started:
        fields["started"] = started
    if ended or status in TERMINAL:
        fields["ended"] = ended or time.time()
    if status in ("Failed", "Canceled"):
        fields["error"] = _error_message(details) or run.get("error")
    reg.update_run(run["id"], **fields)
    return reg.get_run(run["id"])


def reused_from(step_run: Any) -> Optional[str]:
    """The earlier run a reused step run stands for.

    azureml-pipeline-core rehydrates a reused child in one of two ways:
    ``StepRun._from_dto`` (run type ``azureml.StepRun`` whose properties name
    the reused run: ``_reused_run_id`` is set) or ``StepRun._from_reused_dto``
    (run type ``azureml.ReusedStepRun``: the object *is* the earlier run, so
    its ``id`` is the answer and ``_reused_run_id`` stays None).
    """
    return getattr(step_run, "_reused_run_id", None) or getattr(step_run, "id", None)


def _step_runs(remote: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for step_run in remote.get_steps():
        name = getattr(step_run, "name", None) or getattr(step_run, "display_name", None)
        if name:
            out.setdefault(name, step_run)
    return out


def steps(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = reg.get_steps(run["id"])
    if all(r["status"] in TERMINAL for r in rows):
        return rows
    try:
        step_runs = _step_runs(remote_run(run))
        for row in rows:
            if row["status"] in TERMINAL or row["name"] not in step_runs:
                continue
            step_run = step_runs[row["name"]]
            details = step_run.get_details()
            status = map_status(details.get("status"))
            fields: dict[str, Any] = {"status": status}
            if _time(details.get("startTimeUtc")):
                fields["started"] = _time(details.get("startTimeUtc"))
            if status in TERMINAL:
                fields["ended"] = _time(details.get("endTimeUtc")) or time.time()
            if getattr(step_run, "_is_reused", False):
                fields["reused"] = 1
                fields["reused_from"] = reused_from(step_run)
            if status == "Failed":
                fields["error"] = _error_message(details)
            reg.update_step(run["id"], row["name"], **fields)
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the steps of run {run.get('remote_id')}", exc) from None
    if run["status"] in TERMINAL:
        # Steps that never started in an ended run will not start any more.
        for row in reg.get_steps(run["id"]):
            if row["status"] not in TERMINAL:
                reg.update_step(run["id"], row["name"], status="Canceled",
                                error=f"did not run: the run ended {run['status']}")
    return reg.get_steps(run["id"])


def user_log(step_run: Any) -> str:
    """The step's own output (what R printed), from the run's log files."""
    files = (step_run.get_details_with_logs() or {}).get("logFiles") or {}
    for name in LOG_PREFERENCE:
        if name in files:
            return files[name] or ""
    for name in sorted(files):
        if "std_log" in name or "70_driver_log" in name:
            return files[name] or ""
    return "".join(files[name] or "" for name in sorted(files))


def _chosen(reg: Registry, run: Mapping[str, Any], step: Optional[str]) -> list[str]:
    names = [s["name"] for s in reg.get_steps(run["id"])]
    if step is None:
        return names
    if step not in names:
        raise StepNotFound(f"Run `{run['id']}` has no step `{step}` (its steps: {', '.join(names)}).")
    return [step]


class _StepRuns:
    """The run's StepRuns, fetched on first use (a finished step's cached log needs none)."""

    def __init__(self, run: Mapping[str, Any]):
        self.run = run
        self._by_name: Optional[dict[str, Any]] = None

    def get(self, name: str) -> Any:
        if self._by_name is None:
            self._by_name = _step_runs(remote_run(self.run))
        return self._by_name.get(name)


def _step_log(reg: Registry, run: Mapping[str, Any], row: Mapping[str, Any], step_runs: _StepRuns) -> Optional[str]:
    """A step's log text, or None before it has a step run.

    A finished step's log cannot change: it is kept under the run folder (and
    the step's ``log_path``), so reading it again needs no request.
    """
    path = row.get("log_path")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    step_run = step_runs.get(row["name"])
    if step_run is None:
        return None
    text = user_log(step_run)
    if row["status"] in TERMINAL and run.get("run_dir"):
        path = os.path.join(run["run_dir"], "logs", f"{row['name']}.log")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        reg.update_step(run["id"], row["name"], log_path=path)
    return text


def logs(reg: Registry, run: dict[str, Any], step: Optional[str]) -> dict[str, list[str]]:
    names = _chosen(reg, run, step)
    rows = {r["name"]: r for r in reg.get_steps(run["id"])}
    step_runs = _StepRuns(run)
    try:
        return {n: (_step_log(reg, run, rows[n], step_runs) or "").splitlines() for n in names}
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the logs of run {run.get('remote_id')}", exc) from None


def follow(reg: Registry, run: dict[str, Any], cursor: dict[str, int]) -> dict[str, Any]:
    """New complete log lines since ``cursor`` (step -> characters already sent).

    A step whose whole log was sent is marked ``"<step>#done"`` in the cursor
    and not read again.
    """
    rows = {r["name"]: r for r in reg.get_steps(run["id"])}
    out: list[dict[str, str]] = []
    new_cursor = {k: int(v) for k, v in cursor.items()}
    step_runs = _StepRuns(run)
    try:
        for name, row in rows.items():
            if new_cursor.get(f"{name}#done"):
                continue
            text = _step_log(reg, run, row, step_runs)
            if text is None:
                continue
            offset = new_cursor.get(name, 0)
            chunk = text[offset:]
            done = run["status"] in TERMINAL or row["status"] in TERMINAL
            if not done:
                cut = chunk.rfind("\n")
                chunk = chunk[: cut + 1] if cut >= 0 else ""
            new_cursor[name] = offset + len(chunk)
            if done:
                new_cursor[f"{name}#done"] = 1
            out.extend({"step": name, "line": line} for line in chunk.splitlines())
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the logs of run {run.get('remote_id')}", exc) from None
    return {"lines": out, "cursor": new_cursor}


def cancel(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    if run["status"] in TERMINAL:
        raise RunNotActive(f"Run `{run['id']}` has already ended ({run['status']}); there is nothing to cancel.")
    try:
        remote_run(run).cancel()
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"cancel run {run.get('remote_id')}", exc) from None
    reg.update_run(run["id"], cancel_requested=1)
    return refresh(reg, reg.get_run(run["id"]))


def download(reg: Registry, run: dict[str, Any], step: Optional[str], output: Optional[str], dest: str,
             overwrite: bool) -> list[str]:
    """Step outputs (from the datastore) and, for whole steps, their log files, to ``dest/<step>/``."""
    names = _chosen(reg, run, step)
    spec = _built_outputs(run)
    wanted: list[tuple[str, str]] = []
    for name in names:
        outs = [*spec.get(name, []), OUTPUTS_DIR]  # ./outputs, which AML keeps with the step's run
        if output is not None:
            if output not in outs:
                raise AmlrError(f"Step `{name}` has no output `{output}` (its outputs: {', '.join(outs) or 'none'}).")
            outs = [output]
        wanted.extend((name, o) for o in outs)
    targets = [os.path.join(dest, s, o) for s, o in wanted]
    if output is None:
        targets += [os.path.join(dest, s, "logs") for s in names]
    clashes = [t for t in targets if os.path.exists(t)]
    if clashes and not overwrite:
        raise FileExists(f"{len(clashes)} target(s) already exist, first `{clashes[0]}`; nothing was copied. "
                         "Choose another `dest` or pass overwrite = TRUE.")
    written: list[str] = []
    try:
        step_runs = _step_runs(remote_run(run))
        for step_name, out_name in wanted:
            if step_name not in step_runs:
                continue
            target = os.path.join(dest, step_name, out_name)
            if out_name == OUTPUTS_DIR:
                if _download_run_folder(step_runs[step_name], OUTPUTS_DIR, target):
                    written.append(target)
                continue
            _download_output(step_runs[step_name].get_output_data(out_name), target)
            written.append(target)
        if output is None:
            for step_name in names:
                if step_name in step_runs:
                    written.extend(_download_logs(step_runs[step_name], os.path.join(dest, step_name, "logs")))
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"download from run {run.get('remote_id')}", exc) from None
    return written


def _built_outputs(run: Mapping[str, Any]) -> dict[str, list[str]]:
    """Output names per step, from what was built (the registry keeps no remote paths)."""
    path = os.path.join(run.get("run_dir") or "", "azureml.json")
    described = _read_json(path)
    out: dict[str, list[str]] = {}
    for name, info in (described.get("steps") or {}).items():
        out[name] = list(info.get("outputs") or [])
    return out


def _download_output(port: Any, target: str) -> None:
    """PortDataReference.download keeps the datastore path; move its content to ``target``."""
    staging = tempfile.mkdtemp(prefix="amlr-download-")
    try:
        port.download(local_path=staging, overwrite=True, show_progress=False)
        source = os.path.join(staging, *str(port.path_on_datastore).strip("/").split("/"))
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        if os.path.exists(source):
            shutil.move(source, target)
        else:  # an output the step left empty
            os.makedirs(target, exist_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download_run_folder(step_run: Any, prefix: str, target: str) -> bool:
    """The files a step's run kept under ``prefix/`` (AML uploads ./outputs there), to ``target``."""
    names = [n for n in step_run.get_file_names() if n.startswith(prefix + "/")]
    for name in names:
        path = os.path.join(target, *name[len(prefix) + 1:].split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        step_run.download_file(name, output_file_path=path)
    return bool(names)


def _download_logs(step_run: Any, target: str) -> list[str]:
    written = []
    for name in step_run.get_file_names():
        if not name.startswith(("azureml-logs/", "user_logs/", "logs/")):
            continue
        path = os.path.join(target, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        step_run.download_file(name, output_file_path=path)
        written.append(path)
    return written


def metrics(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Run-history metrics of every step run (what log_metric() sent through the bootstrapper)."""
    out: list[dict[str, Any]] = []
    try:
        step_runs = _step_runs(remote_run(run))
        for row in reg.get_steps(run["id"]):
            if row["name"] not in step_runs:
                continue
            for name, value in sorted((step_runs[row["name"]].get_metrics() or {}).items()):
                values = value if isinstance(value, list) else [value]
                for idx, v in enumerate(values):
                    num = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                    out.append({"step": row["name"], "name": name, "value_num": num,
                                "value_str": None if num is not None else (None if v is None else str(v)),
                                "idx": idx, "time": None})
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the metrics of run {run.get('remote_id')}", exc) from None
    return out


# -- small files -------------------------------------------------------------------------------


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)
