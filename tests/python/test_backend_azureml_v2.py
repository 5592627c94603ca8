"""The azureml_v2 backend: the azure-ai-ml objects amlr builds, and what it sends.

The job amlr builds is checked as an azure-ai-ml object (the ``PipelineJob``
before the SDK resolves it, captured on its way into the real
``jobs.create_or_update``) against the YAML ``export`` writes; everything then
goes through the real SDK to the loopback Azure ML service
(:mod:`aml_loopback`), so no Azure SDK object is faked here. Following a run
(status, steps, logs, follow, wait, cancel, download, metrics) is tested in
``test_loopback_v2.py``.

Live tests against a real workspace run only when AMLR_TEST_WORKSPACE_CONFIG
points at a config.json (see docs/azureml_v2.md).
"""
import json
import os
import sqlite3
import sys
import time

import pytest

import aml_loopback as lb
from aml_loopback import aml_service  # noqa: F401  (the fixture)
from test_loopback_v2 import assert_step_command


from test_export import (
    CLIENT_SECRET,
    REGISTRY_PASSWORD,
    hello_spec,
    multi_step_spec,
)

from bridge_calls import call, call_error
from amlr import api
from amlr.backends import azureml_v2 as v2
from amlr.export import export_pipeline
from amlr.registry import Registry
from amlr.spec import validate

WORKSPACE = lb.workspace_options()


@pytest.fixture
def azure(aml_service, monkeypatch):
    """The loopback service; ``created`` holds each PipelineJob amlr built, as built, and the call's arguments.

    The SDK resolves a job in place while sending it (and cannot deep-copy
    one), so the job is built twice from the same plan: one is sent, its twin
    is kept for the assertions.
    """
    created = []
    connected = []
    real_connect, real_to_azure_job = v2.connect, v2.to_azure_job

    def to_azure_job(plan):
        created.append([real_to_azure_job(plan), None])
        return real_to_azure_job(plan)

    def connect(info):
        connected.append(info)
        client = real_connect(info)
        send = client.jobs.create_or_update

        def create_or_update(job, **kwargs):
            created[-1][1] = kwargs
            return send(job, **kwargs)

        monkeypatch.setattr(client.jobs, "create_or_update", create_or_update)
        return client

    # Patched where they are looked up (the backend is a package of modules).
    monkeypatch.setattr(v2.launch, "to_azure_job", to_azure_job)
    for module in (v2, v2.launch, v2.client):
        monkeypatch.setattr(module, "connect", connect)
    aml_service.created = created
    aml_service.connected = connected
    return aml_service


def submit(tmp_path, spec_fn=multi_step_spec, **options):
    options.setdefault("workspace", WORKSPACE)
    return call(tmp_path / "home", "submit", spec=spec_fn(tmp_path), backend="azureml_v2", experiment="cars",
                options=options)


# -- submit: the job built for real, one create_or_update ------------------------------------


