"""The v2 plan (no Azure SDK: stage, plan_node) and its azure-ai-ml rendering (to_azure_job)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

from ...environment import ResolvedEnvironment, resolve_environment, write_build_context
from ...errors import (BackendUnavailable)
from ... import packaging, stepcontract, sweep, sweepazure
from ...spec import Pipeline, Step
from .common import METRICS_SINK, SERVERLESS


# -- the plan: what each command job is (no Azure SDK here) --------------------------------


@dataclass(frozen=True)
class NodeInput:
    """A command job input: a local file/folder (uploaded by Azure ML), a URI, or a binding."""

    kind: str  # "local" | "uri" | "binding" | "asset"
    type: str  # "uri_file" | "uri_folder" | "mltable"
    path: str  # absolute local path | URI | ${{parent.jobs.<step>.outputs.<name>}} | azureml:<name>:<version>
    mode: Optional[str] = None  # data assets: "ro_mount" | "download"


@dataclass(frozen=True)
class NodeEnvironment:
    """The image a step runs in: a prebuilt ``image`` or a docker build context folder."""

    name: str
    version: str
    image: Optional[str]
    build_dir: Optional[str]


@dataclass(frozen=True)
class CommandNode:
    name: str
    code: str  # absolute path of the step's snapshot folder
    command: str
    inputs: tuple[tuple[str, NodeInput], ...]  # sorted by name
    outputs: tuple[str, ...]  # sorted
    environment: NodeEnvironment
    compute: Optional[str]  # "azureml:<name>", "serverless", or None (the pipeline default)
    reuse: bool
    env: tuple[tuple[str, str], ...] = ()  # r_step(env =), also set on the job
    registered: tuple[tuple[str, str], ...] = ()  # output -> data asset name Azure ML registers it as
    sweep: Optional[dict] = None  # r_sweep(): amlr.sweepazure.azure_sweep()'s search space, objective, limits


@dataclass(frozen=True)
class JobPlan:
    display_name: str
    description: Optional[str]
    experiment_name: str
    default_compute: str
    nodes: tuple[CommandNode, ...]  # in run order
    warnings: tuple[str, ...] = ()
    force_rerun: bool = False  # submit_r_pipeline(regenerate_outputs = TRUE)


def input_binding(name: str) -> str:
    return "${{inputs.%s}}" % name


def output_binding(name: str) -> str:
    return "${{outputs.%s}}" % name


def parent_output(step: str, output: str) -> str:
    return "${{parent.jobs.%s.outputs.%s}}" % (step, output)


def compute_ref(name: Optional[str]) -> Optional[str]:
    """How a job names a compute target: ``azureml:<name>``; ids and ``serverless`` as given."""
    if not name:
        return None
    if name == SERVERLESS or name.startswith(("azureml:", "/subscriptions/")):
        return name
    return "azureml:" + name


def uri_type(uri: str) -> str:
    """``uri_file`` when the URI's last segment has an extension, else ``uri_folder``.

    A URI carries no file/folder flag; a trailing ``/`` always means a folder.
    """
    if uri.endswith("/"):
        return "uri_folder"
    last = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return "uri_file" if "." in last.strip(".") else "uri_folder"


def asset_reference(name: str, version: Optional[str]) -> str:
    """``azureml:<name>:<version>``; ``azureml:<name>@latest`` for the newest version (Azure ML's label)."""
    if version in (None, "", "latest"):
        return f"azureml:{name}@latest"
    return f"azureml:{name}:{version}"


def plan_input(step: Step, name: str) -> NodeInput:
    inp = step.inputs[name]
    if inp.kind == "data_asset":
        return NodeInput("asset", inp.data_type or "uri_folder", asset_reference(inp.asset or "", inp.version),
                         inp.mode or "ro_mount")
    if inp.kind == "step_output":
        return NodeInput("binding", "uri_folder", parent_output(inp.step or "", inp.output or ""))
    if inp.kind == "uri":
        uri = inp.uri or ""
        return NodeInput("uri", uri_type(uri), uri)
    path = inp.path or ""
    return NodeInput("local", "uri_folder" if os.path.isdir(path) else "uri_file", path)


def plan_node(step: Step, *, code: str, environment: NodeEnvironment, compute: Optional[str]) -> CommandNode:
    """The command job for one step: the one place both export and submit get it from.

    The command is :mod:`amlr.stepcontract`'s: no shell-quoted text, each port a
    ``${{inputs.x}}`` / ``${{outputs.x}}`` word that Azure ML replaces before
    ``bash -c`` runs it; the R arguments are in the step's contract file.
    """
    swept = sweepazure.azure_sweep(step) if step.fanout and step.fanout["role"] == "sweep" else None
    argv = stepcontract.command(
        step.name, list(step.inputs), step.outputs,
        lambda kind, name: input_binding(name) if kind == "input" else output_binding(name),
        params=list(swept["search_space"]) if swept else (),
    )
    return CommandNode(
        name=step.name,
        code=code,
        command=stepcontract.command_line(argv),
        inputs=tuple((name, plan_input(step, name)) for name in sorted(step.inputs)),
        outputs=tuple(sorted(step.outputs)),
        environment=environment,
        compute=compute_ref(step.compute),
        reuse=step.allow_reuse,
        env=tuple(sorted(step.env.items())),
        registered=tuple(sorted(step.register.items())),
        sweep=swept,
    )


def gather_node(step: Step, *, snapshots_dir: str, environment: NodeEnvironment) -> CommandNode:
    """An r_map()'s own node: copies each item node's outputs into a folder per item (:mod:`amlr.gather`)."""
    words = ["python", "gather.py"]
    inputs = []
    for member in (step.fanout or {}).get("members", []):
        key = member["step"].rsplit("__", 1)[1]
        for output in sorted(step.outputs):
            port = f"{output}_{key}"
            inputs.append((port, NodeInput("binding", "uri_folder", parent_output(member["step"], output))))
            words += [output, member["label"], input_binding(port)]
    for output in sorted(step.outputs):
        words += ["--to", output, output_binding(output)]
    return CommandNode(
        name=step.name, code=sweepazure.gather_code(snapshots_dir), command=stepcontract.command_line(words),
        inputs=tuple(sorted(inputs)), outputs=tuple(sorted(step.outputs)), environment=environment,
        compute=compute_ref(step.compute), reuse=True, registered=tuple(sorted(step.register.items())),
    )


def _stage_environment(env: ResolvedEnvironment, environments_dir: str) -> NodeEnvironment:
    if not env.builds_image:
        return NodeEnvironment(env.name, env.version, env.image, None)
    context = os.path.join(environments_dir, env.version)
    if not os.path.isdir(context):
        write_build_context(env, context)
    return NodeEnvironment(env.name, env.version, None, os.path.abspath(context))


def registry_note(env: ResolvedEnvironment) -> Optional[str]:
    if not env.registry_address:
        return None
    what = f"`{env.image}`" if env.image else "images"
    return (
        f"Azure ML v2 pulls {what} with the workspace's own access to `{env.registry_address}`; the "
        "registry user and password are not sent with the job. If the registry is private, attach it to the "
        "workspace or grant the workspace's managed identity AcrPull on it (see vignette(\"environments\"))."
    )


def stage(pipeline: Pipeline, *, snapshots_dir: str, environments_dir: str, experiment_name: str,
          default_compute: Optional[str] = None, force_rerun: bool = False) -> JobPlan:
    """Package every step and plan its command job.

    Snapshots land in ``snapshots_dir/<hash12>`` (one per step: its code and
    contract, see :mod:`amlr.packaging`) and Docker build contexts in
    ``environments_dir/<version>``, both named by content so that the same
    pipeline gives the same folders and Azure ML uploads each code once.
    """
    warnings: list[str] = []
    pipeline = sweepazure.expand_maps_for_azure(pipeline, _map_folder)  # r_map(): one node per item, then a gather node
    runnable = dataclasses.replace(pipeline, steps=[s for s in pipeline.steps if not sweep.is_collector(s)])
    staged = packaging.stage_steps(runnable, snapshots_dir, metrics_sink=METRICS_SINK, warn=warnings.append)
    resolved_by_spec: dict[str, ResolvedEnvironment] = {}
    env_by_identity: dict[str, NodeEnvironment] = {}
    nodes = []
    for step in pipeline.steps:
        spec = step.environment or pipeline.environment
        spec_key = json.dumps(spec, sort_keys=True)
        if spec_key not in resolved_by_spec:  # resolving hashes the build context: once per spec
            resolved_by_spec[spec_key] = resolve_environment(spec)
        resolved = resolved_by_spec[spec_key]
        if resolved.identity not in env_by_identity:
            env_by_identity[resolved.identity] = _stage_environment(resolved, environments_dir)
            note = registry_note(resolved)
            if note and note not in warnings:
                warnings.append(note)
        if sweep.is_collector(step):
            if step.outputs:
                nodes.append(gather_node(step, snapshots_dir=snapshots_dir,
                                         environment=env_by_identity[resolved.identity]))
            continue
        nodes.append(plan_node(step, code=staged[step.name].snapshot.path, environment=env_by_identity[resolved.identity],
                               compute=step.compute))
    return JobPlan(
        display_name=pipeline.name,
        description=pipeline.description,
        experiment_name=experiment_name,
        default_compute=compute_ref(pipeline.compute or default_compute) or SERVERLESS,
        nodes=tuple(nodes),
        warnings=tuple(warnings),
        force_rerun=force_rerun,
    )


# -- azure-ai-ml objects ---------------------------------------------------------------------


def _map_folder(step: Step, name: str) -> str:
    inp = step.inputs[name]
    if inp.kind != "path":
        from ...errors import Unsupported

        raise Unsupported(f"r_map() `{step.name}` maps over the files of a registered data asset; on azureml_v2 amlr "
                          "lists only a local folder's files (the workspace is not asked). Map over a local folder, "
                          "or run the pipeline locally.")
    return inp.path or ""


def _sdk() -> Any:
    """Import azure-ai-ml (slow) once asked, quiet its 'experimental class' chatter."""
    # Set before the import: importing the SDK already logs these notes.
    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)
    try:
        import azure.ai.ml as sdk
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            f"The `azureml_v2` backend needs the Python package `{exc.name}`, which this interpreter lacks. "
            "Run amlr::install_amlr_python(backends = \"azureml_v2\") (it installs requirements-azureml_v2.txt)."
        ) from exc
    return sdk


