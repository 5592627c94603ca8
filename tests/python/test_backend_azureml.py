"""The classic Azure ML backend, offline, against the real azureml SDK objects.

Azure is unreachable here, so every test builds real ``azureml.core`` /
``azureml.pipeline`` objects on a workspace made without a service check, and
fakes only where the SDK would talk to Azure: the seams are in
:func:`offline_seams` (the service context's endpoint discovery, the pipeline
service's module / datasource / data-type look-ups, and a guard that fails the
test on any HTTP request), and the submit / monitor tests replace the
experiment's ``submit`` and the run objects with small recorders. Those fakes
are checked against the pinned SDK classes at the end of this file, and the
monitoring path also runs with azureml's real ``PipelineRun``/``StepRun``
against the loopback service (``aml_loopback.py``; see docs/loopback.md).

Live tests (a real workspace) run only when AMLR_TEST_WORKSPACE_CONFIG points
at a config.json; see docs/azureml.md.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
import time
from types import SimpleNamespace
from typing import Any, Callable

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY_ROOT = os.path.join(REPO, "inst", "python")

pytest.importorskip("azureml.pipeline.steps")

import requests.adapters  # noqa: E402

REAL_SEND = requests.adapters.HTTPAdapter.send  # before any test replaces it

from bridge_calls import call, call_error  # noqa: E402
from amlr import workspace as workspaces  # noqa: E402
from amlr.backends import azureml as backend  # noqa: E402
from amlr.stepcontract import BOOTSTRAPPER_IN_SNAPSHOT  # noqa: E402
from amlr.registry import Registry  # noqa: E402
from amlr.spec import validate  # noqa: E402

EXAMPLES = os.path.join(REPO, "examples")
REGISTRY_PASSWORD = "Reg1stry-Pa55word-do-not-print"
CLIENT_SECRET = "Cl1ent-Secret-do-not-print"
IMAGE = "myacr.azurecr.io/amlr-r:4.4.1"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"


class NetworkUsed(BaseException):
    """Raised by the guard; a BaseException so the SDK's retry loops cannot swallow it."""


# -- the offline seams (one place) -------------------------------------------------------------