def test_submit_builds_a_real_pipeline_job_and_records_the_run(tmp_path, azure):
    from azure.ai.ml.entities import PipelineJob

    run = submit(tmp_path)
    (job, kwargs), = azure.created
    assert isinstance(job, PipelineJob)
    assert kwargs == {"experiment_name": "cars"}
    assert job._validate().passed
    assert list(job.jobs) == ["prepare", "train", "summarise", "report"]
    # computes by name: the SDK takes an object's compute as given (see azureml_v2.sdk_compute)
    assert job.settings.default_compute == "cpu-cluster"
    assert job.jobs["train"].compute == "gpu-cluster"
    train = job.jobs["train"]
    assert_step_command({"command": train.component.command, "inputs": train.component.inputs,
                         "outputs": train.component.outputs}, script="train.R", inputs=["data"], outputs=["model"])
    assert train.inputs["data"]._data.path == "${{parent.jobs.prepare.outputs.data}}"
    assert job.jobs["summarise"].component.is_deterministic is False
    assert job.jobs["summarise"].component.environment.build.path.startswith(run["run_dir"])
    env = job.jobs["train"].component.environment
    assert (env.image, env.name) == ("myacr.azurecr.io/amlr-r:4.4.1", "amlr-r-" + env.version)
    assert os.path.isfile(os.path.join(train.component.code, "_amlr", "bootstrapper.py"))
    # the workspace came from the options; the run is in the registry
    info, = azure.connected
    assert (info.subscription_id, info.resource_group, info.workspace_name) == (
        lb.SUBSCRIPTION, lb.RESOURCE_GROUP, lb.WORKSPACE)
    assert len(azure.job_puts()) == 1
    assert run["backend"] == "azureml_v2" and run["remote_id"] == azure.asked("PUT", "/jobs/")[0].path.rsplit("/", 1)[1]
    assert run["portal_url"] == azure.jobs[run["remote_id"]]["properties"]["services"]["Studio"]["endpoint"] \
        + f"&tid={lb.TENANT}"  # the SDK appends the tenant of the token it signed in with
    assert run["status"] == "NotStarted" and run["n_steps"] == 4
    assert run["workspace"] == {**WORKSPACE, "tenant_id": None, "client_id": None, "config_path": None}
    assert any("myacr.azurecr.io" in w for w in run["warnings"])
    assert call(tmp_path / "home", "status")["id"] == run["id"]  # "latest" finds it


def summary(job, base_dir):
    """What a PipelineJob runs, comparable between the YAML and the SDK path."""
    def resolve(path):
        return os.path.basename(os.path.normpath(os.path.join(base_dir, str(path))))

    def port(value):
        data = getattr(value, "_data", value)
        path = getattr(data, "path", data)
        if isinstance(path, str) and path.startswith("${{"):
            return path
        local = not str(path).startswith("azureml://")
        return (data.type, os.path.realpath(os.path.join(base_dir, str(path))) if local else path)

    def compute(name):  # load_job drops the "azureml:" prefix; both name the same target
        return name[len("azureml:"):] if name and name.startswith("azureml:") else name

    out = {"display_name": job.display_name, "description": job.description,
           "experiment_name": job.experiment_name, "default_compute": compute(job.settings.default_compute),
           "jobs": {}}
    for name, node in job.jobs.items():
        comp = node.component
        env = comp.environment
        out["jobs"][name] = {
            "display_name": node.display_name,
            "command": comp.command,
            "code": resolve(comp.code),
            "environment": ("image", env.image) if env.image else ("build", resolve(env.build.path)),
            "compute": compute(node.compute),
            "inputs": {k: port(v) for k, v in node.inputs.items()},
            "outputs": sorted(node.outputs),
            "reuse": comp.is_deterministic,
        }
    return out


def test_submitted_job_is_the_job_export_writes(tmp_path, azure):
    from azure.ai.ml import load_job

    submit(tmp_path)
    (submitted, _), = azure.created
    exported = export_pipeline(validate(multi_step_spec(tmp_path)), str(tmp_path / "cars.yml"))
    loaded = load_job(exported.path)
    assert summary(submitted, "/") == summary(loaded, str(tmp_path))


def test_no_compute_anywhere_means_serverless_and_the_compute_option_sets_the_default(tmp_path, azure):
    submit(tmp_path, hello_spec)
    assert azure.created[-1][0].settings.default_compute == "serverless"
    assert azure.created[-1][0].jobs["hello"].component.environment.build is not None  # amlr's Dockerfile
    # as Azure ML's own recorded sessions show it: serverless as a compute id
    assert azure.job_puts()[-1]["properties"]["settings"]["default_compute"] == azure.arm("computes", "serverless")
    submit(tmp_path, hello_spec, compute="cpu-cluster")
    assert azure.created[-1][0].settings.default_compute == "cpu-cluster"
    assert azure.job_puts()[-1]["properties"]["settings"]["default_compute"] == azure.arm("computes", "cpu-cluster")


