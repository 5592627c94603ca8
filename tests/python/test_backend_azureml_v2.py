"""The azureml_v2 backend with the real azure-ai-ml objects and a fake MLClient.

Azure is unreachable here, so ``azureml_v2.connect`` is replaced by a fake
``MLClient`` whose ``jobs`` records every call (create_or_update, get, list,
begin_cancel, download, and the run-history log reads). Everything on our
side of that boundary -- the PipelineJob, its command nodes, environments,
the registry -- is real, and the tests assert what was asked of Azure ML.

Live tests against a real workspace run only when AMLR_TEST_WORKSPACE_CONFIG
points at a config.json (see docs/azureml_v2.md).
"""
import json
import os
import sqlite3
import time
from types import SimpleNamespace

import pytest


from test_export import (  # noqa: E402  (also puts inst/python on sys.path)
    CLIENT_SECRET,
    REGISTRY_PASSWORD,
    hello_spec,
    multi_step_spec,
)

from bridge_calls import call, call_error  # noqa: E402
from amlr import api  # noqa: E402
from amlr.backends import azureml_v2 as v2  # noqa: E402
from amlr.export import export_pipeline  # noqa: E402
from amlr.registry import Registry  # noqa: E402
from amlr.spec import validate  # noqa: E402

WORKSPACE = {"subscription_id": "sub-0001", "resource_group": "rg-amlr", "workspace_name": "ws-amlr", "auth": "cli"}
REMOTE = "teal_hat_9k2mx"
STUDIO = f"https://ml.azure.com/runs/{REMOTE}?wsid=/subscriptions/sub-0001/resourcegroups/rg-amlr/workspaces/ws-amlr"


# -- the fake MLClient ----------------------------------------------------------------------


class FakePoller:
    def __init__(self, jobs):
        self.jobs = jobs
        self.waited = None

    def result(self, timeout=None):
        self.waited = timeout
        self.jobs.parent_status = "Canceled"
        for child in self.jobs.children:
            if child.status not in ("Completed", "Failed"):
                child.status = "Canceled"


class FakeResponse:
    def __init__(self, text, status_code=200):
        self._text = text
        self.status_code = status_code

    def text(self):
        return self._text


class FakeJobs:
    """``MLClient.jobs`` with canned answers; ``calls`` lists what amlr asked for."""

    def __init__(self):
        self.calls = []
        self.created = None
        self.parent_status = "NotStarted"
        self.children = []
        self.logs = {}
        self.outputs = {}
        self.artifacts = {}
        self.fail_with = None
        self.poller = FakePoller(self)
        self._runs_operations = SimpleNamespace(get_run_details=self._run_details)
        self._requests_pipeline = SimpleNamespace(get=self._http_get)

    def create_or_update(self, job, **kwargs):
        self.calls.append(("create_or_update", job, kwargs))
        if self.fail_with is not None:
            raise self.fail_with
        self.created = job
        return SimpleNamespace(name=REMOTE, status="NotStarted", studio_url=STUDIO)

    def get(self, name):
        self.calls.append(("get", name))
        return SimpleNamespace(name=name, status=self.parent_status)

    def list(self, *, parent_job_name=None, **kwargs):
        self.calls.append(("list", parent_job_name))
        return list(self.children)

    def begin_cancel(self, name, **kwargs):
        self.calls.append(("begin_cancel", name))
        return self.poller

    def download(self, name, *, download_path=".", output_name=None, all=False):
        self.calls.append(("download", name, output_name, all))
        if output_name is None:
            files = {os.path.join("artifacts", k): v for k, v in self.artifacts.get(name, {}).items()}
        else:
            files = {os.path.join("named-outputs", output_name, k): v
                     for k, v in self.outputs.get((name, output_name), {}).items()}
        for rel, text in files.items():
            path = os.path.join(str(download_path), rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)

    def _run_details(self, name):
        self.calls.append(("get_run_details", name))
        files = {"system_logs/lifecycler/execution-wrapper.log": f"https://logs/{name}/system"}
        if name in self.logs:
            files["user_logs/std_log.txt"] = f"https://logs/{name}/std"
        return SimpleNamespace(log_files=files)

    def _http_get(self, url, **kwargs):
        self.calls.append(("http_get", url))
        name = url.split("/")[3]
        return FakeResponse(self.logs.get(name, "")) if url.endswith("/std") else FakeResponse("system noise\n")

    def child(self, step, status, **properties):
        job = SimpleNamespace(name=f"{REMOTE}_{step}", display_name=step, status=status, properties=properties,
                              creation_context=None)
        self.children = [c for c in self.children if c.display_name != step] + [job]
        return job

    def asked(self, kind):
        return [c for c in self.calls if c[0] == kind]


