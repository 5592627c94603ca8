"""The ``azureml_v2`` backend: an amlr pipeline as an Azure ML v2 pipeline job.

One plan, two renderings. :func:`stage` packages every step (snapshot, build
context) and :func:`plan_node` turns a step into what a v2 command job needs:
its command line (from :mod:`amlr.stepcontract`, like every backend), inputs,
outputs, environment and compute. :mod:`amlr.export` writes that plan as the
YAML ``az ml job create --file`` reads; :func:`to_azure_job` builds the same
job from azure-ai-ml objects, which :func:`submit` sends through
``MLClient.jobs.create_or_update``. Nothing about a step is decided twice.

Following a run. Azure ML is the source of truth: :func:`refresh` reads the
pipeline job and its child jobs (``jobs.get``, ``jobs.list(parent_job_name=)``)
and mirrors their states into the registry, so ``steps`` and ``follow`` read
what the last refresh saw. Child jobs carry no start/end times, so a step's
``started``/``ended`` are when amlr first saw it running/ended (accurate to a
poll). Log text comes from the same run-history log files that
``jobs.stream`` reads (``user_logs/std_log.txt``, or the legacy
``azureml-logs/70_driver_log.txt``): ``stream`` blocks until the job ends and
refuses child jobs, which does not fit R's polling ``run_wait()``. The
``follow`` cursor holds, per step, how many bytes of that file were shown and
whether the step's log is complete; the file is fetched whole per poll.

Metrics are MLflow metrics of each child job (the bootstrapper logs them with
``--metrics-sink mlflow``); reading them needs ``mlflow`` and
``azureml-mlflow`` in amlr's Python.

azure-ai-ml is imported only inside the functions that need it: it takes
seconds to import, and this module is also imported by ``export``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from . import AML_STATUS_MAP as STATUS_MAP, option_text
from ..environment import ResolvedEnvironment, resolve_environment, write_build_context
from ..errors import AmlrError, BackendUnavailable, BadRequest, Credentials, FileExists, RunNotActive
from .. import packaging, stepcontract
from ..registry import TERMINAL, Registry
from ..spec import Pipeline, Step

BACKEND = "azureml_v2"
METRICS_SINK = "mlflow"  # Azure ML v2 jobs log to MLflow
SERVERLESS = "serverless"
"""Azure ML's serverless compute: the pipeline default when no compute is named."""
CHILDREN_FILE = "children.json"
CANCEL_WAIT = 60.0
LOG_FETCH_TIMEOUT = 30.0
REUSED_FLAG = "azureml.isreused"
REUSED_FROM = "azureml.reusedrunid"

STATUS_NOTES = {
    "NotResponding": "Azure ML reports the job NotResponding (no heartbeat from the compute); it may recover.",
    "Paused": "Azure ML reports the job Paused.",
    "CancelRequested": "Cancel requested; Azure ML is stopping the job.",
}

POLL_SECONDS = 5.0  # how often a waiting reader asks Azure ML for news


class AzureRequestFailed(AmlrError):
    """A call to Azure ML failed (network, permission, a job Azure ML rejected)."""

    kind = "azure_request"


class StepNotFinished(AmlrError):
    """Outputs and logs of a v2 step can be downloaded only once it has ended."""

    kind = "step_not_finished"