def test_unknown_options_are_refused_before_anything_is_packaged(tmp_path, azure):
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE, "max_paralel": 2})
    assert err["class"] == "bad_option" and "max_paralel" in err["message"] and "compute" in err["message"]
    assert azure.requests == [] and azure.connected == []


def test_azure_failures_become_classed_errors_and_leave_no_run(tmp_path, azure, monkeypatch):
    job_put = r"PUT /subscriptions/.*/jobs/[^/]+$"
    azure.fail_next[job_put] = (401, "InvalidAuthenticationToken: the access token has expired")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE})
    assert err["class"] == "credentials"
    assert "az login" in err["message"] and "AZURE_CLIENT_SECRET" in err["message"] and "expired" in err["message"]
    azure.fail_next[job_put] = (400, "(UserError) Compute gpu-cluster not found")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE})
    assert err["class"] == "azure_request" and "gpu-cluster not found" in err["message"]
    # A secret that the service happens to echo is blanked out.
    monkeypatch.setenv("MYACR_PASSWORD", REGISTRY_PASSWORD)
    azure.fail_next[job_put] = (400, f"(Unauthorized) bad credential {REGISTRY_PASSWORD}")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE})
    assert REGISTRY_PASSWORD not in err["message"] and "bad credential ***" in err["message"]
    reg = Registry(str(tmp_path / "home"))
    assert reg.list_runs() == []
    assert not os.path.exists(os.path.join(reg.home, "runs")) or os.listdir(os.path.join(reg.home, "runs")) == []


def test_no_secret_reaches_the_registry_the_run_folder_or_the_answer(tmp_path, azure, monkeypatch):
    from amlr import workspace as workspaces

    # The service principal's credential is built for real (it reads the secret); its token requests
    # would go to Entra ID, so the loopback's static credential answers them instead.
    built = []
    real_credential = workspaces.credential
    monkeypatch.setattr(workspaces, "credential", lambda info: built.append(real_credential(info))
                        or lb.StaticTokenCredential())
    monkeypatch.setenv("AMLR_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client-1")
    workspace = {**WORKSPACE, "auth": "service_principal"}
    params = {"home": str(tmp_path / "home"), "spec": multi_step_spec(tmp_path), "backend": "azureml_v2",
              "options": {"workspace": workspace}}
    answer = api.handle_json(json.dumps({"method": "submit", "params": params}))
    run = json.loads(answer)["result"]
    assert run["workspace"]["client_id"] == "client-1"
    texts = [answer]
    for root, _, files in os.walk(str(tmp_path / "home")):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                texts.append(fh.read().decode("utf-8", "replace"))
    with sqlite3.connect(os.path.join(str(tmp_path / "home"), "registry.sqlite")) as con:
        texts.extend(json.dumps(row) for row in con.execute("SELECT * FROM runs").fetchall())
    for text in texts:
        assert CLIENT_SECRET not in text and REGISTRY_PASSWORD not in text
    assert type(built[0]).__name__ == "ClientSecretCredential"
    sent = [r.body.decode("utf-8", "replace") + json.dumps(r.headers) + json.dumps(r.query) for r in azure.requests]
    assert sent and not [t for t in sent if CLIENT_SECRET in t or REGISTRY_PASSWORD in t]


# -- statuses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("v2_status,amlr_status", [
    ("NotStarted", "NotStarted"), ("Starting", "Queued"), ("Provisioning", "Queued"), ("Preparing", "Queued"),
    ("Queued", "Queued"), ("Running", "Running"), ("Finalizing", "Running"), ("CancelRequested", "Running"),
    ("Completed", "Completed"), ("Failed", "Failed"), ("Canceled", "Canceled"), ("NotResponding", "Running"),
    ("Paused", "Queued"), ("Unknown", "Running"),
])
def test_every_v2_status_maps_onto_amlrs_six(v2_status, amlr_status):
    # "Unknown" keeps what amlr knew before (here: Running).
    assert v2.map_status(v2_status, "Running") == amlr_status


