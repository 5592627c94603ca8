"""The azureml_v2 backend against the loopback Azure ML service: real SDK, real sockets, real bodies.

Every call goes through the bridge (as R makes it), azure-ai-ml 1.35 and
azure-identity (managed-identity sign-in) to :mod:`aml_loopback` on
127.0.0.1. The tests assert what reached the service: the pipeline job PUT
(checked field by field against what Azure ML requires, by the service
itself, which answers 400 to a body Azure ML would refuse), the components,
code versions and blobs it points at, and what amlr makes of the answers.
A socket guard fails any test that tries to reach another address.
"""
from __future__ import annotations

import json
import os
import re
import socket

import pytest

import aml_loopback as lb
from aml_loopback import aml_service  # noqa: F401  (the fixture)
from bridge_calls import call, call_error
from test_export import hello_spec, multi_step_spec, write

from amlr import api
from amlr.backends import azureml_v2 as v2
from amlr.registry import Registry

WS = lb.workspace_options()
EXPERIMENT = "cars"


def submit(tmp_path, spec_fn=multi_step_spec, **options):
    options.setdefault("workspace", WS)
    return call(tmp_path / "home", "submit", spec=spec_fn(tmp_path), backend="azureml_v2", experiment=EXPERIMENT,
                options=options)


def the_job_put(aml):
    """The one pipeline job PUT of a submit, as sent."""
    puts = aml.job_puts()
    assert len(puts) == 1, f"expected one job PUT, got {len(puts)}"
    return puts[0]["properties"]


def code_files(aml, code_id):
    """The files of a code version, as uploaded to the loopback blob service (relative path -> bytes)."""
    name, version = re.search(r"/codes/([^/]+)/versions/([^/]+)$", code_id).groups()
    uri = aml.codes[(name, version)]["properties"]["codeUri"]
    container, folder = re.match(r"https://[^/]+/([^/]+)/(.+)$", uri).groups()
    return {blob[len(folder) + 1:]: b.data for (c, blob), b in aml.blobs.items()
            if c == container and blob.startswith(folder + "/")}


# -- the command line: the one place that knows its form ---------------------------------------------


def assert_step_command(spec, *, script, inputs, outputs):
    """A component's command runs amlr's bootstrapper on the step and hands it every port by binding.

    The command's exact form is the lead's to change (a step contract file is
    coming); this checks what Azure ML needs of it whatever the form: the
    bootstrapper in the snapshot, each declared input and output used as its
    own ``${{inputs.X}}``/``${{outputs.X}}`` binding, no binding to an
    undeclared port, and the step's script named (directly or in the contract
    file inside the snapshot).
    """
    command = spec["command"]
    assert "_amlr/bootstrapper.py" in command
    used_inputs = set(re.findall(r"\$\{\{inputs\.([A-Za-z0-9_]+)\}\}", command))
    used_outputs = set(re.findall(r"\$\{\{outputs\.([A-Za-z0-9_]+)\}\}", command))
    assert used_inputs == set(inputs), (command, inputs)
    assert used_outputs == set(outputs), (command, outputs)
    assert set(spec.get("inputs") or {}) == set(inputs)
    assert set(spec.get("outputs") or {}) == set(outputs)
    assert script in command or "_amlr/steps/" in command, command


# -- submit ---------------------------------------------------------------------------------------------