@pytest.fixture
def azure(monkeypatch):
    """The fake client that ``connect`` hands out, and the workspaces it was asked for."""
    jobs = FakeJobs()
    client = SimpleNamespace(
        jobs=jobs,
        workspaces=SimpleNamespace(get=lambda name: SimpleNamespace(mlflow_tracking_uri=f"azureml://tracking/{name}")),
        connected=[],
    )

    def connect(info):
        client.connected.append(info)
        return client

    monkeypatch.setattr(v2, "connect", connect)
    return client




def submit(tmp_path, spec_fn=multi_step_spec, **options):
    options.setdefault("workspace", WORKSPACE)
    return call(tmp_path / "home", "submit", spec=spec_fn(tmp_path), backend="azureml_v2", experiment="cars",
                options=options)


# -- submit: the job built for real, one create_or_update ------------------------------------


def test_submit_builds_a_real_pipeline_job_and_records_the_run(tmp_path, azure):
    from azure.ai.ml.entities import PipelineJob

    run = submit(tmp_path)
    (kind, job, kwargs), = azure.jobs.asked("create_or_update")
    assert isinstance(job, PipelineJob)
    assert kwargs == {"experiment_name": "cars"}
    assert job._validate().passed
    assert list(job.jobs) == ["prepare", "train", "summarise", "report"]
    assert job.settings.default_compute == "azureml:cpu-cluster"
    assert job.jobs["train"].compute == "azureml:gpu-cluster"
    train = job.jobs["train"]
    assert train.component.command == (
        "python _amlr/bootstrapper.py --step _amlr/steps/train.json --input data ${{inputs.data}} "
        "--output model ${{outputs.model}}"
    )
    assert train.inputs["data"]._data.path == "${{parent.jobs.prepare.outputs.data}}"
    assert job.jobs["summarise"].component.is_deterministic is False
    assert job.jobs["summarise"].component.environment.build.path.startswith(run["run_dir"])
    env = job.jobs["train"].component.environment
    assert (env.image, env.name) == ("myacr.azurecr.io/amlr-r:4.4.1", "amlr-r-" + env.version)
    assert os.path.isfile(os.path.join(train.component.code, "_amlr", "bootstrapper.py"))
    # the workspace came from the options; the run is in the registry
    info, = azure.connected
    assert (info.subscription_id, info.resource_group, info.workspace_name) == ("sub-0001", "rg-amlr", "ws-amlr")
    assert run["backend"] == "azureml_v2" and run["remote_id"] == REMOTE and run["portal_url"] == STUDIO
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
    submitted = azure.jobs.created
    exported = export_pipeline(validate(multi_step_spec(tmp_path)), str(tmp_path / "cars.yml"))
    loaded = load_job(exported.path)
    assert summary(submitted, "/") == summary(loaded, str(tmp_path))


def test_no_compute_anywhere_means_serverless_and_the_compute_option_sets_the_default(tmp_path, azure):
    submit(tmp_path, hello_spec)
    assert azure.jobs.created.settings.default_compute == "serverless"
    assert azure.jobs.created.jobs["hello"].component.environment.build is not None  # amlr's Dockerfile
    submit(tmp_path, hello_spec, compute="cpu-cluster")
    assert azure.jobs.created.settings.default_compute == "azureml:cpu-cluster"


def test_unknown_options_are_refused_before_anything_is_packaged(tmp_path, azure):
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE, "max_paralel": 2})
    assert err["class"] == "bad_option" and "max_paralel" in err["message"] and "compute" in err["message"]
    assert azure.jobs.calls == []


def test_azure_failures_become_classed_errors_and_leave_no_run(tmp_path, azure, monkeypatch):
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    azure.jobs.fail_with = ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE})
    assert err["class"] == "credentials"
    assert "az login" in err["message"] and "AZURE_CLIENT_SECRET" in err["message"]
    azure.jobs.fail_with = HttpResponseError(message="(UserError) Compute gpu-cluster not found")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE})
    assert err["class"] == "azure_request" and "gpu-cluster not found" in err["message"]
    # A secret that an SDK message happens to echo is blanked out.
    monkeypatch.setenv("MYACR_PASSWORD", REGISTRY_PASSWORD)
    azure.jobs.fail_with = HttpResponseError(message=f"(Unauthorized) bad credential {REGISTRY_PASSWORD}")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE})
    assert REGISTRY_PASSWORD not in err["message"] and "bad credential ***" in err["message"]
    reg = Registry(str(tmp_path / "home"))
    assert reg.list_runs() == []
    assert not os.path.exists(os.path.join(reg.home, "runs")) or os.listdir(os.path.join(reg.home, "runs")) == []