def _sdk_environment(env: NodeEnvironment) -> Any:
    from azure.ai.ml.entities import BuildContext, Environment

    if env.image:
        return Environment(name=env.name, version=env.version, image=env.image)
    return Environment(name=env.name, version=env.version, build=BuildContext(path=env.build_dir))


def sdk_compute(ref: Optional[str]) -> Optional[str]:
    """A compute as ``jobs.create_or_update`` wants it: the bare name (or an id, or ``serverless``).

    The YAML form ``azureml:<name>`` is right in an exported file (``load_job``
    strips the prefix), but the SDK takes an object's compute as given: it
    validates a node's compute by GETting ``computes/azureml:<name>`` and turns
    a pipeline's default into the id ``.../computes/azureml:<name>``; no
    compute has that name.
    """
    if ref and ref.startswith("azureml:") and not ref.startswith("azureml:/"):
        return ref[len("azureml:"):]
    return ref


def to_azure_job(plan: JobPlan) -> Any:
    """The plan as an azure-ai-ml ``PipelineJob`` of ``command`` nodes.

    Unlike the exported YAML (where Azure ML ignores the name of an inline
    environment), the environment is named and versioned after its identity,
    so the workspace lists it as ``amlr-r-<version>`` and reuses its image.
    """
    sdk = _sdk()
    from azure.ai.ml.entities import PipelineJob, PipelineJobSettings

    jobs = {}
    for node in plan.nodes:
        if node.sweep is not None:
            jobs[node.name] = _sweep_job(sdk, node)
            continue
        jobs[node.name] = sdk.command(
            name=node.name,
            display_name=node.name,
            code=node.code,
            command=node.command,
            inputs={name: sdk.Input(type=inp.type, path=inp.path, **({"mode": inp.mode} if inp.mode else {}))
                    for name, inp in node.inputs},
            outputs={name: sdk.Output(type="uri_folder", **({"name": dict(node.registered)[name]}
                                                              if name in dict(node.registered) else {}))
                     for name in node.outputs},
            environment=_sdk_environment(node.environment),
            compute=sdk_compute(node.compute),
            is_deterministic=node.reuse,
            environment_variables=dict(node.env) or None,
        )
    settings = PipelineJobSettings(default_compute=sdk_compute(plan.default_compute))
    if plan.force_rerun:
        settings.force_rerun = True
    return PipelineJob(
        display_name=plan.display_name,
        description=plan.description,
        experiment_name=plan.experiment_name,
        jobs=jobs,
        settings=settings,
    )