def test_submit_sends_a_pipeline_job_azure_ml_accepts(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path)
    job = the_job_put(aml)
    assert aml.rejected == []
    assert (job["jobType"], job["displayName"], job["experimentName"]) == ("Pipeline", "cars", EXPERIMENT)
    assert job["description"] == "Prepare: fit a model, summarise; then report"
    assert list(job["jobs"]) == ["prepare", "train", "summarise", "report"]
    assert job["settings"]["default_compute"] == aml.arm("computes", "cpu-cluster")
    nodes = job["jobs"]
    assert nodes["train"]["computeId"] == aml.arm("computes", "gpu-cluster")
    assert all("computeId" not in nodes[n] for n in ("prepare", "summarise", "report"))
    # bindings: step outputs by reference, local files uploaded, URIs as given
    assert nodes["train"]["inputs"] == {"data": {"value": "${{parent.jobs.prepare.outputs.data}}", "job_input_type": "literal"}}
    assert nodes["report"]["inputs"]["model"]["value"] == "${{parent.jobs.train.outputs.model}}"
    assert nodes["report"]["inputs"]["reference"] == {
        "uri": "azureml://datastores/workspaceblobstore/paths/reference/", "job_input_type": "uri_folder"}
    raw = nodes["prepare"]["inputs"]["raw"]
    assert raw["job_input_type"] == "uri_file" and raw["uri"].startswith("azureml://datastores/workspaceblobstore/paths/LocalUpload/")
    blob = raw["uri"].split("/paths/", 1)[1]
    assert aml.blobs[(lb.CONTAINER, blob)].data == b"x,y\n1,2\n"
    assert nodes["prepare"]["inputs"]["lookup"]["job_input_type"] == "uri_folder"
    assert {n: sorted(node["outputs"]) for n, node in nodes.items()} == {
        "prepare": ["data"], "train": ["model"], "summarise": ["summary"], "report": ["report"]}
    assert all(o == {"job_output_type": "uri_folder"} for node in nodes.values() for o in node["outputs"].values())
    # each node's component: command, code, environment, reuse
    scripts = {"prepare": "prepare.R", "train": "train.R", "summarise": "summarise.R", "report": "report.R"}
    for name, node in nodes.items():
        spec = aml.component_body(node["componentId"])["properties"]["componentSpec"]
        assert_step_command(spec, script=scripts[name], inputs=sorted(node["inputs"]), outputs=sorted(node["outputs"]))
        files = code_files(aml, spec["code"].removeprefix("azureml:"))
        assert scripts[name] in files and "_amlr/bootstrapper.py" in files, sorted(files)
        assert spec["is_deterministic"] is (name != "summarise")
    env = {n: aml.component_body(node["componentId"])["properties"]["componentSpec"]["environment"]
           for n, node in nodes.items()}
    image_env = re.search(r"/environments/([^/]+)/versions/([^/]+)$", env["train"]).groups()
    assert aml.environments[image_env]["properties"]["image"] == "myacr.azurecr.io/amlr-r:4.4.1"
    build_env = re.search(r"/environments/([^/]+)/versions/([^/]+)$", env["summarise"]).groups()
    assert "contextUri" in aml.environments[build_env]["properties"]["build"]
    assert any(name.endswith("/Dockerfile") for name in aml.blob_names("LocalUpload/"))
    # what amlr recorded
    assert run["remote_id"] == aml.asked("PUT", r"/jobs/[^/]+$")[0].path.rsplit("/", 1)[1]
    assert run["status"] == "NotStarted" and run["n_steps"] == 4
    assert run["portal_url"].startswith(f"https://ml.azure.com/runs/{run['remote_id']}?wsid=")


def test_every_call_carries_a_bearer_token_for_the_right_audience(tmp_path, aml_service):
    import jwt

    submit(tmp_path, hello_spec)
    arm_calls = [r for r in aml_service.requests if r.path.startswith("/subscriptions/")]
    assert arm_calls
    for r in arm_calls:
        scheme, _, token = r.headers.get("authorization", "").partition(" ")
        assert scheme == "Bearer", (r.method, r.path)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["aud"] == "https://management.azure.com"
    # blob calls use the SAS the service handed out, not the bearer token
    blob_calls = [r for r in aml_service.requests if r.path.startswith(f"/{lb.ACCOUNT}/")]
    assert blob_calls and all("authorization" not in r.headers and r.query.get("sig") for r in blob_calls)