def map_status(v2_status: Optional[str], previous: str = "NotStarted") -> str:
    """amlr's status for an Azure ML job state; an unknown state keeps ``previous``."""
    return STATUS_MAP.get(v2_status or "", previous)


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
    argv = stepcontract.command(
        step.name, list(step.inputs), step.outputs,
        lambda kind, name: input_binding(name) if kind == "input" else output_binding(name),
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
    staged = packaging.stage_steps(pipeline, snapshots_dir, metrics_sink=METRICS_SINK, warn=warnings.append)
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


# -- talking to Azure ML ---------------------------------------------------------------------


def connect(info: Any) -> Any:
    """``MLClient`` for a :class:`amlr.workspace.WorkspaceInfo` (no network until the first call)."""
    sdk = _sdk()
    from ..workspace import credential

    return sdk.MLClient(
        credential(info),
        subscription_id=info.subscription_id,
        resource_group_name=info.resource_group,
        workspace_name=info.workspace_name,
        show_progress=False,
        **loopback_options(),
    )


DEV_URL_ENV = "AZUREML_DEV_URL_MFE"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _is_loopback_http(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def loopback_options() -> dict[str, Any]:
    """Test hook: plain HTTP to a loopback Azure ML service (the test suite's), and nowhere else.

    azure-ai-ml sends its calls to ``AZUREML_DEV_URL_MFE`` when that is set
    (its own developer override), but azure-core refuses to put a bearer token
    on a non-HTTPS request. Only when the override is an ``http://`` loopback
    address does the client get a policy that lifts that refusal, and then
    only for requests whose own URL is ``http://`` loopback, and redirects
    are not followed (a redirect elsewhere would keep the lifted check): a
    token never travels unencrypted off the machine. Without the variable: no
    options.
    """
    if not _is_loopback_http(os.environ.get(DEV_URL_ENV, "")):
        return {}
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class LoopbackHttp(SansIOHTTPPolicy):  # type: ignore[misc]
        def on_request(self, request: Any) -> None:
            if _is_loopback_http(request.http_request.url):
                request.context["enforce_https"] = False

    return {"per_call_policies": [LoopbackHttp()], "permit_redirects": False}


SECRET_NAME_SUFFIXES = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def _secret_values() -> list[str]:
    """Values of environment variables that hold secrets (client secret, registry passwords, ...)."""
    return [v for k, v in os.environ.items() if k.upper().endswith(SECRET_NAME_SUFFIXES) and len(v) >= 4]


def redact(text: str) -> str:
    for secret in _secret_values():
        text = text.replace(secret, "***")
    return text


def _detail(exc: BaseException, limit: int = 800) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text if len(text) <= limit else text[:limit] + " ...")


def translate_error(exc: BaseException, what: str) -> Optional[AmlrError]:
    """An Azure SDK exception as a classed amlr error, or None if it is not one."""
    from azure.core import exceptions as core

    said = f" Azure said: {_detail(exc)}"
    if isinstance(exc, core.ClientAuthenticationError):
        return Credentials(
            f"Signing in to Azure failed while {what}. Sign in with `az login`, or set AZURE_TENANT_ID, "
            "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal (see aml_workspace())." + said
        )
    if isinstance(exc, core.ServiceRequestError):
        return AzureRequestFailed(f"Could not reach Azure ML while {what}; check the network and proxy." + said)
    if isinstance(exc, core.ResourceNotFoundError):
        return AzureRequestFailed(f"Azure ML found no such resource while {what}." + said)
    if isinstance(exc, core.HttpResponseError):
        return AzureRequestFailed(f"Azure ML answered with an error while {what}." + said)
    try:
        from azure.ai.ml.exceptions import MlException
    except ImportError:  # pragma: no cover - azure-ai-ml is there when azure-core is
        return None
    if isinstance(exc, MlException):
        return AzureRequestFailed(f"azure-ai-ml failed while {what}: {_detail(exc)}")
    mlflow_errors = sys.modules.get("mlflow.exceptions")  # loaded only if run_metrics() imported MLflow
    if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException):
        return AzureRequestFailed(f"Azure ML's MLflow tracking answered with an error while {what}: {_detail(exc)}")
    return None


@contextlib.contextmanager
def azure_call(what: str) -> Iterator[None]:
    """Turn Azure SDK failures inside the block into classed amlr errors."""
    try:
        yield
    except AmlrError:
        raise
    except Exception as exc:
        translated = translate_error(exc, what)
        if translated is None:
            raise
        raise translated from None


def _workspace_info(run: Mapping[str, Any]) -> Any:
    from ..workspace import from_json

    if not run.get("workspace"):
        raise AmlrError(f"Run `{run['id']}` has no workspace recorded; it was not submitted by this backend.")
    return from_json(run["workspace"])


def client_for(run: Mapping[str, Any]) -> Any:
    return connect(_workspace_info(run))