def test_no_secret_reaches_the_registry_the_run_folder_or_the_answer(tmp_path, azure, monkeypatch):
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


def test_status_and_steps_follow_the_pipeline_job_and_its_children(tmp_path, azure):
    run = submit(tmp_path)
    home = tmp_path / "home"
    azure.jobs.parent_status = "Running"
    azure.jobs.child("prepare", "Completed")
    azure.jobs.child("train", "Running")
    azure.jobs.child("summarise", "Completed", **{"azureml.isreused": "true", "azureml.reusedrunid": "old_job_1"})
    status = call(home, "status", run=run["id"])
    assert status["status"] == "Running" and status["started"] is not None
    assert ("get", REMOTE) in azure.jobs.calls and ("list", REMOTE) in azure.jobs.calls
    rows = {s["name"]: s for s in call(home, "steps", run=run["id"])}
    assert {n: s["status"] for n, s in rows.items()} == {
        "prepare": "Completed", "train": "Running", "summarise": "Completed", "report": "NotStarted"}
    assert rows["summarise"]["reused"] is True and rows["summarise"]["reused_from"] == "old_job_1"
    assert rows["prepare"]["ended"] is not None and rows["report"]["started"] is None
    # The pipeline fails; the step that never started is reported as not run.
    azure.jobs.parent_status = "Failed"
    azure.jobs.child("train", "Failed")
    status = call(home, "status", run=run["id"])
    assert status["status"] == "Failed" and REMOTE in status["error"]
    rows = {s["name"]: s for s in call(home, "steps", run=run["id"])}
    assert rows["train"]["status"] == "Failed" and "run_logs()" in rows["train"]["error"]
    assert rows["report"]["status"] == "Canceled" and "ended Failed" in rows["report"]["error"]
    # An ended run is not asked about again.
    before = len(azure.jobs.calls)
    call(home, "status", run=run["id"])
    assert len(azure.jobs.calls) == before


# -- logs: incremental, per step ------------------------------------------------------------------


def test_follow_returns_each_new_complete_line_once(tmp_path, azure):
    run = submit(tmp_path, hello_spec)
    home = tmp_path / "home"
    azure.jobs.parent_status = "Queued"
    chunk = call(home, "follow", run=run["id"], cursor={})
    assert chunk["lines"] == [] and chunk["run"]["status"] == "Queued"
    azure.jobs.parent_status = "Running"
    azure.jobs.child("hello", "Running")
    azure.jobs.logs[f"{REMOTE}_hello"] = "Hello from R\nhalf a li"
    chunk = call(home, "follow", run=run["id"], cursor={})
    assert [line["line"] for line in chunk["lines"]] == ["Hello from R"]
    assert chunk["lines"][0]["step"] == "hello"
    cursor = chunk["cursor"]
    assert cursor["hello"] == {"offset": len("Hello from R\n"), "done": False}
    azure.jobs.logs[f"{REMOTE}_hello"] = "Hello from R\nhalf a line\nPipeline step execution returned 0\nlast"
    azure.jobs.parent_status = "Completed"
    azure.jobs.child("hello", "Completed")
    chunk = call(home, "follow", run=run["id"], cursor=cursor)
    assert [line["line"] for line in chunk["lines"]] == [
        "half a line", "Pipeline step execution returned 0", "last"]
    assert chunk["cursor"]["hello"]["done"] is True
    assert chunk["steps"][0]["status"] == "Completed"
    # A finished step's log is not fetched again.
    fetched = len(azure.jobs.asked("get_run_details"))
    chunk = call(home, "follow", run=run["id"], cursor=chunk["cursor"])
    assert chunk["lines"] == [] and len(azure.jobs.asked("get_run_details")) == fetched
    # The run-history file that was read is the user log, not the system logs.
    assert all(url.endswith("/std") for _, url in azure.jobs.asked("http_get"))


def test_logs_returns_each_steps_lines(tmp_path, azure):
    run = submit(tmp_path)
    azure.jobs.parent_status = "Running"
    azure.jobs.child("prepare", "Completed")
    azure.jobs.child("train", "Running")
    azure.jobs.logs[f"{REMOTE}_prepare"] = "prepared\nPipeline step execution returned 0\n"
    logs = call(tmp_path / "home", "logs", run=run["id"])
    assert logs == {"prepare": ["prepared", "Pipeline step execution returned 0"], "train": [],
                    "summarise": [], "report": []}
    assert call(tmp_path / "home", "logs", run=run["id"], step="prepare") == {
        "prepare": ["prepared", "Pipeline step execution returned 0"]}
    err = call_error(tmp_path / "home", "logs", run=run["id"], step="nope")
    assert err["class"] == "step_not_found"