def test_resubmitting_the_same_pipeline_uploads_no_code_again(tmp_path, aml_service):
    aml = aml_service
    submit(tmp_path)
    uploads = len(aml.asked("PUT", f"^/{lb.ACCOUNT}/"))
    pending = len(aml.asked("POST", r"/startPendingUpload$"))
    codes = {aml.component_body(j["componentId"])["properties"]["componentSpec"]["code"]
             for j in aml.job_puts()[0]["properties"]["jobs"].values()}
    assert pending == len(codes) >= 1  # each distinct snapshot uploaded once
    submit(tmp_path)
    assert len(aml.asked("POST", r"/startPendingUpload$")) == pending
    assert len(aml.asked("PUT", f"^/{lb.ACCOUNT}/")) == uploads  # nothing re-uploaded, inputs included
    assert len(aml.job_puts()) == 2


def test_editing_one_script_changes_only_that_steps_code(tmp_path, aml_service):
    aml = aml_service
    submit(tmp_path)
    first = {n: aml.component_body(j["componentId"])["properties"]["componentSpec"]["code"]
             for n, j in aml.job_puts()[0]["properties"]["jobs"].items()}
    spec = multi_step_spec(tmp_path)  # (re)writes the scripts; then one is edited
    write(os.path.join(str(tmp_path), "proj", "report.R"), 'cat("edited\\n")\n')
    call(tmp_path / "home", "submit", spec=spec, backend="azureml_v2", experiment=EXPERIMENT, options={"workspace": WS})
    second = {n: aml.component_body(j["componentId"])["properties"]["componentSpec"]["code"]
              for n, j in aml.job_puts()[1]["properties"]["jobs"].items()}
    assert {n for n in first if first[n] != second[n]} == {"report"}


def test_a_body_azure_ml_would_refuse_fails_the_submit_and_records_nothing(tmp_path, aml_service, monkeypatch):
    """The default compute in its YAML form (``azureml:<name>``), as amlr sent it before: the PUT is refused."""
    monkeypatch.setattr(v2.plan, "sdk_compute", lambda ref: ref)
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     experiment=EXPERIMENT, options={"workspace": WS, "compute": "cpu-cluster"})
    assert err["class"] == "azure_request" and "azureml:cpu-cluster" in err["message"]
    assert aml_service.rejected and "neither serverless nor the id of a compute" in aml_service.rejected[0]
    assert len(aml_service.job_puts()) == 1  # sent, and refused
    reg = Registry(str(tmp_path / "home"))
    assert reg.list_runs() == []
    runs_dir = tmp_path / "home" / "runs"
    assert not runs_dir.exists() or os.listdir(runs_dir) == []


def test_a_step_compute_in_yaml_form_is_not_found_by_the_sdk(tmp_path, aml_service, monkeypatch):
    """A node's compute as ``azureml:<name>``: the SDK looks up ``computes/azureml:<name>`` and stops."""
    monkeypatch.setattr(v2.plan, "sdk_compute", lambda ref: ref)
    err = call_error(tmp_path / "home", "submit", spec=multi_step_spec(tmp_path), backend="azureml_v2",
                     experiment=EXPERIMENT, options={"workspace": WS})
    assert err["class"] == "azure_request" and "azureml:gpu-cluster" in err["message"]
    assert aml_service.asked("GET", r"/computes/azureml:gpu-cluster$") and aml_service.job_puts() == []


def _mutations(arm):
    """Changes to a pipeline job PUT that Azure ML refuses, each with what the refusal names."""
    def setter(path, value):
        def apply(body):
            target = body
            for key in path[:-1]:
                target = target[key]
            if value is DELETE:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        return apply

    jobs = ("properties", "jobs")
    return {
        "no job type": (setter(("properties", "jobType"), DELETE), "jobType"),
        "a command job instead": (setter(("properties", "jobType"), "Command"), "jobType"),
        "no nodes": (setter(jobs, {}), "jobs"),
        "component by name": (setter(jobs + ("train", "componentId"), "azureml:train:1"), "componentId"),
        "compute with the YAML prefix": (setter(jobs + ("train", "computeId"), arm("computes", "azureml:gpu-cluster")),
                                         "compute"),
        "binding to a missing node": (setter(jobs + ("train", "inputs", "data", "value"),
                                             "${{parent.jobs.nope.outputs.data}}"), "unknown node"),
        "literal that binds nothing": (setter(jobs + ("train", "inputs", "data", "value"), "data"), "binding"),
        "local path as input": (setter(jobs + ("prepare", "inputs", "raw", "uri"), "/home/me/raw.csv"), "uri"),
        "unknown input type": (setter(jobs + ("prepare", "inputs", "raw", "job_input_type"), "file"), "job_input_type"),
        "unknown output type": (setter(jobs + ("train", "outputs", "model", "job_output_type"), "folder"),
                                "job_output_type"),
        "node named apart from its key": (setter(jobs + ("train", "name"), "Train"), "name"),
    }