# -- submit ----------------------------------------------------------------------------------


def _check_options(options: Mapping[str, Any]) -> None:
    from . import check_options

    check_options(BACKEND, options)




def submit(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """Package, build the v2 pipeline job, create it on Azure ML and record the run."""
    from ..workspace import resolve

    _check_options(options)
    workspace = options.get("workspace")
    info = resolve(workspace if isinstance(workspace, dict) else None)
    run_dir = reg.run_dir(run_id)
    try:
        client = connect(info)
        pipeline = with_asset_types(pipeline, client)
        plan = stage(
            pipeline,
            snapshots_dir=os.path.join(run_dir, "snapshots"),
            environments_dir=os.path.join(run_dir, "environments"),
            experiment_name=experiment,
            default_compute=option_text(options, "compute"),
            force_rerun=bool(options.get("regenerate_outputs")),
        )
        job = to_azure_job(plan)
        with azure_call(f"submitting pipeline `{pipeline.name}` to workspace `{info.workspace_name}`"):
            created = client.jobs.create_or_update(job, experiment_name=experiment)
    except BaseException:
        # Nothing was recorded: leave no half-made run folder behind.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    from ..workspace import portal_url

    _write_json(os.path.join(run_dir, "job.json"), {
        "pipeline": pipeline.to_json(),
        "remote_id": created.name,
        "default_compute": plan.default_compute,
    })
    reg.insert_run(
        {
            "id": run_id,
            "experiment": experiment,
            "pipeline": pipeline.name,
            "backend": BACKEND,
            "status": map_status(getattr(created, "status", None)),
            "run_dir": run_dir,
            "remote_id": created.name,
            "portal_url": getattr(created, "studio_url", None) or portal_url(info, created.name),
            "workspace": info.to_json(),
        },
        [{"name": s.name, "allow_reuse": s.allow_reuse, "outputs": {o: None for o in s.outputs}}
         for s in pipeline.steps],
    )
    out = reg.get_run(run_id)
    out["warnings"] = list(plan.warnings)
    return out


def with_asset_types(pipeline: Pipeline, client: Any) -> Pipeline:
    """The pipeline with each ``aml_data()`` input's type (uri_folder/uri_file/mltable) read from the workspace."""
    import dataclasses

    steps = []
    for step in pipeline.steps:
        inputs = dict(step.inputs)
        for name, inp in step.inputs.items():
            if inp.kind != "data_asset" or inp.data_type:
                continue
            what = f"reading data asset `{inp.asset}` (input `{name}` of step `{step.name}`)"
            with azure_call(what):
                if inp.version in (None, "latest"):
                    found = client.data.get(name=inp.asset, label="latest")
                else:
                    found = client.data.get(name=inp.asset, version=inp.version)
            inputs[name] = dataclasses.replace(inp, data_type=str(getattr(found, "type", None) or "uri_folder"))
        steps.append(dataclasses.replace(step, inputs=inputs))
    return dataclasses.replace(pipeline, steps=steps)


def _write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# -- refresh: Azure ML -> registry -------------------------------------------------------------


def children_map(run: Mapping[str, Any]) -> dict[str, str]:
    """Step name -> child job name, as the last refresh saw them."""
    found = _read_json(os.path.join(run.get("run_dir") or "", CHILDREN_FILE))
    return found if isinstance(found, dict) else {}


def _child_sort_key(child: Any) -> float:
    created = getattr(getattr(child, "creation_context", None), "created_at", None)
    try:
        return created.timestamp() if created is not None else 0.0
    except AttributeError:
        return 0.0


def _sync_steps(reg: Registry, run: dict[str, Any], client: Any, run_status: str) -> None:
    """Mirror the child jobs' states into the registry's step rows."""
    with azure_call(f"listing the steps of job `{run['remote_id']}`"):
        children = [c for c in client.jobs.list(parent_job_name=run["remote_id"]) if c is not None]
    by_step: dict[str, Any] = {}
    for child in sorted(children, key=_child_sort_key):  # a retried node: the newest child wins
        by_step[getattr(child, "display_name", None) or ""] = child
    known = children_map(run)
    now = time.time()
    for row in reg.get_steps(run["id"]):
        name = row["name"]
        child = by_step.get(name)
        fields: dict[str, Any] = {}
        if child is None:
            if run_status in TERMINAL and row["status"] not in TERMINAL:
                fields.update(status="Canceled", error=f"not run: the pipeline job ended {run_status}")
        else:
            known[name] = child.name
            raw = getattr(child, "status", None)
            status = map_status(raw, row["status"])
            props = getattr(child, "properties", None) or {}
            fields["status"] = status
            if str(props.get(REUSED_FLAG, "")).lower() == "true":
                fields.update(reused=1, reused_from=props.get(REUSED_FROM))
            if status == "Running" and row.get("started") is None:
                fields["started"] = now
            if status in TERMINAL and row.get("ended") is None:
                fields["ended"] = now
                if row.get("started") is None:
                    fields["started"] = now
            if status == "Failed":
                fields["error"] = f"Azure ML job `{child.name}` failed; run_logs() shows its log"
            elif raw in STATUS_NOTES:
                fields["error"] = STATUS_NOTES[raw]
        changed = {k: v for k, v in fields.items() if row.get(k) != v}
        if changed:
            reg.update_step(run["id"], name, **changed)
    if known != children_map(run):
        _write_json(os.path.join(run["run_dir"], CHILDREN_FILE), known)


def refresh(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    """Update the run and its steps from Azure ML (nothing to do once the run has ended)."""
    if run["status"] in TERMINAL:
        return run
    client = client_for(run)
    with azure_call(f"reading job `{run['remote_id']}`"):
        job = client.jobs.get(run["remote_id"])
    raw = getattr(job, "status", None)
    status = map_status(raw, run["status"])
    fields: dict[str, Any] = {}
    if status != run["status"]:
        fields["status"] = status
    if status in ("Running", *TERMINAL) and run.get("started") is None:
        fields["started"] = time.time()
    if status in TERMINAL and run.get("ended") is None:
        fields["ended"] = time.time()
    error = None
    if status == "Failed":
        error = f"the Azure ML pipeline job `{run['remote_id']}` failed"
    elif status == "Canceled":
        error = "canceled on Azure ML"
    elif raw in STATUS_NOTES:
        error = STATUS_NOTES[raw]
    if error != run.get("error"):
        fields["error"] = error
    if fields:
        reg.update_run(run["id"], **fields)
    _sync_steps(reg, run, client, status)
    return reg.get_run(run["id"])


def steps(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    return reg.get_steps(run["id"])


# -- logs --------------------------------------------------------------------------------------


def pick_log(names: Any) -> Optional[str]:
    """The log file that holds R's output: the common runtime's std_log, else the legacy driver log."""
    names = sorted(names or ())
    for preferred in ("user_logs/std_log.txt", "azureml-logs/70_driver_log.txt"):
        if preferred in names:
            return preferred
    for prefix in ("user_logs/std_log", "azureml-logs/70_driver_log"):
        matches = [n for n in names if n.startswith(prefix) and n.endswith(".txt")]
        if matches:
            return matches[0]  # e.g. std_log_process_0.txt: the first process
    return None


def log_text(client: Any, job_name: str) -> Optional[str]:
    """The current text of a child job's log, or None before Azure ML has one.

    Uses the run-history log-file links that ``jobs.stream`` reads (the SDK has
    no public call for one file of a running child job).
    """
    from azure.ai.ml._utils.utils import download_text_from_url

    jobs = client.jobs
    with azure_call(f"reading the log of job `{job_name}`"):
        files = jobs._runs_operations.get_run_details(job_name).log_files or {}
        chosen = pick_log(files)
        if chosen is None:
            return None
        return download_text_from_url(files[chosen], jobs._requests_pipeline, timeout=LOG_FETCH_TIMEOUT)


def _chosen_steps(reg: Registry, run: dict[str, Any], step: Optional[str]) -> list[dict[str, Any]]:
    return [reg.get_step(run["id"], step)] if step else reg.get_steps(run["id"])


def logs(reg: Registry, run: dict[str, Any], step: Optional[str]) -> dict[str, list[str]]:
    chosen = _chosen_steps(reg, run, step)
    children = children_map(run)
    client = client_for(run) if any(s["name"] in children for s in chosen) else None
    out: dict[str, list[str]] = {}
    for s in chosen:
        text = log_text(client, children[s["name"]]) if s["name"] in children else None
        out[s["name"]] = (text or "").splitlines()
    return out


def follow(reg: Registry, run: dict[str, Any], cursor: dict[str, Any]) -> dict[str, Any]:
    """New complete log lines since ``cursor`` (step -> {"offset": bytes shown, "done": log complete})."""
    children = children_map(run)
    new_cursor = dict(cursor)
    out: list[dict[str, str]] = []
    client = None
    for s in reg.get_steps(run["id"]):
        name = s["name"]
        state = cursor.get(name) if isinstance(cursor.get(name), dict) else {}
        if state.get("done") or name not in children or s["status"] in ("NotStarted", "Queued"):
            continue
        client = client or client_for(run)
        data = (log_text(client, children[name]) or "").encode("utf-8")
        offset = int(state.get("offset") or 0)
        chunk = data[offset:]
        step_done = s["status"] in TERMINAL or run["status"] in TERMINAL
        if not step_done:
            cut = chunk.rfind(b"\n")
            chunk = chunk[: cut + 1] if cut >= 0 else b""
        new_cursor[name] = {"offset": offset + len(chunk), "done": step_done}
        out.extend({"step": name, "line": line} for line in chunk.decode("utf-8", "replace").splitlines())
    return {"lines": out, "cursor": new_cursor}


# -- cancel, download ----------------------------------------------------------------------------


def cancel(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    if run["status"] in TERMINAL:
        raise RunNotActive(f"Run `{run['id']}` has already ended ({run['status']}); there is nothing to cancel.")
    client = client_for(run)
    with azure_call(f"canceling job `{run['remote_id']}`"):
        poller = client.jobs.begin_cancel(run["remote_id"])
        poller.result(timeout=CANCEL_WAIT)
    reg.update_run(run["id"], cancel_requested=1)
    return refresh(reg, reg.get_run(run["id"]))


def _step_outputs(row: dict[str, Any]) -> list[str]:
    """Declared outputs, and ``outputs``: what the job kept from ./outputs (its artifacts)."""
    return sorted({*(row.get("outputs") or {}).keys(), stepcontract.OUTPUTS_DIR})


def download(reg: Registry, run: dict[str, Any], step: Optional[str], output: Optional[str], dest: str,
             overwrite: bool) -> list[str]:
    """Outputs to ``dest/<step>/<output>/`` and, when no output is named, logs to ``dest/<step>/logs/``."""
    children = children_map(run)
    plan: list[tuple[str, str, Optional[str], str]] = []  # (step, child job, output or None for logs, target)
    for s in _chosen_steps(reg, run, step):
        outs = _step_outputs(s)
        if output is not None:
            if output not in outs:
                raise AmlrError(f"Step `{s['name']}` has no output `{output}` (its outputs: {', '.join(outs) or 'none'}).")
            outs = [output]
        if s["status"] not in TERMINAL:
            if step is None and output is None:
                continue  # whole-run download: take what has ended
            raise StepNotFinished(
                f"Step `{s['name']}` is {s['status']}; Azure ML lets amlr download its outputs once it has ended "
                "(run_wait() first)."
            )
        if s["name"] not in children:
            continue  # never ran (canceled before it started)
        child = children[s["name"]]
        plan.extend((s["name"], child, o, os.path.join(dest, s["name"], o)) for o in outs)
        if output is None:
            plan.append((s["name"], child, None, os.path.join(dest, s["name"], "logs")))
    clashes = [target for *_, target in plan if os.path.exists(target)]
    if clashes and not overwrite:
        raise FileExists(
            f"{len(clashes)} target(s) already exist, first `{clashes[0]}`; nothing was downloaded. "
            "Choose another `dest` or pass overwrite = TRUE."
        )
    if not plan:
        return []
    os.makedirs(dest, exist_ok=True)
    client = client_for(run)
    written = []
    for step_name, child, out_name, target in plan:
        staging = tempfile.mkdtemp(prefix=".amlr-download-", dir=dest)
        try:
            what = f"downloading {'output `' + out_name + '`' if out_name else 'the logs'} of step `{step_name}`"
            with azure_call(what):
                if out_name is None:
                    client.jobs.download(child, download_path=staging)
                    got = os.path.join(staging, "artifacts")
                elif out_name == stepcontract.OUTPUTS_DIR:
                    client.jobs.download(child, download_path=staging)
                    got = os.path.join(staging, "artifacts", stepcontract.OUTPUTS_DIR)
                else:
                    client.jobs.download(child, output_name=out_name, download_path=staging)
                    got = os.path.join(staging, "named-outputs", out_name)
            if not os.path.exists(got):
                continue
            if os.path.exists(target):
                shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(got, target)
            written.append(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return written


# -- metrics -------------------------------------------------------------------------------------


def mlflow_tracker(tracking_uri: str) -> Any:
    """An ``MlflowClient`` on the workspace's tracking URI; the packages are optional extras."""
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            "run_metrics() on azureml_v2 runs reads the jobs' MLflow metrics and needs the Python packages "
            "`mlflow` and `azureml-mlflow`: install them into amlr's Python (pip install azureml-mlflow)."
        ) from exc
    try:
        import azureml.mlflow  # noqa: F401  registers the azureml:// tracking scheme and its sign-in
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            "run_metrics() on azureml_v2 runs needs the Python package `azureml-mlflow` (it lets MLflow talk "
            "to Azure ML): install it into amlr's Python (pip install azureml-mlflow)."
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


SYSTEM_TAG_PREFIXES = ("mlflow.", "azureml.", "_aml")


def _iso(ms: Optional[int]) -> Optional[str]:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000.0)) + ".%03dZ" % (int(ms) % 1000)


def step_metrics(tracker: Any, step: str, job_name: str) -> list[dict[str, Any]]:
    """One step's metrics: numeric series from MLflow metrics, text values from its tags."""
    run = tracker.get_run(job_name)
    rows: list[dict[str, Any]] = []
    for key in sorted(run.data.metrics):
        history = sorted(tracker.get_metric_history(job_name, key), key=lambda m: (m.step, m.timestamp))
        rows.extend({"step": step, "name": key, "value_num": float(m.value), "value_str": None, "idx": i,
                     "time": _iso(m.timestamp)} for i, m in enumerate(history))
    for key in sorted(run.data.tags):
        if not key.startswith(SYSTEM_TAG_PREFIXES):
            rows.append({"step": step, "name": key, "value_num": None, "value_str": str(run.data.tags[key]),
                         "idx": 0, "time": None})
    return rows


def metrics(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Metrics of every step; kept in the registry once the run has ended."""
    if run["status"] in TERMINAL:
        cached = reg.get_metrics(run["id"])
        if cached:
            return cached
    children = children_map(run)
    if not children:
        return []
    client = client_for(run)
    info = _workspace_info(run)
    with azure_call(f"reading the MLflow tracking URI of workspace `{info.workspace_name}`"):
        uri = client.workspaces.get(info.workspace_name).mlflow_tracking_uri
    tracker = mlflow_tracker(uri)
    rows: list[dict[str, Any]] = []
    for s in reg.get_steps(run["id"]):
        if s["name"] in children:
            with azure_call(f"reading the metrics of step `{s['name']}`"):
                rows.extend(step_metrics(tracker, s["name"], children[s["name"]]))
    if run["status"] in TERMINAL and rows:
        for s in {r["step"] for r in rows}:
            reg.add_metrics(run["id"], s, [
                {"name": r["name"], "value": r["value_num"] if r["value_num"] is not None else r["value_str"],
                 "time": r["time"]}
                for r in rows if r["step"] == s
            ])
        return reg.get_metrics(run["id"])
    return rows