def _sweep_job(sdk: Any, node: CommandNode) -> Any:
    """A sweep node: the command as its trial, each parameter a trial input drawn from the search space."""
    from azure.ai.ml import sweep as space

    sw = node.sweep or {}
    kinds = {"choice": lambda d: space.Choice(values=d["values"]),
             "uniform": lambda d: space.Uniform(min_value=d["min_value"], max_value=d["max_value"]),
             "loguniform": lambda d: space.LogUniform(min_value=d["min_value"], max_value=d["max_value"]),
             "randint": lambda d: space.Randint(upper=d["upper"])}
    defaults = {"string": "", "integer": 0, "number": 0.0}
    params = {name: kinds[d["type"]](d) for name, d in sw["search_space"].items()}
    ports = {name: sdk.Input(type=inp.type, path=inp.path, **({"mode": inp.mode} if inp.mode else {}))
             for name, inp in node.inputs}
    trial = sdk.command(
        name=node.name, display_name=node.name, code=node.code, command=node.command,
        inputs={**ports, **{n: defaults[t] for n, t in sw["param_types"].items()}},
        outputs={name: sdk.Output(type="uri_folder", **({"name": dict(node.registered)[name]}
                                                          if name in dict(node.registered) else {}))
                 for name in node.outputs},
        environment=_sdk_environment(node.environment), is_deterministic=node.reuse,
        environment_variables=dict(node.env) or None,
    )
    sampling = sw["sampling_algorithm"]
    if isinstance(sampling, dict):
        from azure.ai.ml.sweep import RandomSamplingAlgorithm

        sampling = RandomSamplingAlgorithm(seed=sampling["seed"])
    policy = None
    if sw.get("early_termination"):
        p = dict(sw["early_termination"])
        cls = {"bandit": space.BanditPolicy, "median_stopping": space.MedianStoppingPolicy,
               "truncation_selection": space.TruncationSelectionPolicy}[p.pop("type")]
        policy = cls(**p)
    job = trial(**params).sweep(
        primary_metric=sw["objective"]["primary_metric"], goal=sw["objective"]["goal"],
        sampling_algorithm=sampling, compute=sdk_compute(node.compute),
        max_total_trials=sw["limits"]["max_total_trials"],
        max_concurrent_trials=sw["limits"].get("max_concurrent_trials"),
        early_termination_policy=policy,
    )
    job.display_name = node.name
    return job