DELETE = object()


def test_the_service_refuses_each_change_azure_ml_would_refuse(tmp_path, aml_service):
    """Each mutation of the body amlr sent is refused; the body itself passes (checked on the way in)."""
    import copy

    submit(tmp_path)
    sent = aml_service.job_puts()[0]
    lb.check_pipeline_job(sent)
    for label, (mutate, named) in _mutations(aml_service.arm).items():
        body = copy.deepcopy(sent)
        mutate(body)
        try:
            lb.check_pipeline_job(body)
        except lb.Rejected as exc:
            assert named in str(exc), (label, str(exc))
        else:
            pytest.fail(f"the loopback service accepted a body Azure ML refuses: {label}")


def test_the_service_refuses_a_component_command_that_binds_an_undeclared_port(tmp_path, aml_service):
    import copy

    submit(tmp_path, hello_spec)
    sent = aml_service.asked("PUT", r"/components/")[0].json()
    lb.check_component(sent)
    for extra, named in (("${{inputs.nope}}", "undeclared input 'nope'"), ("${{outputs.x}}", "undeclared output 'x'")):
        body = copy.deepcopy(sent)
        body["properties"]["componentSpec"]["command"] += " " + extra
        with pytest.raises(lb.Rejected, match=re.escape(named)):
            lb.check_component(body)
    body = copy.deepcopy(sent)
    body["properties"]["componentSpec"]["code"] = "./hello"
    with pytest.raises(lb.Rejected, match="code version ARM id"):
        lb.check_component(body)


def test_azure_errors_arrive_as_classed_errors(tmp_path, aml_service):
    aml_service.computes.discard("gpu-cluster")
    err = call_error(tmp_path / "home", "submit", spec=multi_step_spec(tmp_path), backend="azureml_v2",
                     experiment=EXPERIMENT, options={"workspace": WS})
    assert err["class"] == "azure_request" and "gpu-cluster" in err["message"]
    aml_service.fail_next[r"PUT /subscriptions/.*/jobs/[^/]+$"] = (401, "The access token is invalid")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     experiment=EXPERIMENT, options={"workspace": WS})
    assert err["class"] == "credentials" and "az login" in err["message"]


# -- following a run -------------------------------------------------------------------------------------


def test_status_and_steps_mirror_the_job_and_its_child_runs(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path)
    home, remote = tmp_path / "home", run["remote_id"]
    aml.set_status(remote, "Running")
    aml.add_child(remote, "prepare", "Completed")
    aml.add_child(remote, "train", "Running")
    aml.add_child(remote, "summarise", "Completed",
                  properties={"azureml.isreused": "true", "azureml.reusedrunid": "earlier_summarise"})
    status = call(home, "status", run=run["id"])
    assert status["status"] == "Running" and status["started"] is not None
    assert aml.asked("GET", rf"/jobs/{remote}$") and aml.asked("GET", rf"/history/v1\.0/.*/runs/{remote}/children$")
    rows = {s["name"]: s for s in call(home, "steps", run=run["id"])}
    assert {n: s["status"] for n, s in rows.items()} == {
        "prepare": "Completed", "train": "Running", "summarise": "Completed", "report": "NotStarted"}
    assert rows["summarise"]["reused"] is True and rows["summarise"]["reused_from"] == "earlier_summarise"
    # a retried node: the newer child run wins
    retry = aml.add_child(remote, "train", "Failed")
    aml.set_status(remote, "Failed")
    status = call(home, "status", run=run["id"])
    assert status["status"] == "Failed" and remote in status["error"]
    rows = {s["name"]: s for s in call(home, "steps", run=run["id"])}
    assert rows["train"]["status"] == "Failed" and "run_logs()" in rows["train"]["error"]
    assert rows["report"]["status"] == "Canceled" and "ended Failed" in rows["report"]["error"]
    assert json.load(open(os.path.join(run["run_dir"], v2.CHILDREN_FILE)))["train"] == retry
    before = len(aml.requests)
    call(home, "status", run=run["id"])  # an ended run is not asked about again
    assert len(aml.requests) == before