def test_pick_log_prefers_the_user_log():
    assert v2.pick_log(["system_logs/x.txt", "user_logs/std_log.txt"]) == "user_logs/std_log.txt"
    assert v2.pick_log(["user_logs/std_log_process_1.txt", "user_logs/std_log_process_0.txt"]) == \
        "user_logs/std_log_process_0.txt"
    assert v2.pick_log(["azureml-logs/70_driver_log.txt", "azureml-logs/55_azureml.txt"]) == \
        "azureml-logs/70_driver_log.txt"
    assert v2.pick_log(["system_logs/x.txt"]) is None


# -- cancel, download --------------------------------------------------------------------------------


def test_cancel_asks_azure_ml_and_waits_for_it(tmp_path, azure):
    run = submit(tmp_path)
    azure.jobs.parent_status = "Running"
    azure.jobs.child("prepare", "Running")
    out = call(tmp_path / "home", "cancel", run=run["id"])
    assert azure.jobs.asked("begin_cancel") == [("begin_cancel", REMOTE)]
    assert azure.jobs.poller.waited == v2.CANCEL_WAIT
    assert out["status"] == "Canceled" and out["cancel_requested"] == 1
    steps = {s["name"]: s["status"] for s in call(tmp_path / "home", "steps", run=run["id"])}
    assert steps == {"prepare": "Canceled", "train": "Canceled", "summarise": "Canceled", "report": "Canceled"}
    err = call_error(tmp_path / "home", "cancel", run=run["id"])
    assert err["class"] == "run_not_active"


def test_download_puts_outputs_and_logs_where_the_local_backend_does(tmp_path, azure):
    run = submit(tmp_path)
    home = tmp_path / "home"
    azure.jobs.parent_status = "Completed"
    for step in ("prepare", "train", "summarise", "report"):
        azure.jobs.child(step, "Completed")
    azure.jobs.outputs[(f"{REMOTE}_report", "report")] = {"report.md": "# Fuel use\n"}
    azure.jobs.artifacts[f"{REMOTE}_report"] = {"user_logs/std_log.txt": "report: wrote report.md\n"}
    dest = tmp_path / "dl"
    written = call(home, "download", run=run["id"], step="report", dest=str(dest))
    assert sorted(written) == [str(dest / "report" / "logs"), str(dest / "report" / "report")]
    assert (dest / "report" / "report" / "report.md").read_text() == "# Fuel use\n"
    assert (dest / "report" / "logs" / "user_logs" / "std_log.txt").exists()
    assert ("download", f"{REMOTE}_report", "report", False) in azure.jobs.calls
    assert ("download", f"{REMOTE}_report", None, False) in azure.jobs.calls
    assert [n for n in os.listdir(str(dest)) if n.startswith(".")] == []  # staging cleaned up
    err = call_error(home, "download", run=run["id"], step="report", output="report", dest=str(dest))
    assert err["class"] == "file_exists"
    again = call(home, "download", run=run["id"], step="report", output="report", dest=str(dest), overwrite=True)
    assert again == [str(dest / "report" / "report")]
    err = call_error(home, "download", run=run["id"], step="report", output="nope", dest=str(dest))
    assert "has no output `nope`" in err["message"]
    # ./outputs, kept by Azure ML with the job's artifacts, is the output named `outputs` as on every backend.
    azure.jobs.artifacts[f"{REMOTE}_report"]["outputs/model.rds"] = "model"
    kept = call(home, "download", run=run["id"], step="report", output="outputs", dest=str(tmp_path / "o"))
    assert kept == [str(tmp_path / "o" / "report" / "outputs")]
    assert (tmp_path / "o" / "report" / "outputs" / "model.rds").read_text() == "model"


def test_download_of_a_running_step_says_to_wait(tmp_path, azure):
    run = submit(tmp_path)
    azure.jobs.parent_status = "Running"
    azure.jobs.child("prepare", "Running")
    err = call_error(tmp_path / "home", "download", run=run["id"], step="prepare", dest=str(tmp_path / "dl"))
    assert err["class"] == "step_not_finished" and "run_wait()" in err["message"]
    assert azure.jobs.asked("download") == []


# -- metrics -----------------------------------------------------------------------------------------