def offline_seams(patch: Callable[[Any, str, Any], None]) -> tuple[Any, Any]:
    """Patch the SDK where it would call Azure; return an offline Workspace and its blob datastore.

    ``patch(obj, name, value)`` is ``monkeypatch.setattr`` in tests and plain
    ``setattr`` in subprocesses.
    """
    import requests.adapters
    from azureml._restclient.service_context import ServiceContext, _ServiceKeys
    from azureml.core import Workspace
    from azureml.core.authentication import AbstractAuthentication
    from azureml.data.azure_storage_datastore import AzureBlobDatastore
    from azureml.pipeline.core._aeva_provider import (
        _AevaDataSourceProvider,
        _AevaDataTypeProvider,
        _AevaModuleProvider,
        _AevaWorkflowProvider,
    )

    def no_network(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise NetworkUsed(f"an offline test tried {request.method} {request.url}")

    patch(requests.adapters.HTTPAdapter, "send", no_network)
    patch(ServiceContext, "_fetch_endpoints",
          lambda self: dict.fromkeys(_ServiceKeys.get_discovery_keys(), "https://offline.invalid"))
    # The pipeline service's address comes from the workspace's details (an ARM call).
    patch(_AevaWorkflowProvider, "get_endpoint_url",
          staticmethod(lambda workspace, experiment_name: "https://pipelines.offline.invalid"))
    patch(_AevaDataTypeProvider, "ensure_default_datatypes", lambda self: None)
    patch(_AevaModuleProvider, "find_module_by_fingerprint", lambda self, fingerprint: None)
    patch(_AevaDataSourceProvider, "find_datasource_by_fingerprint", lambda self, fingerprint: None)

    class OfflineAuth(AbstractAuthentication):
        """Tokens that are no JWT: the SDK reads none of them offline, and a request is caught above."""

        def _get_arm_token(self) -> str:
            return "offline-token"

        def _get_graph_token(self) -> str:
            return "offline-token"

    # cloud="AzureCloud": the SDK otherwise fetches cloud metadata from ARM.
    ws = Workspace(SUBSCRIPTION, "rg-amlr", "ws-amlr", auth=OfflineAuth(cloud="AzureCloud"),
                   _disable_service_check=True)
    datastore = AzureBlobDatastore(ws, "workspaceblobstore", "azureml-blobstore-0000", "amlrstorage")
    return ws, datastore


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    ws, datastore = offline_seams(monkeypatch.setattr)
    return SimpleNamespace(workspace=ws, datastore=datastore)


# -- specs a user would write ---------------------------------------------------------------------


def image_env(password_env: str = "AMLR_TEST_REGISTRY_PASSWORD") -> dict[str, Any]:
    return {"image": IMAGE, "registry": {"address": "myacr.azurecr.io", "username": "amlr-pull",
                                         "password_env": password_env}}


def hello_spec(**env: Any) -> dict[str, Any]:
    return {
        "name": "hello",
        "compute": "cpu-cluster",
        "environment": env or image_env(),
        "steps": [{"name": "hello", "script": "hello.R", "source_dir": os.path.join(EXAMPLES, "hello"),
                   "args": ["R user"], "allow_reuse": False}],
    }


def cars_spec(compute: str = "cpu-cluster") -> dict[str, Any]:
    """examples/pipeline/pipeline.R, as R's pipeline_spec() sends it."""
    src = os.path.join(EXAMPLES, "pipeline")

    def step(name: str, **more: Any) -> dict[str, Any]:
        return {"name": name, "script": f"{name}.R", "source_dir": src, **more}

    def ref(step_name: str, output: str) -> dict[str, str]:
        return {"type": "step_output", "step": step_name, "output": output}

    return {
        "name": "cars",
        "description": "Prepare mtcars, fit a model and summarise in parallel, write a report",
        "compute": compute,
        "environment": image_env(),
        "steps": [
            step("prepare", outputs=["data"]),
            step("train", inputs={"data": ref("prepare", "data")}, outputs=["model"]),
            step("summarise", inputs={"data": ref("prepare", "data")}, outputs=["summary"]),
            step("report", args=["Fuel use of 32 cars"], outputs=["report"],
                 inputs={"model": ref("train", "model"), "summary": ref("summarise", "summary")}),
        ],
    }


def build(offline: SimpleNamespace, spec: dict[str, Any], run_dir: str, **kwargs: Any) -> tuple[Any, Any]:
    plan = backend.plan_pipeline(validate(spec), run_dir)
    input_paths = {p: backend.input_path_on_datastore(p, h) for p, h in plan.input_hashes.items()}
    built = backend.build_pipeline(offline.workspace, plan, datastore=offline.datastore, input_paths=input_paths,
                                   **kwargs)
    return plan, built


def node(built: Any, name: str) -> Any:
    matches = [n for n in built.pipeline.graph.nodes if n.name == name]
    assert len(matches) == 1, [n.name for n in built.pipeline.graph.nodes]
    return matches[0]


def node_command(n: Any) -> list[str]:
    """The command AML will run for a node: its Command param plus its structured arguments."""
    return [n.get_param("Command").value, *[str(a) for a in n._module_builder._arguments]]


def graph_payload(built: Any) -> str:
    """What the pipeline service is sent per node: parameters, arguments and the run configuration."""
    parts = []
    for n in built.pipeline.graph.nodes:
        parts += [repr({k: n.get_param(k).value for k in n._params}), repr(node_command(n)), str(n._runconfig)]
    return "\n".join(parts)


def edges(built: Any) -> set[tuple[str, str, str, str]]:
    return {(e.source_port.node.name, e.source_port.name, e.dest_port.node.name, e.dest_port.name)
            for e in built.pipeline.graph.edges if not e.source_port.name.startswith("_run_after")}


# -- building -------------------------------------------------------------------------------------


def test_hello_builds_one_command_step_that_runs_the_bootstrapper(offline, tmp_path):
    plan, built = build(offline, hello_spec(), str(tmp_path))
    assert [n.name for n in built.pipeline.graph.nodes] == ["hello"]
    hello = node(built, "hello")
    # No shell text: the words of the command, the R arguments in the step's contract.
    assert node_command(hello) == ["python", BOOTSTRAPPER_IN_SNAPSHOT, "--step", "_amlr/steps/hello.json"]
    contract = json.loads((Path(plan.steps[0].snapshot.path) / "_amlr/steps/hello.json").read_text())
    assert (contract["script"], contract["args"], contract["metrics_sink"]) == ("hello.R", ["R user"], "auto")
    assert hello.get_param("Target").value == "cpu-cluster"
    assert hello.get_param("MLCComputeType").value == "AmlCompute"
    assert hello._module_builder._module_def.allow_reuse is False
    # The step runs from the snapshot: the bootstrapper is inside it, .git and friends are not.
    snap = plan.steps[0].snapshot.path
    assert hello._module_builder._content_path == snap
    assert os.path.isfile(os.path.join(snap, BOOTSTRAPPER_IN_SNAPSHOT))
    assert os.path.isfile(os.path.join(snap, "hello.R"))
    assert built.pipeline.validate() == []


def test_hello_environment_is_the_custom_image_with_registry_details(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("AMLR_TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    plan, built = build(offline, hello_spec(), str(tmp_path))
    (env,) = built.environments.values()
    assert env.docker.base_image == IMAGE
    assert env.docker.base_image_registry.address == "myacr.azurecr.io"
    assert env.docker.base_image_registry.username == "amlr-pull"
    assert env.python.user_managed_dependencies is True
    assert env.name == plan.steps[0].environment.name and env.version == plan.steps[0].environment.version
    # Built for inspection, the password is nowhere: not in the environment, not in the graph.
    assert env.docker.base_image_registry.password is None
    serialized = json.dumps(env._serialize_to_dict(env), default=str)
    payload = graph_payload(built)
    for text in (serialized, payload, json.dumps(built.describe(plan))):
        assert REGISTRY_PASSWORD not in text
    assert IMAGE in payload and "amlr-pull" in payload


def test_submit_time_environment_carries_the_password_read_from_its_variable(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("AMLR_TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    _, built = build(offline, hello_spec(), str(tmp_path), include_secrets=True)
    (env,) = built.environments.values()
    assert env.docker.base_image_registry.password == REGISTRY_PASSWORD
    monkeypatch.delenv("AMLR_TEST_REGISTRY_PASSWORD")
    with pytest.raises(backend.Credentials) as err:
        build(offline, hello_spec(), str(tmp_path / "again"), include_secrets=True)
    assert "AMLR_TEST_REGISTRY_PASSWORD" in err.value.message


def test_cars_pipeline_graph_has_the_data_dependencies_of_output_of(offline, tmp_path):
    plan, built = build(offline, cars_spec(), str(tmp_path))
    assert sorted(n.name for n in built.pipeline.graph.nodes) == ["prepare", "report", "summarise", "train"]
    assert edges(built) == {
        ("prepare", "data", "train", "data"),
        ("prepare", "data", "summarise", "data"),
        ("train", "model", "report", "model"),
        ("summarise", "summary", "report", "summary"),
    }
    report = plan.pipeline.step("report")
    assert node_command(node(built, "report")) == [
        "python", BOOTSTRAPPER_IN_SNAPSHOT, "--step", "_amlr/steps/report.json",
        "--input", "model", "input:model", "--input", "summary", "input:summary",
        "--output", "report", "output:report"]
    assert report.name == "report"
    assert [(o.name, o.datastore_name, o.bind_mode) for o in node(built, "prepare").outputs
            if not o.name.startswith("_run_after")] == [("data", "workspaceblobstore", "mount")]
    assert [(i.name, i.bind_mode) for i in node(built, "train").inputs] == [("data", "mount")]
    # One snapshot per step (its own code identity), one environment for one r_environment().
    assert len({p.snapshot.hash for p in plan.steps}) == 4
    assert len(built.environments) == 1
    assert all(n._module_builder._module_def.allow_reuse for n in built.pipeline.graph.nodes)
    assert built.pipeline.validate() == []


def test_step_compute_overrides_the_pipeline_default(offline, tmp_path):
    spec = cars_spec()
    spec["steps"][1]["compute"] = "gpu-cluster"
    _, built = build(offline, spec, str(tmp_path), compute_types={"gpu-cluster": "AmlCompute"})
    assert node(built, "train").get_param("Target").value == "gpu-cluster"
    assert node(built, "report").get_param("Target").value == "cpu-cluster"


def test_a_step_without_compute_is_a_classed_error_naming_the_field(tmp_path):
    spec = hello_spec()
    del spec["compute"]
    with pytest.raises(backend.InvalidSpec) as err:
        backend.plan_pipeline(validate(spec), str(tmp_path))
    assert err.value.field == "steps[hello].compute"
    assert "compute" in err.value.message


def test_local_inputs_are_mounted_from_a_content_keyed_datastore_path(offline, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cars.csv").write_text("mpg\n21\n")
    single = tmp_path / "config.yml"
    single.write_text("alpha: 1\n")
    spec = hello_spec()
    spec["steps"][0]["inputs"] = {"data": str(data), "config": str(single),
                                  "remote": "https://example.org/file.csv",
                                  "stored": "azureml://datastores/workspaceblobstore/paths/shared/cars/"}
    plan, built = build(offline, spec, str(tmp_path / "run"))
    hello = node(built, "hello")
    assert sorted((i.name, i.bind_mode) for i in hello.inputs) == [
        ("config", "mount"), ("data", "mount"), ("stored", "mount")]
    refs = {name: port.bind_object for name, port in built.inputs["hello"].items()}
    digest = plan.input_hashes[str(data)]
    assert refs["data"].path_on_datastore == f"amlr/inputs/{digest[:32]}"
    assert refs["config"].path_on_datastore == f"amlr/inputs/{plan.input_hashes[str(single)][:32]}/config.yml"
    assert refs["stored"].path_on_datastore == "shared/cars"
    assert {r.datastore.name for r in refs.values()} == {"workspaceblobstore"}
    words = node_command(hello)
    assert words[words.index("data") - 1:words.index("data") + 2] == ["--input", "data", "input:data"]
    contract = json.loads((Path(plan.steps[0].snapshot.path) / "_amlr/steps/hello.json").read_text())
    assert contract["values"] == {"remote": "https://example.org/file.csv"}  # a web URI reaches R as given
    assert built.pipeline.validate() == []
    # Same content elsewhere: same datastore path, so nothing new is uploaded.
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    assert backend.input_path_on_datastore(str(copy), backend.snapshot.hash_path(str(copy))) == \
        refs["data"].path_on_datastore


def test_upload_inputs_uploads_each_content_once(offline, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cars.csv").write_text("mpg\n21\n")
    spec = hello_spec()
    spec["steps"][0]["inputs"] = {"data": str(data)}
    plan = backend.plan_pipeline(validate(spec), str(tmp_path / "run"))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(type(offline.datastore), "upload", lambda self, **kw: calls.append(kw))
    cache = str(tmp_path / "cache.json")
    first = backend.upload_inputs(plan, offline.datastore, cache_path=cache, cache_key="ws")
    second = backend.upload_inputs(plan, offline.datastore, cache_path=cache, cache_key="ws")
    assert first == second == {str(data): f"amlr/inputs/{plan.input_hashes[str(data)][:32]}"}
    assert calls == [{"src_dir": str(data), "target_path": first[str(data)], "overwrite": False,
                      "show_progress": False}]


def test_dockerfile_environment_is_built_by_aml_from_an_uploaded_context(offline, tmp_path, monkeypatch):
    from azureml.core.environment import DockerBuildContext

    ctx = tmp_path / "docker"
    ctx.mkdir()
    (ctx / "install.R").write_text("install.packages(strsplit(Sys.getenv('CRAN_PACKAGES'), ' ')[[1]])\n")
    (ctx / "Dockerfile").write_text(textwrap.dedent("""\
        FROM rocker/r-ver:4.4.1
        ARG CRAN_PACKAGES=""
        COPY install.R /tmp/install.R
        RUN Rscript /tmp/install.R
        """))
    spec = hello_spec(dockerfile=str(ctx / "Dockerfile"), cran_packages=["data.table"])
    plan = backend.plan_pipeline(validate(spec), str(tmp_path / "run"))
    uploaded: list[tuple[str, str]] = []

    def from_local_directory(workspace: Any, path: str, dockerfile_path: str = "Dockerfile") -> Any:
        uploaded.append((path, dockerfile_path))
        return DockerBuildContext(DockerBuildContext.LocationType.StorageAccount,
                                  "https://amlrstorage.blob.core.windows.net/build/abc/", dockerfile_path)

    monkeypatch.setattr(DockerBuildContext, "from_local_directory", staticmethod(from_local_directory))
    contexts = backend.upload_build_contexts(offline.workspace, plan)
    (env_plan,) = plan.environments.values()
    assert [p for p, _ in uploaded] == [os.path.join(str(tmp_path / "run"), "build_contexts", env_plan.version)]
    written = open(os.path.join(uploaded[0][0], "Dockerfile")).read()
    assert 'ARG CRAN_PACKAGES="data.table"' in written
    assert os.path.isfile(os.path.join(uploaded[0][0], "install.R"))
    built = backend.build_pipeline(offline.workspace, plan, datastore=offline.datastore, input_paths={},
                                   build_contexts=contexts)
    (env,) = built.environments.values()
    assert env.docker.base_image is None
    assert env.docker.build_context.location == "https://amlrstorage.blob.core.windows.net/build/abc/"
    assert env.python.user_managed_dependencies is True
    assert env.name.startswith("amlr-r-") and env.version == env_plan.version
    assert built.pipeline.validate() == []


def test_same_environment_content_gives_the_same_name_and_version(tmp_path):
    first = backend.plan_pipeline(validate(hello_spec()), str(tmp_path / "a")).steps[0].environment
    again = backend.plan_pipeline(validate(hello_spec()), str(tmp_path / "b")).steps[0].environment
    other = backend.plan_pipeline(validate(hello_spec(image="rocker/r-ver:4.4.1")),
                                  str(tmp_path / "c")).steps[0].environment
    aml = [backend.classic_environment(e) for e in (first, again, other)]
    assert (aml[0].name, aml[0].version) == (aml[1].name, aml[1].version)
    assert (aml[0].name, aml[0].version) != (aml[2].name, aml[2].version)


def test_estimator_step_reproduces_the_classic_article(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("AMLR_TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    spec = hello_spec()
    spec["steps"][0]["step_type"] = "estimator"
    _plan, built = build(offline, spec, str(tmp_path))
    step = built.steps["hello"]
    assert type(step).__name__ == "EstimatorStep"
    rc = step._runconfig
    assert rc.environment.docker.base_image == IMAGE
    assert rc.environment.docker.base_image_registry.address == "myacr.azurecr.io"
    assert rc.environment.python.user_managed_dependencies is True
    assert rc.script == BOOTSTRAPPER_IN_SNAPSHOT
    hello = node(built, "hello")
    assert [str(a) for a in hello._module_builder._arguments] == ["--step", "_amlr/steps/hello.json"]
    assert hello.get_param("Target").value == "cpu-cluster"
    assert REGISTRY_PASSWORD not in json.dumps(rc.environment._serialize_to_dict(rc.environment), default=str)


def test_python_script_step_runs_the_bootstrapper_as_its_script(offline, tmp_path):
    spec = cars_spec()
    for s in spec["steps"]:
        s["step_type"] = "python_script"
    _plan, built = build(offline, spec, str(tmp_path))
    train = node(built, "train")
    assert type(built.steps["train"]).__name__ == "PythonScriptStep"
    assert train.get_param("Script").value == BOOTSTRAPPER_IN_SNAPSHOT
    # The bindings are the SDK's objects, which it turns into structured input / output arguments
    # (`input:data`) for the service to substitute, not text it would pass on literally.
    assert [str(a) for a in train._module_builder._arguments] == [
        "--step", "_amlr/steps/train.json", "--input", "data", "input:data", "--output", "model", "output:model"]
    assert ("prepare", "data", "train", "data") in edges(built)
    assert built.pipeline.validate() == []


def test_importing_the_backend_and_building_command_steps_never_imports_the_estimator(tmp_path):
    """``azureml.train.estimator`` costs ~5 s to import; only estimator steps may pay for it.

    (``import azureml.core`` itself registers the automl / hyperdrive run types,
    so the ``azureml.train`` package is always there; the Estimator is not.)
    """
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{PY_ROOT!r}, {HERE!r}]
        import amlr.backends.azureml as backend
        assert not any(m == "azureml" or m.startswith("azureml.") for m in sys.modules), "SDK imported eagerly"
        import test_backend_azureml as t
        offline = t.SimpleNamespace(**dict(zip(("workspace", "datastore"), t.offline_seams(setattr))))
        plan, built = t.build(offline, t.cars_spec(), {str(tmp_path / "command")!r})
        assert built.pipeline.validate() == []
        before = "azureml.train.estimator" in sys.modules
        spec = t.hello_spec()
        spec["steps"][0]["step_type"] = "estimator"
        t.build(offline, spec, {str(tmp_path / "estimator")!r})
        print(before, "azureml.train.estimator" in sys.modules)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["False", "True"]


def test_import_amlr_api_imports_no_azure_sdk():
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {PY_ROOT!r}); import amlr.api, "
                           "amlr.workspace; print(sorted(m for m in sys.modules if m.startswith('azure')))"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- submitting and monitoring (SDK boundary faked) -------------------------------------------------


class FakePort:
    def __init__(self, path_on_datastore: str, files: dict[str, str]):
        self.path_on_datastore = path_on_datastore
        self.files = files
        self.calls: list[dict[str, Any]] = []

    def download(self, local_path: str, overwrite: Any = None, show_progress: Any = None) -> int:
        self.calls.append({"local_path": local_path, "overwrite": overwrite})
        for rel, text in self.files.items():
            path = os.path.join(local_path, *self.path_on_datastore.split("/"), rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(text)
        return len(self.files)


class FakeStepRun:
    def __init__(self, name: str, status: str, log: str = "", metrics: Any = None, reused: bool = False,
                 outputs: Any = None, error: Any = None):
        self.name = name
        self.status = status
        self.log = log
        self.metrics = metrics or {}
        self._is_reused = reused
        self._reused_run_id = "old-step-run" if reused else None
        self.outputs = outputs or {}
        self.error = error
        self.calls: list[str] = []

    def get_details(self) -> dict[str, Any]:
        self.calls.append("get_details")
        out = {"status": self.status, "startTimeUtc": "2024-05-01T10:00:00.000Z"}
        if self.status in ("Completed", "Failed", "Canceled"):
            out["endTimeUtc"] = "2024-05-01T10:01:30.000Z"
        if self.error:
            out["error"] = {"error": {"message": self.error}}
        return out

    def get_details_with_logs(self) -> dict[str, Any]:
        self.calls.append("get_details_with_logs")
        return {"status": self.status, "logFiles": {"user_logs/std_log.txt": self.log,
                                                     "system_logs/lifecycler.log": "system noise\n"}}

    def get_metrics(self) -> dict[str, Any]:
        self.calls.append("get_metrics")
        return self.metrics

    def get_output_data(self, name: str) -> FakePort:
        self.calls.append(f"get_output_data:{name}")
        return self.outputs[name]

    def get_file_names(self) -> list[str]:
        return ["user_logs/std_log.txt", "system_logs/lifecycler.log", "outputs/x.txt"]

    def download_file(self, name: str, output_file_path: str) -> None:
        self.calls.append(f"download_file:{name}")
        with open(output_file_path, "w") as fh:
            fh.write(self.log)


class FakePipelineRun:
    def __init__(self, run_id: str = "pipeline-run-42"):
        self.id = run_id
        self.status = "Running"
        self.step_runs: list[FakeStepRun] = []
        self.calls: list[str] = []
        self.error: Any = None

    def get_portal_url(self) -> str:
        return f"https://ml.azure.com/runs/{self.id}?wsid=/subscriptions/{SUBSCRIPTION}"

    def get_details(self) -> dict[str, Any]:
        self.calls.append("get_details")
        out = {"status": self.status, "startTimeUtc": "2024-05-01T09:59:00Z"}
        if self.status in ("Completed", "Failed", "Canceled"):
            out["endTimeUtc"] = "2024-05-01T10:05:00Z"
        if self.error:
            out["error"] = {"error": {"message": self.error}}
        return out

    def get_steps(self) -> list[FakeStepRun]:
        self.calls.append("get_steps")
        return list(self.step_runs)

    def cancel(self) -> None:
        self.calls.append("cancel")
        self.status = "CancelRequested"


class FakeCompute:
    def __init__(self, type_: str):
        self.type = type_


@pytest.fixture
def azure(offline, monkeypatch, tmp_path):
    """A workspace that answers submit and monitoring calls with recorders."""
    from azureml._restclient.workspace_client import WorkspaceClient
    from azureml.core import Experiment, Workspace
    from azureml.data.azure_storage_datastore import AzureBlobDatastore

    rec = SimpleNamespace(submitted=[], experiments=[], uploads=[], remote=FakePipelineRun(),
                          workspace_infos=[], pipeline_runs=[])

    def classic_workspace(info: Any) -> Any:
        rec.workspace_infos.append(info)
        return offline.workspace

    def submit(self: Any, config: Any, tags: Any = None, **kwargs: Any) -> FakePipelineRun:
        rec.submitted.append({"experiment": self.name, "pipeline": config, "tags": tags, **kwargs})
        return rec.remote

    def pipeline_run(experiment: Any, run_id: str) -> FakePipelineRun:
        rec.pipeline_runs.append((experiment.name, run_id))
        return rec.remote

    monkeypatch.setattr(workspaces, "classic_workspace", classic_workspace)
    def get_or_create_experiment(self: Any, experiment_name: str) -> Any:
        rec.experiments.append(experiment_name)
        return SimpleNamespace(experiment_id="e1", archived_time=None, tags={})

    monkeypatch.setattr(WorkspaceClient, "get_or_create_experiment", get_or_create_experiment)
    monkeypatch.setattr(Experiment, "submit", submit)
    monkeypatch.setattr(Workspace, "get_default_datastore", lambda self: offline.datastore)
    monkeypatch.setattr(Workspace, "compute_targets", property(lambda self: {"cpu-cluster": FakeCompute("AmlCompute")}))
    monkeypatch.setattr(AzureBlobDatastore, "upload", lambda self, **kw: rec.uploads.append(kw))
    monkeypatch.setattr(AzureBlobDatastore, "upload_files", lambda self, files, **kw: rec.uploads.append(
        {"files": files, **kw}))
    import azureml.pipeline.core

    monkeypatch.setattr(azureml.pipeline.core, "PipelineRun", pipeline_run)
    monkeypatch.setenv("AMLR_TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    backend._REMOTE_RUNS.clear()
    rec.home = str(tmp_path / "home")
    rec.workspace = {"subscription_id": SUBSCRIPTION, "resource_group": "rg-amlr", "workspace_name": "ws-amlr",
                     "auth": "cli"}
    return rec




def submit_cars(azure: SimpleNamespace, **options: Any) -> dict[str, Any]:
    return call(azure.home, "submit", spec=cars_spec(), backend="azureml", experiment="cars-exp",
                options={"workspace": azure.workspace, **options})


def test_submit_goes_through_experiment_submit_and_records_the_run(azure):
    run = submit_cars(azure)
    assert azure.experiments == ["cars-exp"]
    (sub,) = azure.submitted
    assert sub["experiment"] == "cars-exp"
    assert sorted(n.name for n in sub["pipeline"].graph.nodes) == ["prepare", "report", "summarise", "train"]
    assert sub["tags"] == {"amlr_run_id": run["id"], "amlr_pipeline": "cars"}
    assert sub["continue_on_step_failure"] is False and sub["regenerate_outputs"] is False
    assert run["backend"] == "azureml" and run["remote_id"] == "pipeline-run-42"
    assert run["portal_url"].startswith("https://ml.azure.com/runs/pipeline-run-42")
    assert run["workspace"]["workspace_name"] == "ws-amlr" and run["workspace"]["auth"] == "cli"
    assert run["status"] == "Queued"
    steps = Registry(azure.home).get_steps(run["id"])
    assert [(s["name"], s["status"]) for s in steps] == [
        ("prepare", "NotStarted"), ("train", "NotStarted"), ("summarise", "NotStarted"), ("report", "NotStarted")]
    # "latest" finds it, like a local run.
    backend._REMOTE_RUNS.clear()
    azure.remote.status = "Running"
    assert call(azure.home, "status")["id"] == run["id"]
    assert azure.pipeline_runs == [("cars-exp", "pipeline-run-42")]


def test_submit_fails_clearly_on_an_unknown_compute_before_submitting(azure):
    err = call_error(azure.home, "submit", spec=cars_spec(compute="no-such-cluster"), backend="azureml",
                     experiment="cars-exp", options={"workspace": azure.workspace})
    assert err["class"] == "azure_request"
    assert "no-such-cluster" in err["message"] and "cpu-cluster" in err["message"]
    assert azure.submitted == []


def test_status_steps_logs_metrics_follow_the_remote_run(azure):
    run = submit_cars(azure)
    remote = azure.remote
    remote.status = "Running"
    remote.step_runs = [
        FakeStepRun("prepare", "Completed", log="prepare: wrote 32 rows\n", metrics={"rows": 32}, reused=True),
        FakeStepRun("train", "Running", log="train: fitting\ntrain: half a li",
                    metrics={"rmse": 2.5, "trace": [1, 2, 3]}),
    ]
    assert call(azure.home, "status", run=run["id"])["status"] == "Running"
    rows = {s["name"]: s for s in call(azure.home, "steps", run=run["id"])}
    assert rows["prepare"]["status"] == "Completed" and rows["prepare"]["reused"] is True
    assert rows["prepare"]["reused_from"] == "old-step-run"
    assert rows["prepare"]["ended"] - rows["prepare"]["started"] == pytest.approx(90)
    assert rows["train"]["status"] == "Running" and rows["report"]["status"] == "NotStarted"
    assert call(azure.home, "logs", run=run["id"], step="prepare") == {"prepare": ["prepare: wrote 32 rows"]}
    chunk = call(azure.home, "follow", run=run["id"], cursor={})
    assert chunk["lines"] == [{"step": "prepare", "line": "prepare: wrote 32 rows"},
                              {"step": "train", "line": "train: fitting"}]
    remote.step_runs[1].log += "ne\n"
    again = call(azure.home, "follow", run=run["id"], cursor=chunk["cursor"])
    assert again["lines"] == [{"step": "train", "line": "train: half a line"}]
    metrics = call(azure.home, "metrics", run=run["id"])
    assert {(m["step"], m["name"], m["idx"], m["value_num"]) for m in metrics} == {
        ("prepare", "rows", 0, 32.0), ("train", "rmse", 0, 2.5),
        ("train", "trace", 0, 1.0), ("train", "trace", 1, 2.0), ("train", "trace", 2, 3.0)}


def test_a_failed_run_reports_the_reason_and_stops_asking(azure):
    run = submit_cars(azure)
    remote = azure.remote
    remote.status = "Failed"
    remote.error = "Step train failed"
    remote.step_runs = [FakeStepRun("prepare", "Completed"),
                        FakeStepRun("train", "Failed", error="Pipeline step execution returned 1")]
    status = call(azure.home, "status", run=run["id"])
    assert status["status"] == "Failed" and status["error"] == "Step train failed"
    rows = {s["name"]: s for s in call(azure.home, "steps", run=run["id"])}
    assert rows["train"]["error"] == "Pipeline step execution returned 1"
    assert rows["summarise"]["status"] == "Canceled" and rows["report"]["status"] == "Canceled"
    asked = len(remote.calls)
    assert call(azure.home, "status", run=run["id"])["status"] == "Failed"
    call(azure.home, "steps", run=run["id"])
    assert len(remote.calls) == asked  # a finished run is not asked again


@pytest.mark.parametrize("aml, amlr", [
    ("NotStarted", "NotStarted"), ("Queued", "Queued"), ("Preparing", "Queued"), ("Starting", "Queued"),
    ("Running", "Running"), ("Finalizing", "Running"), ("CancelRequested", "Running"),
    ("NotResponding", "Running"), ("Completed", "Completed"), ("Finished", "Completed"),
    ("Failed", "Failed"), ("Canceled", "Canceled"),
])
def test_aml_statuses_map_onto_amlrs_six(aml, amlr):
    assert backend.map_status(aml) == amlr


def test_cancel_asks_the_pipeline_run_and_refuses_an_ended_run(azure):
    run = submit_cars(azure)
    azure.remote.status = "Running"
    out = call(azure.home, "cancel", run=run["id"])
    assert azure.remote.calls.count("cancel") == 1
    assert out["cancel_requested"] == 1 and out["status"] == "Running"  # CancelRequested, not yet Canceled
    azure.remote.status = "Canceled"
    assert call(azure.home, "status", run=run["id"])["status"] == "Canceled"
    err = call_error(azure.home, "cancel", run=run["id"])
    assert err["class"] == "run_not_active"


def test_download_fetches_outputs_and_logs_into_dest(azure, tmp_path):
    run = submit_cars(azure)
    azure.remote.status = "Completed"
    port = FakePort("azureml/abc123/report", {"report.md": "# Fuel use\n"})
    azure.remote.step_runs = [FakeStepRun("report", "Completed", log="report: done\n", outputs={"report": port})]
    dest = tmp_path / "dest"
    written = call(azure.home, "download", run=run["id"], step="report", dest=str(dest))
    assert (dest / "report" / "report" / "report.md").read_text() == "# Fuel use\n"
    assert (dest / "report" / "logs" / "user_logs" / "std_log.txt").read_text() == "report: done\n"
    assert str(dest / "report" / "report") in written
    assert port.calls and port.calls[0]["overwrite"] is True
    err = call_error(azure.home, "download", run=run["id"], step="report", dest=str(dest))
    assert err["class"] == "file_exists"
    call(azure.home, "download", run=run["id"], step="report", dest=str(dest), overwrite=True)
    # ./outputs, which AML keeps with the step's run, is the output named `outputs` as on every backend.
    kept = call(azure.home, "download", run=run["id"], step="report", output="outputs", dest=str(tmp_path / "o"))
    assert kept == [str(tmp_path / "o" / "report" / "outputs")]
    assert (tmp_path / "o" / "report" / "outputs" / "x.txt").exists()


def test_step_env_is_set_on_the_job_and_in_the_contract(offline, tmp_path):
    spec = hello_spec()
    spec["steps"][0]["env"] = {"N_TREES": "500"}
    for step_type in ("command", "python_script"):
        spec["steps"][0]["step_type"] = step_type
        plan, built = build(offline, spec, str(tmp_path / step_type))
        assert built.steps["hello"]._runconfig.environment_variables == {"N_TREES": "500"}
        contract = json.loads((Path(plan.steps[0].snapshot.path) / "_amlr/steps/hello.json").read_text())
        assert contract["env"] == {"N_TREES": "500"}
        # The environment carries neither the SDK's placeholder variable nor a conda spec.
        env = built.steps["hello"]._runconfig.environment
        assert env._environment_variables == {} and env.python.conda_dependencies is None


def test_publish_creates_an_endpoint_then_reuses_an_identical_pipeline(azure, monkeypatch):
    from azureml.pipeline.core import Pipeline as AmlPipeline, PipelineEndpoint

    published: list[dict[str, Any]] = []
    endpoints: dict[str, Any] = {}

    class FakeEndpoint:
        def __init__(self, name: str, pipeline: Any):
            self.name, self.id, self.endpoint = name, f"endpoint-{name}", f"https://example.invalid/{name}"
            self.pipelines = [pipeline]
            self.default = pipeline

        def list_pipelines(self) -> list[Any]:
            return list(self.pipelines)

        def add_default(self, pipeline: Any) -> None:
            self.pipelines.append(pipeline)
            self.default = pipeline

        def set_default(self, pipeline: Any) -> None:
            self.default = pipeline

    def publish(self: Any, name: Any = None, description: Any = None, version: Any = None,
                continue_on_step_failure: Any = None) -> Any:
        published.append({"name": name, "version": version})
        return SimpleNamespace(id=f"published-{len(published)}", version=version)

    def get(workspace: Any = None, id: Any = None, name: Any = None, **kwargs: Any) -> Any:
        if name not in endpoints:
            raise _HttpError(404)
        return endpoints[name]

    def create(workspace: Any, name: str, description: str, pipeline: Any, **kwargs: Any) -> Any:
        endpoints[name] = FakeEndpoint(name, pipeline)
        return endpoints[name]

    monkeypatch.setattr(AmlPipeline, "publish", publish)
    monkeypatch.setattr(PipelineEndpoint, "get", staticmethod(get))
    monkeypatch.setattr(PipelineEndpoint, "publish", staticmethod(create))
    first = submit_cars(azure, publish=True)
    second = submit_cars(azure, publish=True)
    assert len(published) == 1 and first["published"]["reused"] is False
    assert second["published"]["reused"] is True
    assert second["published"]["pipeline_id"] == first["published"]["pipeline_id"] == "published-1"
    assert first["published"]["endpoint"] == "cars"
    spec = cars_spec()
    spec["steps"][3]["args"] = ["Fuel use, revised"]
    call(azure.home, "submit", spec=spec, backend="azureml", experiment="cars-exp",
         options={"workspace": azure.workspace, "publish": True})
    assert len(published) == 2 and endpoints["cars"].default.id == "published-2"
    assert len(azure.submitted) == 3


class _HttpError(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.response = SimpleNamespace(status_code=status)


def test_no_secret_reaches_output_registry_logs_or_snapshots(azure, monkeypatch, capsys):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client-1")
    azure.workspace["auth"] = "service_principal"
    run = submit_cars(azure)
    azure.remote.status = "Completed"
    azure.remote.step_runs = [FakeStepRun("prepare", "Completed", log="ok\n", metrics={"rows": 32})]
    texts = [json.dumps(run), json.dumps(call(azure.home, "status")), json.dumps(call(azure.home, "steps")),
             json.dumps(call(azure.home, "logs")), json.dumps(call(azure.home, "metrics")),
             json.dumps(call(azure.home, "list"))]
    info = workspaces.resolve(azure.workspace)
    texts += [repr(info), json.dumps(info.to_json())]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    con = sqlite3.connect(os.path.join(azure.home, "registry.sqlite"))
    for table in ("runs", "steps", "metrics"):
        texts += [repr(row) for row in con.execute(f"SELECT * FROM {table}")]
    con.close()
    for root, _, files in os.walk(azure.home):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                texts.append(fh.read().decode("utf-8", "replace"))
    joined = "\n".join(texts)
    assert run["id"] in joined and "ws-amlr" in joined  # the check looked at real content
    assert REGISTRY_PASSWORD not in joined
    assert CLIENT_SECRET not in joined


def test_the_submitted_environment_has_the_password_only_in_the_sdk_object(azure):
    submit_cars(azure)
    (sub,) = azure.submitted
    # What AML receives for the nodes' run configuration holds the password: the image is private.
    assert REGISTRY_PASSWORD in graph_payload(SimpleNamespace(pipeline=sub["pipeline"]))


def test_remote_errors_become_classed_errors_without_secrets(azure, monkeypatch):
    from azureml.core import Experiment

    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)

    def failing_submit(self: Any, config: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"authorization failed for secret {CLIENT_SECRET} and {REGISTRY_PASSWORD}")

    monkeypatch.setattr(Experiment, "submit", failing_submit)
    err = call_error(azure.home, "submit", spec=cars_spec(), backend="azureml", experiment="cars-exp",
                     options={"workspace": azure.workspace})
    assert err["class"] == "azure_request" and "authorization failed" in err["message"]
    assert CLIENT_SECRET not in json.dumps(err) and REGISTRY_PASSWORD not in json.dumps(err)


# -- live (a real workspace) ----------------------------------------------------------------------

LIVE_CONFIG = os.environ.get("AMLR_TEST_WORKSPACE_CONFIG")
live = pytest.mark.skipif(not LIVE_CONFIG, reason="set AMLR_TEST_WORKSPACE_CONFIG to a config.json to run live tests")


@live
def test_live_hello_runs_on_azure_ml(tmp_path):
    """Submits examples/hello to the workspace in $AMLR_TEST_WORKSPACE_CONFIG and waits for it.

    Needs AMLR_TEST_COMPUTE (a compute cluster) and AMLR_TEST_IMAGE (an R image
    with Python, e.g. one built from docker/), plus credentials for
    AMLR_TEST_AUTH (default "cli").
    """
    home = str(tmp_path / "home")
    spec = hello_spec(image=os.environ.get("AMLR_TEST_IMAGE", IMAGE))
    spec["compute"] = os.environ.get("AMLR_TEST_COMPUTE", "cpu-cluster")
    workspace = {"config": LIVE_CONFIG, "auth": os.environ.get("AMLR_TEST_AUTH", "cli")}
    run = call(home, "submit", spec=spec, backend="azureml", experiment="amlr-live-test",
               options={"workspace": workspace})
    deadline = time.time() + float(os.environ.get("AMLR_TEST_TIMEOUT", "3600"))
    status = run["status"]
    while status not in ("Completed", "Failed", "Canceled") and time.time() < deadline:
        time.sleep(30)
        status = call(home, "status", run=run["id"])["status"]
    assert status == "Completed", call(home, "logs", run=run["id"])
    lines = call(home, "logs", run=run["id"], step="hello")["hello"]
    assert any("Hello, R user" in line for line in lines)


def test_publish_method_publishes_without_running(azure, monkeypatch):
    from azureml.pipeline.core import Pipeline as AmlPipeline, PipelineEndpoint

    created: list[str] = []
    monkeypatch.setattr(AmlPipeline, "publish", lambda self, name=None, description=None, version=None, **kw:
                        SimpleNamespace(id="published-1", version=version))
    monkeypatch.setattr(PipelineEndpoint, "get", staticmethod(lambda workspace=None, name=None, **kw: (_ for _ in ())
                                                               .throw(_HttpError(404))))
    monkeypatch.setattr(PipelineEndpoint, "publish", staticmethod(
        lambda workspace, name, description, pipeline, **kw: created.append(name) or SimpleNamespace(
            name=name, id="endpoint-1", endpoint="https://example.invalid/e1")))
    out = call(azure.home, "publish", spec=cars_spec(), name="cars-endpoint", options={"workspace": azure.workspace})
    assert created == ["cars-endpoint"] and azure.submitted == []
    assert out["endpoint"] == "cars-endpoint" and out["pipeline_id"] == "published-1" and out["reused"] is False
    assert len(out["version"]) == 16
    assert out["portal_url"].startswith("https://ml.azure.com/?wsid=/subscriptions/")
    err = call_error(azure.home, "publish", spec=cars_spec(), backend="local")
    assert err["class"] == "bad_request"


def test_a_finished_steps_log_is_kept_and_read_again_without_asking_azure(azure):
    run = submit_cars(azure)
    azure.remote.status = "Completed"
    prepare = FakeStepRun("prepare", "Completed", log="prepare: wrote 32 rows\nprepare: done\n")
    azure.remote.step_runs = [prepare]
    call(azure.home, "steps", run=run["id"])
    first = call(azure.home, "follow", run=run["id"], cursor={})
    assert [line["line"] for line in first["lines"]] == ["prepare: wrote 32 rows", "prepare: done"]
    assert first["cursor"]["prepare#done"] == 1
    asked = prepare.calls.count("get_details_with_logs")
    assert call(azure.home, "follow", run=run["id"], cursor=first["cursor"])["lines"] == []
    backend._REMOTE_RUNS.clear()
    azure.pipeline_runs.clear()
    assert call(azure.home, "logs", run=run["id"], step="prepare") == {
        "prepare": ["prepare: wrote 32 rows", "prepare: done"]}
    assert prepare.calls.count("get_details_with_logs") == asked
    assert azure.pipeline_runs == []  # nothing was looked up on Azure ML
    row = Registry(azure.home).get_step(run["id"], "prepare")
    assert row["log_path"] == os.path.join(run["run_dir"], "logs", "prepare.log")


# -- the fakes above, checked against the pinned SDK --------------------------------------------------------
#
# The monitoring tests above drive the backend with small fakes of the SDK's run objects. Each fake
# stands in for members of a real class; these tests fail when an SDK upgrade removes or reshapes one
# of them, instead of a user's run failing. Real StepRuns are built from run-history records served by
# the loopback service (tests/python/aml_loopback.py): azureml-core's service endpoints honour its
# developer overrides (AZUREML_DEV_URL_<SERVICE>), so only the pipelines service's address (which the
# SDK reads from the workspace's ARM record) is patched.

FAKE_ONLY = {"calls", "log", "metrics", "outputs", "error", "step_runs", "files"}  # the fakes' own bookkeeping


def _real_classes() -> dict[type, type]:
    from azureml.core.compute import ComputeTarget
    from azureml.pipeline.core import PortDataReference
    from azureml.pipeline.core.run import PipelineRun, StepRun

    return {FakeStepRun: StepRun, FakePipelineRun: PipelineRun, FakePort: PortDataReference, FakeCompute: ComputeTarget}


def _fake_members(fake: type) -> tuple[list[str], list[str]]:
    """(methods, attributes) a fake defines, without its test bookkeeping."""
    import inspect

    methods = [n for n, v in vars(fake).items() if inspect.isfunction(v) and not n.startswith("__")]
    init = inspect.getsource(fake.__init__)
    attributes = sorted(set(re.findall(r"self\.([A-Za-z_][A-Za-z0-9_]*)\s*(?::[^=]+)?=", init)) - FAKE_ONLY)
    return methods, attributes


@pytest.mark.parametrize("fake", [FakeStepRun, FakePipelineRun, FakePort, FakeCompute], ids=lambda c: c.__name__)
def test_each_fake_method_exists_on_the_real_class_with_a_compatible_signature(fake):
    import inspect

    real = _real_classes()[fake]
    methods, _ = _fake_members(fake)
    assert methods or fake is FakeCompute
    for name in methods:
        member = inspect.getattr_static(real, name, None)
        assert callable(member), f"{real.__name__}.{name} is gone: {fake.__name__} stands in for it"
        real_params = inspect.signature(member).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in real_params.values())
        for param in list(inspect.signature(getattr(fake, name)).parameters)[1:]:
            assert param in real_params or takes_any, f"{real.__name__}.{name} has no parameter {param!r}"
        # what the fake requires, the real one must not require more of
        required = [p for p, v in list(real_params.items())[1:]
                    if v.default is v.empty and v.kind in (v.POSITIONAL_ONLY, v.POSITIONAL_OR_KEYWORD)]
        assert set(required) <= set(list(inspect.signature(getattr(fake, name)).parameters)[1:]), (name, required)


@pytest.mark.parametrize("fake", [FakePipelineRun, FakePort, FakeCompute], ids=lambda c: c.__name__)
def test_each_fake_attribute_exists_on_the_real_class(fake):
    import inspect

    real = _real_classes()[fake]
    _, attributes = _fake_members(fake)
    for name in attributes:
        if name == "type" and fake is FakeCompute:  # ComputeTarget sets it per instance, in _initialize
            assert "self.type = compute_type" in inspect.getsource(real._initialize)
            continue
        assert inspect.getattr_static(real, name, None) is not None, f"{real.__name__} has no {name!r}"


@pytest.fixture
def classic_loopback(offline, monkeypatch):
    """The offline workspace, with run history, artifacts and the pipelines service on the loopback service."""
    import aml_loopback as lb
    from azureml.pipeline.core._aeva_provider import _AevaWorkflowProvider

    with lb.SocketGuard() as guard, lb.LoopbackAzureML() as service:
        def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if request.url.startswith(service.url + "/"):
                return REAL_SEND(self, request, *args, **kwargs)
            raise NetworkUsed(f"an offline test tried {request.method} {request.url}")

        monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
        for key in ("RUN_HISTORY", "ARTIFACTS", "METRICS", "EXPERIMENTATION", "EXECUTION", "ASSETS"):
            monkeypatch.setenv(f"AZUREML_DEV_URL_{key}", service.url)
        # The pipelines address: the real lookup builds a ServiceContext, which lists the
        # subscriptions over ARM first (see docs/loopback.md).
        monkeypatch.setattr(_AevaWorkflowProvider, "get_endpoint_url",
                            staticmethod(lambda workspace, experiment_name: service.url))
        service.workspace = offline.workspace
        yield service
    assert guard.refused == [] and service.unhandled == []


def classic_run(service: Any, run_id: str, *, name: str, status: str = "Completed", root: str = "p1") -> None:
    """A run-history record, shaped like the service's RunDto."""
    service.runs[run_id] = {
        "runId": run_id, "runUuid": f"uuid-{run_id}", "rootRunId": root, "parentRunId": root, "experimentId": "e1",
        "status": status, "name": name, "displayName": name, "runType": "azureml.StepRun", "runNumber": 7,
        "target": "cpu-cluster", "createdUtc": "2024-05-01T10:00:00.000Z", "startTimeUtc": "2024-05-01T10:00:01.000Z",
        "endTimeUtc": "2024-05-01T10:01:31.000Z", "dataContainerId": f"dcid.{run_id}", "properties": {},
        "tags": {"azureml.nodeid": f"node-{name}", "azureml.pipeline": root},
    }


def real_step_runs(service: Any) -> dict[str, Any]:
    """StepRuns as the SDK makes them from a pipeline run's children: both kinds of reused child, and a plain one."""
    from azureml._restclient.models import RunDto
    from azureml.core import Experiment, Run

    service.pipeline_runs.update({"old_pipe": "cars-exp", "p1": "cars-exp"})
    classic_run(service, "old_train_run", name="train")
    classic_run(service, "new_summarise_run", name="summarise")
    classic_run(service, "new_prepare_run", name="prepare")
    experiment = Experiment(service.workspace, "cars-exp", _skip_name_validation=True, _create_in_cloud=False)
    dtos = {
        # reused, as the service lists it today: a ReusedStepRun pointing at the earlier run
        "train": RunDto(run_id="new_train_run", run_type="azureml.ReusedStepRun", name="train", status="Completed",
                        tags={"azureml.reusedrunid": "old_train_run", "azureml.nodeid": "n1",
                              "azureml.reusednodeid": "n0", "azureml.reusedpipeline": "old_pipe"}, properties={}),
        # reused, the older form: a StepRun whose properties name the earlier run
        "summarise": RunDto(run_id="new_summarise_run", run_type="azureml.StepRun", name="summarise",
                            status="Completed", tags={"azureml.nodeid": "n2", "azureml.pipeline": "p1"},
                            properties={"azureml.reusedrunid": "old_summarise_run"}),
        "prepare": RunDto(run_id="new_prepare_run", run_type="azureml.StepRun", name="prepare", status="Completed",
                          tags={"azureml.nodeid": "n3", "azureml.pipeline": "p1"}, properties={}),
    }
    return dict(zip(dtos, Run._rehydrate_runs(experiment, list(dtos.values()))))


def test_the_real_step_run_has_what_the_fake_step_run_stands_in_for(classic_loopback):
    runs = real_step_runs(classic_loopback)
    methods, attributes = _fake_members(FakeStepRun)
    for run in runs.values():
        assert type(run).__name__ == "StepRun"
        for name in methods + attributes:
            assert hasattr(run, name), f"StepRun has no {name!r}: FakeStepRun stands in for it"
    # How the SDK marks reuse, which the backend reads (see backend.reused_from):
    assert (runs["train"].id, runs["train"]._is_reused, runs["train"]._reused_run_id) == ("old_train_run", True, None)
    assert (runs["summarise"]._is_reused, runs["summarise"]._reused_run_id) == (True, "old_summarise_run")
    assert runs["prepare"]._is_reused is False
    details = runs["prepare"].get_details()
    assert details["status"] == "Completed" and details["startTimeUtc"].startswith("2024-05-01T10:00:01")


def test_steps_name_the_run_a_reused_step_stands_for_with_real_step_runs(azure, classic_loopback):
    run = submit_cars(azure)
    runs = real_step_runs(classic_loopback)
    azure.remote.status = "Running"
    azure.remote.step_runs = list(runs.values())
    rows = {s["name"]: s for s in call(azure.home, "steps", run=run["id"])}
    assert (rows["train"]["reused"], rows["train"]["reused_from"]) == (True, "old_train_run")
    assert (rows["summarise"]["reused"], rows["summarise"]["reused_from"]) == (True, "old_summarise_run")
    assert (rows["prepare"]["reused"], rows["prepare"]["reused_from"]) == (False, None)
    assert rows["prepare"]["status"] == "Completed" and rows["prepare"]["ended"] - rows["prepare"]["started"] == 90


def test_status_steps_logs_follow_and_cancel_with_the_real_pipeline_run(azure, classic_loopback, monkeypatch):
    """The monitoring path with azureml's own PipelineRun and StepRuns, answered by the loopback service."""
    import azureml.pipeline.core
    from azureml.pipeline.core.run import PipelineRun as RealPipelineRun

    svc = classic_loopback
    run = submit_cars(azure)
    remote = run["remote_id"]
    monkeypatch.setattr(azureml.pipeline.core, "PipelineRun", RealPipelineRun)  # undo the fake for reading
    backend._REMOTE_RUNS.clear()
    svc.pipeline_runs.update({remote: "cars-exp", "old_pipe": "cars-exp"})
    classic_run(svc, remote, name="cars", status="Running", root=remote)
    svc.runs[remote].update(runType="azureml.PipelineRun", parentRunId=None, endTimeUtc=None)
    classic_run(svc, "prepare_run", name="prepare", status="Completed", root=remote)
    classic_run(svc, "train_run", name="train", status="Running", root=remote)
    svc.runs["train_run"]["endTimeUtc"] = None
    svc.children[remote] = ["prepare_run", "train_run"]
    svc.set_log("prepare_run", "prepare: wrote 32 rows\n")
    svc.set_log("train_run", "train: fitting\ntrain: half a li")

    status = call(azure.home, "status", run=run["id"])
    assert status["status"] == "Running" and status["started"] is not None
    rows = {s["name"]: s for s in call(azure.home, "steps", run=run["id"])}
    assert {n: r["status"] for n, r in rows.items()} == {
        "prepare": "Completed", "train": "Running", "summarise": "NotStarted", "report": "NotStarted"}
    assert rows["prepare"]["ended"] - rows["prepare"]["started"] == 90 and rows["prepare"]["reused"] is False
    assert call(azure.home, "logs", run=run["id"], step="prepare") == {"prepare": ["prepare: wrote 32 rows"]}
    chunk = call(azure.home, "follow", run=run["id"], cursor={})
    assert chunk["lines"] == [{"step": "prepare", "line": "prepare: wrote 32 rows"},
                              {"step": "train", "line": "train: fitting"}]
    out = call(azure.home, "cancel", run=run["id"])
    assert svc.cancels == [remote] and out["cancel_requested"] == 1
    assert svc.asked("DELETE", rf"/PipelineRuns/{remote}/Execution$")


def test_editing_one_script_changes_only_that_steps_snapshot(offline, tmp_path):
    """Per-step snapshots: Azure ML's reuse sees a change in the edited step alone (and what depends on it)."""
    src = tmp_path / "src"
    shutil.copytree(os.path.join(EXAMPLES, "pipeline"), src)
    spec = cars_spec()
    for s in spec["steps"]:
        s["source_dir"] = str(src)

    def snapshots(tag: str) -> dict[str, str]:
        plan, _built = build(offline, spec, str(tmp_path / tag))
        return {p.step.name: p.snapshot.hash for p in plan.steps}

    before = snapshots("a")
    assert len(set(before.values())) == 4
    with open(src / "train.R", "a", encoding="utf-8") as fh:
        fh.write("# tuned\n")
    after = snapshots("b")
    assert {n for n in before if before[n] != after[n]} == {"train"}