def test_logs_and_follow_read_the_run_history_log_files(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path, hello_spec)
    home, remote = tmp_path / "home", run["remote_id"]
    aml.set_status(remote, "Running")
    child = aml.add_child(remote, "hello", "Running")
    aml.set_log(child, "Hello from R\nhalf a li")
    chunk = call(home, "follow", run=run["id"], cursor={})
    assert [line["line"] for line in chunk["lines"]] == ["Hello from R"]
    aml.set_log(child, "Hello from R\nhalf a line\nüñí ✓\nlast")
    aml.set_child_status(child, "Completed")
    aml.set_status(remote, "Completed")
    chunk = call(home, "follow", run=run["id"], cursor=chunk["cursor"])
    assert [line["line"] for line in chunk["lines"]] == ["half a line", "üñí ✓", "last"]
    assert chunk["cursor"]["hello"]["done"] is True
    assert call(home, "logs", run=run["id"]) == {"hello": ["Hello from R", "half a line", "üñí ✓", "last"]}
    # the user log was read, not the system log next to it
    read = [r.path for r in aml.asked("GET", f"^/{lb.ACCOUNT}/{lb.ARTIFACT_CONTAINER}/")]
    assert read and all(p.endswith("user_logs/std_log.txt") for p in read)
    details = aml.asked("GET", rf"/runs/{child}/details$")
    assert details and all(r.headers["authorization"].startswith("Bearer ") for r in details)


def test_wait_streams_log_lines_then_the_ended_run(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path, hello_spec)
    remote = run["remote_id"]
    child = aml.add_child(remote, "hello", "Completed")
    aml.set_log(child, "Hello from R\nPipeline step execution returned 0\n")
    aml.set_status(remote, "Completed")
    events = [json.loads(line) for line in api.stream_json(json.dumps(
        {"method": "wait", "params": {"home": str(tmp_path / "home"), "run": run["id"]}}))]
    text = "".join(e["text"] for e in events if e.get("event") == "log")
    assert text.splitlines() == ["Hello from R", "Pipeline step execution returned 0"]
    assert [e["steps"][0]["status"] for e in events if e.get("event") == "steps" and e["steps"]][-1] == "Completed"
    assert events[-1]["result"]["status"] == "Completed"


def test_cancel_posts_the_cancel_and_follows_its_operation(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path)
    remote = run["remote_id"]
    aml.set_status(remote, "Running")
    aml.add_child(remote, "prepare", "Running")
    out = call(tmp_path / "home", "cancel", run=run["id"])
    assert len(aml.asked("POST", rf"/jobs/{remote}/cancel$")) == 1
    polls = aml.asked("GET", rf"/mfeOperationResults/jc:[^/]+:{remote}$")
    assert len(polls) == 1  # amlr waited for the cancel operation to end
    assert out["status"] == "Canceled" and out["cancel_requested"] == 1
    steps = {s["name"]: s["status"] for s in call(tmp_path / "home", "steps", run=run["id"])}
    assert set(steps.values()) == {"Canceled"}
    assert call_error(tmp_path / "home", "cancel", run=run["id"])["class"] == "run_not_active"