# -- logs: incremental, per step ------------------------------------------------------------------


def test_pick_log_prefers_the_user_log():
    assert v2.pick_log(["system_logs/x.txt", "user_logs/std_log.txt"]) == "user_logs/std_log.txt"
    assert v2.pick_log(["user_logs/std_log_process_1.txt", "user_logs/std_log_process_0.txt"]) == \
        "user_logs/std_log_process_0.txt"
    assert v2.pick_log(["azureml-logs/70_driver_log.txt", "azureml-logs/55_azureml.txt"]) == \
        "azureml-logs/70_driver_log.txt"
    assert v2.pick_log(["system_logs/x.txt"]) is None


# -- metrics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing,named", [("azureml.mlflow", "azureml-mlflow"), ("mlflow.tracking", "mlflow")])
def test_metrics_without_mlflow_packages_name_what_to_install(tmp_path, azure, monkeypatch, missing, named):
    run = submit(tmp_path, hello_spec)
    azure.add_child(run["remote_id"], "hello", "Running")
    azure.set_status(run["remote_id"], "Running")
    monkeypatch.setitem(sys.modules, missing, None)  # what an interpreter without the package does on import
    err = call_error(tmp_path / "home", "metrics", run=run["id"])
    assert err["class"] == "backend_unavailable" and named in err["message"]
    assert azure.asked("GET", "/mlflow/") == []


# -- the real MLClient ---------------------------------------------------------------------------


def test_connect_builds_an_mlclient_for_the_workspace_without_network(monkeypatch):
    from azure.ai.ml import MLClient

    from amlr.workspace import resolve

    monkeypatch.delenv(v2.DEV_URL_ENV, raising=False)
    ws = {"subscription_id": "sub-0001", "resource_group": "rg-amlr", "workspace_name": "ws-amlr", "auth": "cli"}
    client = v2.connect(resolve(ws))
    assert isinstance(client, MLClient)
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (
        "sub-0001", "rg-amlr", "ws-amlr")
    assert client._base_url == "https://management.azure.com"  # no loopback hook without the variable


# -- live, against a real workspace ----------------------------------------------------------------

LIVE_CONFIG = os.environ.get("AMLR_TEST_WORKSPACE_CONFIG")


@pytest.mark.skipif(not LIVE_CONFIG, reason="set AMLR_TEST_WORKSPACE_CONFIG to a workspace config.json to run")
def test_live_hello_runs_on_azure_ml(tmp_path):
    """Submits the hello pipeline, follows it to the end and reads its log (minutes, costs compute)."""
    options = {"workspace": {"config": LIVE_CONFIG}}
    if os.environ.get("AMLR_TEST_COMPUTE"):
        options["compute"] = os.environ["AMLR_TEST_COMPUTE"]
    home = tmp_path / "home"
    run = call(home, "submit", spec=hello_spec(tmp_path), backend="azureml_v2", experiment="amlr-live-test",
               options=options)
    assert run["portal_url"].startswith("https://ml.azure.com/")
    deadline = time.monotonic() + float(os.environ.get("AMLR_TEST_TIMEOUT", "3600"))
    cursor, lines = {}, []
    while time.monotonic() < deadline:
        chunk = call(home, "follow", run=run["id"], cursor=cursor)
        cursor = chunk["cursor"]
        lines += [line["line"] for line in chunk["lines"]]
        if chunk["run"]["status"] in ("Completed", "Failed", "Canceled"):
            break
        time.sleep(15)
    assert chunk["run"]["status"] == "Completed", "\n".join(lines[-30:])
    assert any("Hello from" in line for line in lines)
    assert any("Hello from" in line for line in call(home, "logs", run=run["id"])["hello"])