def _mlflow_missing():
    try:
        import mlflow  # noqa: F401
        import azureml.mlflow  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.skipif(not _mlflow_missing(), reason="mlflow and azureml-mlflow are installed")
def test_metrics_without_azureml_mlflow_name_the_package(tmp_path, azure):
    run = submit(tmp_path, hello_spec)
    azure.jobs.parent_status = "Running"
    azure.jobs.child("hello", "Running")
    err = call_error(tmp_path / "home", "metrics", run=run["id"])
    assert err["class"] == "backend_unavailable" and "azureml-mlflow" in err["message"]


class FakeTracker:
    def __init__(self, runs):
        self.runs = runs
        self.asked = []

    def get_run(self, run_id):
        self.asked.append(("get_run", run_id))
        metrics, tags = self.runs[run_id]
        return SimpleNamespace(data=SimpleNamespace(metrics={k: v[-1][1] for k, v in metrics.items()}, tags=tags))

    def get_metric_history(self, run_id, key):
        self.asked.append(("history", run_id, key))
        return [SimpleNamespace(key=key, step=s, value=v, timestamp=1700000000000 + s) for s, v in
                reversed(self.runs[run_id][0][key])]


def test_metrics_come_from_each_steps_mlflow_run_and_are_kept_once_ended(tmp_path, azure, monkeypatch):
    run = submit(tmp_path)
    home = tmp_path / "home"
    tracker = FakeTracker({
        f"{REMOTE}_prepare": ({"rows": [(0, 32.0)]}, {"mlflow.source.name": "x", "stage": "raw"}),
        f"{REMOTE}_train": ({"rmse": [(0, 3.1), (1, 2.9)]}, {}),
    })
    uris = []
    monkeypatch.setattr(v2, "mlflow_tracker", lambda uri: uris.append(uri) or tracker)
    azure.jobs.parent_status = "Completed"
    for step in ("prepare", "train"):
        azure.jobs.child(step, "Completed")
    rows = call(home, "metrics", run=run["id"])
    assert uris == ["azureml://tracking/ws-amlr"]
    assert [(r["step"], r["name"], r["value_num"], r["value_str"], r["idx"]) for r in rows] == [
        ("prepare", "rows", 32.0, None, 0),
        ("prepare", "stage", None, "raw", 0),
        ("train", "rmse", 3.1, None, 0),
        ("train", "rmse", 2.9, None, 1),
    ]
    assert rows[0]["time"] == "2023-11-14T22:13:20.000Z"
    asked = len(tracker.asked)
    assert call(home, "metrics", run=run["id"]) == rows  # from the registry now
    assert len(tracker.asked) == asked


# -- the real MLClient ---------------------------------------------------------------------------


def test_connect_builds_an_mlclient_for_the_workspace_without_network():
    from azure.ai.ml import MLClient

    from amlr.workspace import resolve

    client = v2.connect(resolve(WORKSPACE))
    assert isinstance(client, MLClient)
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (
        "sub-0001", "rg-amlr", "ws-amlr")


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


def test_wait_stream_follows_a_v2_run_in_one_process(tmp_path, azure):
    """run_wait() over either bridge: one stream, log lines and step states, then the run."""
    run = submit(tmp_path, hello_spec)
    home = tmp_path / "home"
    azure.jobs.parent_status = "Completed"
    azure.jobs.child("hello", "Completed")
    azure.jobs.logs[f"{REMOTE}_hello"] = "Hello from R\nPipeline step execution returned 0\n"
    events = [json.loads(line) for line in api.stream_json(json.dumps(
        {"method": "wait", "params": {"home": str(home), "run": run["id"]}}))]
    text = "".join(e["text"] for e in events if e.get("event") == "log")
    assert text.splitlines() == ["Hello from R", "Pipeline step execution returned 0"]
    assert [e["steps"][0]["status"] for e in events if e.get("event") == "steps" and e["steps"]] == ["Completed"]
    assert events[-1]["result"]["status"] == "Completed"


def test_step_env_and_regenerate_outputs_reach_the_job(tmp_path, azure):
    def spec(root):
        raw = multi_step_spec(root)
        raw["steps"][1]["env"] = {"N_TREES": "500"}
        return raw

    submit(tmp_path, spec, regenerate_outputs=True)
    (_, job, _), = azure.jobs.asked("create_or_update")
    assert job.jobs["train"].environment_variables == {"N_TREES": "500"}
    assert not job.jobs["prepare"].environment_variables
    assert job.settings.force_rerun is True
    assert job._validate().passed
    body = job._to_rest_object().as_dict()
    assert body["properties"]["settings"]["force_rerun"] is True