def test_download_fetches_outputs_and_logs_from_the_datastores(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path)
    home, remote = tmp_path / "home", run["remote_id"]
    children = {s: aml.add_child(remote, s, "Completed") for s in ("prepare", "train", "summarise", "report")}
    aml.set_status(remote, "Completed")
    aml.put_output(children["report"], "report", {"report.md": "# Fuel use\n", "fig/plot.txt": "a plot\n"})
    aml.set_log(children["report"], "report: wrote report.md\n")
    dest = tmp_path / "dl"
    written = call(home, "download", run=run["id"], step="report", dest=str(dest))
    assert sorted(written) == [str(dest / "report" / "logs"), str(dest / "report" / "report")]
    assert (dest / "report" / "report" / "report.md").read_text() == "# Fuel use\n"
    assert (dest / "report" / "report" / "fig" / "plot.txt").read_text() == "a plot\n"
    assert (dest / "report" / "logs" / "user_logs" / "std_log.txt").read_text() == "report: wrote report.md\n"
    assert [n for n in os.listdir(dest) if n.startswith(".")] == []
    assert call_error(home, "download", run=run["id"], step="report", output="report",
                      dest=str(dest))["class"] == "file_exists"


def test_dot_outputs_is_the_output_named_outputs(tmp_path, aml_service):
    """What the job kept from ./outputs (its artifacts) downloads as `outputs`, as on every backend."""
    aml = aml_service
    run = submit(tmp_path, hello_spec)
    remote = run["remote_id"]
    child = aml.add_child(remote, "hello", "Completed")
    aml.set_status(remote, "Completed")
    aml.set_log(child, "model", name="outputs/model.rds")
    kept = call(tmp_path / "home", "download", run=run["id"], step="hello", output="outputs", dest=str(tmp_path / "o"))
    assert kept == [str(tmp_path / "o" / "hello" / "outputs")]
    assert (tmp_path / "o" / "hello" / "outputs" / "model.rds").read_text() == "model"


def test_step_env_and_regenerate_outputs_reach_the_job_put(tmp_path, aml_service):
    def spec(root):
        raw = multi_step_spec(root)
        raw["steps"][1]["env"] = {"N_TREES": "500"}
        return raw

    submit(tmp_path, spec, regenerate_outputs=True)
    job = the_job_put(aml_service)
    assert job["settings"]["force_rerun"] is True
    train = aml_service.component_body(job["jobs"]["train"]["componentId"])["properties"]["componentSpec"]
    node = job["jobs"]["train"]
    assert (node.get("environment_variables") or train.get("environment_variables")) == {"N_TREES": "500"}


def test_download_of_a_running_step_asks_nothing_of_azure(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path)
    aml.set_status(run["remote_id"], "Running")
    aml.add_child(run["remote_id"], "prepare", "Running")
    before = len(aml.requests)
    err = call_error(tmp_path / "home", "download", run=run["id"], step="prepare", dest=str(tmp_path / "dl"))
    assert err["class"] == "step_not_finished"
    later = aml.requests[before:]
    assert later, "the download refreshes the run first"
    assert not [r for r in later if "/rundata" in r.path or r.path.startswith(f"/{lb.ACCOUNT}/")]


def test_metrics_come_from_each_child_runs_mlflow_run(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path)
    remote = run["remote_id"]
    prepare = aml.add_child(remote, "prepare", "Completed")
    train = aml.add_child(remote, "train", "Completed")
    aml.set_status(remote, "Completed")
    aml.log_metric(prepare, "rows", 32.0)
    aml.set_tag(prepare, "stage", "raw")
    aml.log_metric(train, "rmse", 3.1, step=0)
    aml.log_metric(train, "rmse", 2.9, step=1)
    rows = call(tmp_path / "home", "metrics", run=run["id"])
    assert [(r["step"], r["name"], r["value_num"], r["value_str"], r["idx"]) for r in rows] == [
        ("prepare", "rows", 32.0, None, 0), ("prepare", "stage", None, "raw", 0),
        ("train", "rmse", 3.1, None, 0), ("train", "rmse", 2.9, None, 1)]
    assert aml.asked("GET", r"/api/2\.0/mlflow/metrics/get-history$")


def test_an_mlflow_failure_is_a_classed_error(tmp_path, aml_service):
    aml = aml_service
    run = submit(tmp_path, hello_spec)
    aml.add_child(run["remote_id"], "hello", "Running")
    aml.set_status(run["remote_id"], "Running")
    aml.fail_next[r"GET /mlflow/.*/runs/get$"] = (403, "caller lacks Microsoft.MachineLearningServices/workspaces/metrics/read")
    err = call_error(tmp_path / "home", "metrics", run=run["id"])
    assert err["class"] == "azure_request" and "metrics/read" in err["message"] and "`hello`" in err["message"]


# -- the loopback machinery itself -----------------------------------------------------------------------


def test_the_guard_refuses_any_address_but_loopback(aml_service):
    with pytest.raises(OSError):
        socket.create_connection(("10.255.255.1", 443), timeout=1)
    with pytest.raises(OSError):
        socket.getaddrinfo("management.azure.com", 443)
    assert len(aml_service.guard.refused) == 2
    aml_service.guard.refused.clear()  # expected here; any other refusal fails the test at teardown


@pytest.mark.parametrize("url,lifted", [
    ("http://127.0.0.1:8080", True), ("http://localhost:1", True), ("http://[::1]:1", True),
    ("https://127.0.0.1:8080", False), ("http://10.0.0.1:80", False), ("http://127.0.0.1.example.com", False),
    ("http://127.0.0.1@example.com/", False), ("http://example.com/?127.0.0.1", False), ("", False),
])
def test_plain_http_is_allowed_only_to_a_loopback_dev_url(monkeypatch, url, lifted):
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.rest import HttpRequest

    monkeypatch.setenv(v2.DEV_URL_ENV, url)
    options = v2.loopback_options()
    assert bool(options) is lifted
    if lifted:
        policy, = options["per_call_policies"]
        for target, allowed in (("http://127.0.0.1:9/x", True), ("http://example.com/x", False)):
            request = PipelineRequest(HttpRequest("GET", target), PipelineContext(None))
            policy.on_request(request)
            assert (request.context.get("enforce_https") is False) is allowed


def test_a_redirect_off_the_machine_is_not_followed_with_the_token(tmp_path, aml_service):
    """The hook lifts the HTTPS check for loopback URLs only; a redirect elsewhere is refused, not followed."""
    aml_service.fail_next[r"PUT /subscriptions/.*/jobs/[^/]+$"] = (307, "http://10.255.255.1/steal")
    err = call_error(tmp_path / "home", "submit", spec=hello_spec(tmp_path), backend="azureml_v2",
                     experiment=EXPERIMENT, options={"workspace": WS})
    assert err["class"] == "azure_request"
    assert aml_service.guard.refused == []  # nothing tried to reach 10.255.255.1


def test_static_token_credential_is_a_token_credential():
    from azure.core.credentials import TokenCredential
    import jwt

    cred = lb.StaticTokenCredential()
    assert isinstance(cred, TokenCredential)
    assert jwt.decode(cred.get_token_info("https://management.azure.com/.default").token,
                      options={"verify_signature": False})["aud"] == "https://management.azure.com"
    cred.scopes.clear()
    token = cred.get_token("https://ml.azure.com/.default").token
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "https://ml.azure.com"
    assert cred.scopes == [("https://ml.azure.com/.default",)]


def test_connect_works_with_the_static_credential(tmp_path, aml_service, monkeypatch):
    """Any TokenCredential: the workspace's credential is replaced, nothing else in amlr."""
    from amlr import workspace

    cred = lb.StaticTokenCredential()
    monkeypatch.setattr(workspace, "credential", lambda info: cred)
    submit(tmp_path, hello_spec, workspace={**WS, "auth": "cli"})
    assert ("https://management.azure.com/.default",) in cred.scopes
    assert aml_service.asked("GET", "/msi/token") == []
