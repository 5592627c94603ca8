"""deploy_r_model()'s Python side: real local servers over real HTTP, and Azure ML objects offline.

Local tests start amlr's plumber app with Rscript on 127.0.0.1 (a free port),
send real requests and stop every server they start. The Azure ML tests build
the azure-ai-ml objects and the exported YAML and read them back with the
SDK's own loaders; nothing talks to Azure.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bridge_calls import call, call_error
from conftest import REPO, requires_rscript

from amlr import endpoints, procs

SERVE_SCRIPT = str(REPO / "inst" / "serve" / "serve.R")
SCORE = """
init <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))
score <- function(model, data) {
  if (!all(c("wt", "hp") %in% names(data))) stop("data needs columns wt and hp")
  unname(predict(model, newdata = data))
}
"""

pytestmark = requires_rscript


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def make_model(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["Rscript", "-e", f'saveRDS(lm(mpg ~ wt + hp, data = mtcars), "{folder}/model.rds")'],
                   check=True, timeout=60)
    return str(folder)


def r_predictions(model_dir: str, rows: list[dict[str, float]]) -> list[float]:
    """What predict() gives in R itself, to compare the endpoint's answers with."""
    code = (f'm <- readRDS("{model_dir}/model.rds"); d <- jsonlite::fromJSON(\'{json.dumps(rows)}\'); '
            'cat(jsonlite::toJSON(unname(predict(m, newdata = d)), digits = NA))')
    out = subprocess.run(["Rscript", "-e", code], check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def deploy(home: Path, name: str, model: str, score: str, **extra: Any) -> dict[str, Any]:
    params = {"name": name, "backend": "local", "model": {"path": model}, "score": score,
              "rscript": "Rscript", "serve_script": SERVE_SCRIPT, "r_libs": [], "timeout": 60}
    params.update(extra)
    return call(home, "endpoint_deploy", **params)


def http(url: str, body: bytes | None = None, method: str | None = None) -> tuple[int, Any]:
    return endpoints.http_json(url, body=body, timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One healthy endpoint shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("served")
    home = root / "home"
    model = make_model(root / "model")
    score = write(root / "score.R", SCORE)
    ep = deploy(home, "cars-model", model, score)
    yield {"home": home, "ep": ep, "model": model, "score": score}
    try:
        call(home, "endpoint_delete", name="cars-model")
    except AssertionError:
        pass


def test_deploy_serves_predictions_equal_to_r(served: dict[str, Any]) -> None:
    ep = served["ep"]
    assert ep["status"] == "Healthy" and ep["backend"] == "local"
    assert ep["url"].startswith("http://127.0.0.1:")
    rows = [{"wt": 2.5, "hp": 110}, {"wt": 3.2, "hp": 150}]
    got = json.loads(call(served["home"], "endpoint_invoke", name="cars-model", body=json.dumps({"data": rows})))
    assert got == pytest.approx(r_predictions(served["model"], rows), rel=1e-12)


def test_routes_answer_as_azure_ml_expects(served: dict[str, Any]) -> None:
    url = served["ep"]["url"]
    status, live = http(url + "/live")
    assert status == 200 and live["pid"] == served["ep"]["pid"]
    assert http(url + "/ready") == (200, {"ready": True})
    status, body = http(url + "/score", body=b'{"data": [{"wt": 3, "hp": 120}]}')
    assert status == 200 and len(body["predictions"]) == 1
    status, body = http(url + "/nowhere")
    assert status == 404 and body["error"]["class"] == "not_found"


@pytest.mark.parametrize("payload, fragment", [
    (b"not json{", "not JSON"),
    (b'{"rows": []}', "no `data` field"),
    (b'{"data": [1, 2, 3]}', "not an array of row objects"),
    (b'{"data": []}', "not an array of row objects"),
    (b"", "not JSON"),
])
def test_bad_bodies_are_400_with_a_json_error(served: dict[str, Any], payload: bytes, fragment: str) -> None:
    status, body = http(served["ep"]["url"] + "/score", body=payload)
    assert status == 400
    assert body["error"]["class"] == "bad_input" and fragment in body["error"]["message"]


def test_failing_score_is_500_with_the_r_message(served: dict[str, Any]) -> None:
    status, body = http(served["ep"]["url"] + "/score", body=b'{"data": [{"x": 1}]}')
    assert status == 500
    assert body["error"] == {"class": "score_failed", "message": "score() failed: data needs columns wt and hp"}
    err = call_error(served["home"], "endpoint_invoke", name="cars-model", body='{"data": [{"x": 1}]}')
    assert err["class"] == "score_failed" and "data needs columns wt and hp" in err["message"]
    err = call_error(served["home"], "endpoint_invoke", name="cars-model", body='{"data": 5}')
    assert err["class"] == "bad_input"
    everything = call(served["home"], "endpoint_logs", name="cars-model")
    assert any("data needs columns" in line for line in everything)
    assert any("amlr: ready on http://127.0.0.1:" in line for line in everything)
    assert call(served["home"], "endpoint_logs", name="cars-model", n=1) == everything[-1:]
    assert call_error(served["home"], "endpoint_logs", name="cars-model", n=0)["field"] == "n"


def test_concurrent_invokes_all_get_their_own_answer(served: dict[str, Any]) -> None:
    url = served["ep"]["url"] + "/score"
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        rows = [{"wt": 2 + i / 10, "hp": 100 + i}] * (i + 1)
        results[i] = http(url, body=json.dumps({"data": rows}).encode())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(12))
    for i, (status, body) in results.items():
        assert status == 200 and len(body["predictions"]) == i + 1
    first = {i: body["predictions"][0] for i, (_, body) in results.items()}
    assert len(set(first.values())) == 12  # each request scored its own rows


def test_a_large_payload_is_scored(served: dict[str, Any]) -> None:
    rows = [{"wt": 1.5 + (i % 40) / 10, "hp": 50 + i % 250} for i in range(50_000)]
    status, body = http(served["ep"]["url"] + "/score", body=json.dumps({"data": rows}).encode())
    assert status == 200 and len(body["predictions"]) == 50_000


def test_list_and_status(served: dict[str, Any]) -> None:
    listed = call(served["home"], "endpoint_list")
    assert [(e["name"], e["status"]) for e in listed] == [("cars-model", "Healthy")]
    assert "identity" not in listed[0]
    assert call(served["home"], "endpoint_get", name="cars-model")["port"] == served["ep"]["port"]


def test_server_outlives_the_process_that_deployed_it(tmp_path: Path, bridge_env: dict[str, str]) -> None:
    """R's system2 bridge: `python -m amlr call` deploys and exits; the server goes on."""
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", SCORE)
    home = bridge_env["AMLR_HOME"]
    request = {"method": "endpoint_deploy", "params": {
        "home": home, "name": "detached", "backend": "local", "model": {"path": model}, "score": score,
        "rscript": "Rscript", "serve_script": SERVE_SCRIPT, "r_libs": []}}
    out = subprocess.run([procs.python_executable(), "-m", "amlr", "call"], input=json.dumps(request), text=True,
                         capture_output=True, env=bridge_env, timeout=120)
    ep = json.loads(out.stdout)["result"]
    try:
        assert procs.pid_alive(ep["pid"])
        assert call(home, "endpoint_get", name="detached")["status"] == "Healthy"
        assert os.getsid(ep["pid"]) == ep["pid"]  # its own session: a closed terminal does not end it
    finally:
        call(home, "endpoint_delete", name="detached")
    assert not procs.pid_alive(ep["pid"])
    assert not os.path.exists(endpoints.endpoint_dir(home, "detached"))


def test_delete_leaves_no_process_and_a_deleted_endpoint_is_gone(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", SCORE)
    home = tmp_path / "home"
    ep = deploy(home, "short-lived", model, score)
    pid, port = ep["pid"], ep["port"]
    call(home, "endpoint_delete", name="short-lived")
    assert not procs.pid_alive(pid)
    assert not procs.group_alive(pid)
    assert endpoints.port_free(port)
    err = call_error(home, "endpoint_invoke", name="short-lived", body='{"data": [{"wt": 1, "hp": 1}]}')
    assert err["class"] == "endpoint_not_found"
    assert call_error(home, "endpoint_delete", name="short-lived")["class"] == "endpoint_not_found"
    assert call(home, "endpoint_list") == []


def test_a_killed_server_shows_as_dead(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", SCORE)
    home = tmp_path / "home"
    ep = deploy(home, "killed", model, score)
    os.kill(ep["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.pid_alive(ep["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    got = call(home, "endpoint_get", name="killed")
    assert got["status"] == "Dead" and "endpoint_logs()" in got["reason"]
    err = call_error(home, "endpoint_invoke", name="killed", body='{"data": [{"wt": 1, "hp": 1}]}')
    assert err["class"] == "endpoint_down" and "Dead" in err["message"]
    # The same name deploys again over a dead record; then it is cleaned up.
    again = deploy(home, "killed", model, score)
    assert again["status"] == "Healthy" and again["pid"] != ep["pid"]
    call(home, "endpoint_delete", name="killed")
    assert not procs.pid_alive(again["pid"])


def test_a_live_name_is_not_deployed_twice(served: dict[str, Any]) -> None:
    err = call_error(served["home"], "endpoint_deploy", name="cars-model", backend="local",
                     model={"path": served["model"]}, score=served["score"], rscript="Rscript",
                     serve_script=SERVE_SCRIPT, r_libs=[])
    assert err["class"] == "endpoint_exists" and "endpoint_delete" in err["message"]
    assert call(served["home"], "endpoint_get", name="cars-model")["status"] == "Healthy"


def test_failing_init_is_reported_with_the_log_and_leaves_nothing(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", 'init <- function(model_dir) stop("no model here: ", model_dir)\n'
                                        "score <- function(model, data) 1\n")
    home = tmp_path / "home"
    err = call_error(home, "endpoint_deploy", name="broken", backend="local", model={"path": model}, score=score,
                     rscript="Rscript", serve_script=SERVE_SCRIPT, r_libs=[], timeout=60)
    assert err["class"] == "endpoint_failed"
    assert "no model here" in err["message"] and "init() failed" in err["message"]
    assert not os.path.exists(endpoints.endpoint_dir(str(home), "broken"))
    assert call(home, "endpoint_list") == []


def test_readiness_timeout_stops_the_server(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", "init <- function(model_dir) { Sys.sleep(30); 1 }\n"
                                        "score <- function(model, data) 1\n")
    home = tmp_path / "home"
    started = time.monotonic()
    err = call_error(home, "endpoint_deploy", name="slow-init", backend="local", model={"path": model}, score=score,
                     rscript="Rscript", serve_script=SERVE_SCRIPT, r_libs=[], timeout=3)
    assert err["class"] == "endpoint_failed" and "not ready after 3 seconds" in err["message"]
    assert time.monotonic() - started < 25
    assert not os.path.exists(endpoints.endpoint_dir(str(home), "slow-init"))
    pids = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout.split()
    assert pids == []


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", SCORE)
    home = tmp_path / "home"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = call_error(home, "endpoint_deploy", name="busy-port", backend="local", model={"path": model},
                         score=score, rscript="Rscript", serve_script=SERVE_SCRIPT, r_libs=[], port=port)
    assert err["class"] == "port_in_use" and str(port) in err["message"] and "port = NULL" in err["message"]
    assert not os.path.exists(endpoints.endpoint_dir(str(home), "busy-port"))


def test_a_chosen_free_port_is_used(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", SCORE)
    home = tmp_path / "home"
    port = endpoints.free_port()
    ep = deploy(home, "fixed-port", model, score, port=port)
    try:
        assert ep["port"] == port and ep["url"] == f"http://127.0.0.1:{port}"
    finally:
        call(home, "endpoint_delete", name="fixed-port")


@pytest.mark.parametrize("name", ["../etc", "a b", "x", "-leading", "trailing-", "a" * 33, "naïve", "", None, 7])
def test_odd_names_are_refused(tmp_path: Path, name: Any) -> None:
    err = call_error(tmp_path, "endpoint_deploy", name=name, backend="local", model={"path": str(tmp_path)},
                     score=write(tmp_path / "s.R", SCORE), rscript="Rscript", serve_script=SERVE_SCRIPT)
    assert err["class"] == "endpoint_name" and "3 to 32" in err["message"]
    assert call_error(tmp_path, "endpoint_get", name=name)["class"] == "endpoint_not_found"
    assert not os.path.exists(tmp_path / "endpoints")


def test_missing_model_and_score_and_bad_port(tmp_path: Path) -> None:
    score = write(tmp_path / "s.R", SCORE)
    base = {"name": "ok-name", "backend": "local", "rscript": "Rscript", "serve_script": SERVE_SCRIPT}
    err = call_error(tmp_path, "endpoint_deploy", model={"path": str(tmp_path / "nope")}, score=score, **base)
    assert err["class"] == "model_not_found" and "does not exist" in err["message"]
    err = call_error(tmp_path, "endpoint_deploy", model={"path": score}, score=score, **base)
    assert err["class"] == "model_not_found" and "It is a file" in err["message"]
    err = call_error(tmp_path, "endpoint_deploy", model={"name": "m", "version": "1"}, score=score, **base)
    assert err["class"] == "model_not_found"
    err = call_error(tmp_path, "endpoint_deploy", model={"path": str(tmp_path)}, score=str(tmp_path / "no.R"), **base)
    assert err["class"] == "score_file"
    for port in (80, 70000, "8080", True):
        err = call_error(tmp_path, "endpoint_deploy", model={"path": str(tmp_path)}, score=score, port=port, **base)
        assert err["class"] == "bad_request" and err["field"] == "port"
    assert not os.path.exists(tmp_path / "endpoints")


def test_a_damaged_record_is_reported_and_deletable(tmp_path: Path) -> None:
    folder = Path(endpoints.endpoint_dir(str(tmp_path), "damaged"))
    folder.mkdir(parents=True)
    (folder / "endpoint.json").write_text("{not json", encoding="utf-8")
    err = call_error(tmp_path, "endpoint_get", name="damaged")
    assert err["class"] == "endpoint" and "damaged" in err["message"]
    assert call(tmp_path, "endpoint_list")[0]["status"] == "Damaged"
    call(tmp_path, "endpoint_delete", name="damaged")
    assert not folder.exists()


# -- Azure ML, offline ----------------------------------------------------------------------------


@pytest.fixture
def azure_inputs(tmp_path: Path) -> dict[str, str]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.rds").write_bytes(b"not really an rds, the SDK only uploads it")
    return {"model": str(model), "score": write(tmp_path / "score.R", SCORE)}


def plan(inputs: dict[str, str], **kw: Any) -> endpoints.AzurePlan:
    model = endpoints.ModelRef(path=inputs["model"], azure_id=kw.pop("azure_id", None))
    return endpoints.plan_azure(kw.pop("name", "cars-model"), model, inputs["score"], serve_script=SERVE_SCRIPT,
                                environment=kw.pop("environment", None), instance_type=kw.pop("instance_type", None),
                                instance_count=kw.pop("instance_count", 1))


def test_sdk_objects_have_the_custom_container_routes(azure_inputs: dict[str, str], tmp_path: Path) -> None:
    p = plan(azure_inputs, azure_id="azureml:cars-model:1", instance_count=2)
    context = endpoints.write_serving_context(p, str(tmp_path / "ctx"))
    endpoint, deployment = endpoints.sdk_objects(p, context)
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

    assert isinstance(endpoint, ManagedOnlineEndpoint) and endpoint.name == "cars-model"
    assert endpoint.auth_mode == "key"
    assert isinstance(deployment, ManagedOnlineDeployment)
    assert deployment.endpoint_name == "cars-model" and deployment.name == p.deployment
    assert deployment.model == "azureml:cars-model:1"
    assert deployment.model_mount_path == endpoints.MODEL_MOUNT_PATH
    assert deployment.instance_count == 2 and deployment.instance_type == "Standard_DS3_v2"
    routes = deployment.environment.inference_config
    assert routes == {"liveness_route": {"port": 8000, "path": "/live"},
                      "readiness_route": {"port": 8000, "path": "/ready"},
                      "scoring_route": {"port": 8000, "path": "/score"}}
    rest = deployment.environment._to_rest_object()
    assert rest.properties.inference_config.scoring_route.path == "/score"
    dockerfile = (Path(context) / "Dockerfile").read_text()
    assert "plumber" in dockerfile.split("ARG CRAN_PACKAGES=")[1].splitlines()[0]
    assert dockerfile.rstrip().endswith('CMD ["Rscript", "/opt/amlr-serve/serve.R"]')
    assert dockerfile.count("CMD ") == 1
    assert (Path(context) / "amlr-serve" / "serve.R").read_bytes() == Path(SERVE_SCRIPT).read_bytes()
    assert (Path(context) / "amlr-serve" / "score.R").read_text() == SCORE
    from amlr.dockerlint import lint_text

    assert lint_text(dockerfile) == []


def test_deployment_name_follows_content(azure_inputs: dict[str, str], tmp_path: Path) -> None:
    first = plan(azure_inputs)
    assert plan(azure_inputs).deployment == first.deployment  # nothing changed: the same deployment
    assert endpoints.NAME_RE.match(first.deployment)
    Path(azure_inputs["score"]).write_text(SCORE + "\n# tweak\n", encoding="utf-8")
    changed = plan(azure_inputs)
    assert changed.deployment != first.deployment
    assert plan(azure_inputs, instance_count=3).deployment != changed.deployment
    assert plan(azure_inputs, azure_id="azureml:cars-model:2").deployment != \
        plan(azure_inputs, azure_id="azureml:cars-model:3").deployment


def test_export_is_read_back_by_azure_ai_ml(azure_inputs: dict[str, str], tmp_path: Path) -> None:
    from azure.ai.ml import load_online_deployment, load_online_endpoint

    out = tmp_path / "export"
    res = call(tmp_path, "endpoint_export", name="cars-model", model={"path": azure_inputs["model"]},
               score=azure_inputs["score"], serve_script=SERVE_SCRIPT, path=str(out), instance_type="Standard_F2s_v2")
    endpoint = load_online_endpoint(str(out / "endpoint.yml"))
    deployment = load_online_deployment(str(out / "deployment.yml"))
    assert endpoint.name == "cars-model" and endpoint.auth_mode == "key"
    assert deployment.name == res["deployment_name"] and deployment.endpoint_name == "cars-model"
    assert deployment.instance_type == "Standard_F2s_v2"
    assert deployment.model_mount_path == endpoints.MODEL_MOUNT_PATH
    assert Path(deployment.model.path).resolve() == (out / "model").resolve()
    assert (out / "model" / "model.rds").exists()
    env = deployment.environment
    assert (Path(env.base_path) / env.build.path).resolve() == (out / "environment").resolve()
    routes = env.inference_config.as_dict()  # the REST model the SDK sends: camelCase
    assert routes == {"livenessRoute": {"port": 8000, "path": "/live"},
                      "readinessRoute": {"port": 8000, "path": "/ready"},
                      "scoringRoute": {"port": 8000, "path": "/score"}}
    assert "environment/amlr-serve/score.R" in res["files"]
    err = call_error(tmp_path, "endpoint_export", name="cars-model", model={"path": azure_inputs["model"]},
                     score=azure_inputs["score"], serve_script=SERVE_SCRIPT, path=str(out))
    assert err["class"] == "file_exists"
    call(tmp_path, "endpoint_export", name="cars-model", model={"azure_id": "azureml:cars-model:4"},
         score=azure_inputs["score"], serve_script=SERVE_SCRIPT, path=str(out), overwrite=True)
    assert load_online_deployment(str(out / "deployment.yml")).model in ("azureml:cars-model:4", "cars-model:4")
    assert "model: \"azureml:cars-model:4\"" in (out / "deployment.yml").read_text() or \
        "model: azureml:cars-model:4" in (out / "deployment.yml").read_text()
    assert not (out / "model").exists()


def test_export_checks_inputs(azure_inputs: dict[str, str], tmp_path: Path) -> None:
    base = {"score": azure_inputs["score"], "serve_script": SERVE_SCRIPT, "path": str(tmp_path / "x")}
    assert call_error(tmp_path, "endpoint_export", name="Bad_Name", model={"path": azure_inputs["model"]},
                      **base)["class"] == "endpoint_name"
    assert call_error(tmp_path, "endpoint_export", name="cars", model={"name": "m"}, **base)["class"] == \
        "model_not_found"
    err = call_error(tmp_path, "endpoint_export", name="cars", model={"path": azure_inputs["model"]},
                     instance_count=0, **base)
    assert err["class"] == "bad_request" and err["field"] == "instance_count"
    assert not (tmp_path / "x").exists()


class Poller:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


class RecordingClient:
    """Stands in for MLClient's online_endpoints / online_deployments; records what amlr asks."""

    def __init__(self, existing: list[str]) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.deployments = list(existing)
        self.endpoint: Any = None
        self.online_endpoints = self
        self.online_deployments = _Deployments(self)

    def get(self, name: str) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        self.calls.append(("get", name))
        if self.endpoint is None:
            raise ResourceNotFoundError("no such endpoint")
        return self.endpoint

    def begin_create_or_update(self, obj: Any) -> Poller:
        self.calls.append(("endpoint", dict(obj.traffic or {})))
        obj._scoring_uri = "https://cars-model.westeurope.inference.ml.azure.com/score"
        self.endpoint = obj
        return Poller(obj)


class _Deployments:
    def __init__(self, client: RecordingClient) -> None:
        self.client = client

    def list(self, endpoint_name: str) -> list[Any]:
        return [type("D", (), {"name": n}) for n in self.client.deployments]

    def begin_create_or_update(self, deployment: Any) -> Poller:
        self.client.calls.append(("deployment", deployment.name))
        self.client.deployments.append(deployment.name)
        return Poller(deployment)


def test_deploy_moves_traffic_to_a_new_deployment_once_it_exists(azure_inputs: dict[str, str],
                                                                 tmp_path: Path) -> None:
    p = plan(azure_inputs, azure_id="azureml:cars-model:1")
    client = RecordingClient(existing=["amlr-old0000000"])
    record = endpoints.deploy_azure(client, p, str(tmp_path / "staging"))
    kinds = [c[0] for c in client.calls]
    assert kinds == ["get", "endpoint", "deployment", "endpoint"]
    assert client.calls[1] == ("endpoint", {})  # created without traffic
    assert client.calls[-1] == ("endpoint", {p.deployment: 100})  # moved after the deployment is created
    assert record["deployment"] == p.deployment and record["previous_deployments"] == ["amlr-old0000000"]
    assert record["url"].endswith("/score")
    # Deploying the same thing again creates no deployment.
    client.calls.clear()
    endpoints.deploy_azure(client, p, str(tmp_path / "staging"))
    assert [c[0] for c in client.calls] == ["get", "endpoint"]


# -- attacks --------------------------------------------------------------------------------------


def test_two_deploys_of_one_name_at_once_start_one_server(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", SCORE)
    home = tmp_path / "home"
    outcomes: list[Any] = []

    def one() -> None:
        out = json.loads(endpoints_api_call(home, "endpoint_deploy", name="raced", backend="local",
                                            model={"path": model}, score=score, rscript="Rscript",
                                            serve_script=SERVE_SCRIPT, r_libs=[]))
        outcomes.append(out)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        ok = [o["result"] for o in outcomes if "result" in o]
        errors = [o["error"]["class"] for o in outcomes if "error" in o]
        assert len(ok) == 1 and errors == ["endpoint_exists"]
        servers = subprocess.run(["pgrep", "-f", f"{home}/endpoints/raced"], capture_output=True, text=True)
        assert servers.stdout.split() == [] or servers.stdout.split() == [str(ok[0]["pid"])]
        assert [e["pid"] for e in call(home, "endpoint_list")] == [ok[0]["pid"]]
    finally:
        call(home, "endpoint_delete", name="raced")


def endpoints_api_call(home: Path, method: str, **params: Any) -> str:
    from amlr import api

    params["home"] = str(home)
    return api.handle_json(json.dumps({"method": method, "params": params}))


def test_a_slow_score_times_out_as_a_classed_error(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", "init <- function(model_dir) 1\n"
                                        "score <- function(model, data) { Sys.sleep(as.numeric(data$s[1])); 1 }\n")
    home = tmp_path / "home"
    deploy(home, "slow-score", model, score)
    try:
        started = time.monotonic()
        err = call_error(home, "endpoint_invoke", name="slow-score", body='{"data": [{"s": 4}]}', timeout=1)
        assert err["class"] == "endpoint_timeout" and "larger `timeout`" in err["message"]
        assert time.monotonic() - started < 3.5
        # The server is still there and answers once it is done.
        assert json.loads(call(home, "endpoint_invoke", name="slow-score", body='{"data": [{"s": 0}]}')) == [1]
    finally:
        call(home, "endpoint_delete", name="slow-score")


def test_a_record_whose_pid_is_someone_else_never_kills_it(tmp_path: Path) -> None:
    """A pid reused after a reboot (same number, another process) is not our server."""
    home = str(tmp_path)
    record = {"name": "stale-pid", "backend": "local", "url": "http://127.0.0.1:9", "port": 9, "pid": os.getpid(),
              "identity": f"{os.getpid()}:1", "log": str(tmp_path / "none.log"), "model": {}, "created": 0}
    endpoints.write_record(home, record)
    got = call(tmp_path, "endpoint_get", name="stale-pid")
    assert got["status"] == "Dead"
    call(tmp_path, "endpoint_delete", name="stale-pid")
    assert procs.pid_alive(os.getpid())  # still here
    assert call(tmp_path, "endpoint_list") == []


def test_the_server_gets_no_azure_or_amlr_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "cs-5e1f-never-in-a-server")
    monkeypatch.setenv("AMLR_REGISTRY_PASSWORD", "pw-9a0b-never-in-a-server")
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", "init <- function(model_dir) 1\n"
                                        "score <- function(model, data) Sys.getenv(c('AZURE_CLIENT_SECRET', "
                                        "'AMLR_REGISTRY_PASSWORD', 'AMLR_MODEL_DIR'))\n")
    home = tmp_path / "home"
    deploy(home, "no-secrets", model, score)
    try:
        got = json.loads(call(home, "endpoint_invoke", name="no-secrets", body='{"data": [{"x": 1}]}'))
        assert got == ["", "", model]
    finally:
        call(home, "endpoint_delete", name="no-secrets")


def test_odd_characters_in_model_and_home_paths(tmp_path: Path) -> None:
    root = tmp_path / "a dir with spaces, 'quotes' & ünïcødé"
    model = make_model(root / "model $HOME `x`")
    score = write(root / "score file.R", SCORE)
    home = root / "amlr home"
    ep = deploy(home, "odd-paths", model, score)
    try:
        got = json.loads(call(home, "endpoint_invoke", name="odd-paths", body='{"data": [{"wt": 3, "hp": 100}]}'))
        assert len(got) == 1
    finally:
        call(home, "endpoint_delete", name="odd-paths")
    assert not procs.pid_alive(ep["pid"])


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    """What a missing plumber looks like: R stops before serving; deploy says why and leaves nothing."""
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", SCORE)
    broken_app = write(tmp_path / "serve.R", 'library("plumberNotInstalledAnywhere")\n')
    home = tmp_path / "home"
    err = call_error(home, "endpoint_deploy", name="cannot-start", backend="local", model={"path": model},
                     score=score, rscript="Rscript", serve_script=broken_app, r_libs=[], timeout=30)
    assert err["class"] == "endpoint_failed"
    assert "server process ended" in err["message"] and "plumberNotInstalledAnywhere" in err["message"]
    assert err["data"]["log"]
    assert not os.path.exists(endpoints.endpoint_dir(str(home), "cannot-start"))


def test_an_azure_record_without_a_reachable_workspace_lists_offline_and_reports_why(tmp_path: Path) -> None:
    record = {"name": "cars-cloud", "backend": "azureml_v2", "deployment": "amlr-0123456789ab",
              "url": "https://cars-cloud.westeurope.inference.ml.azure.com/score", "model": {}, "created": 0}
    endpoints.write_record(str(tmp_path), record)
    listed = call(tmp_path, "endpoint_list")
    assert listed[0]["status"] == "Unknown" and "endpoint_status()" in listed[0]["reason"]
    got = call(tmp_path, "endpoint_get", name="cars-cloud")  # no workspace stored: says so, does not crash
    assert got["status"] == "Unknown" and "no workspace" in got["reason"]


def test_an_own_image_gets_plumber_and_the_app_on_top(azure_inputs: dict[str, str], tmp_path: Path) -> None:
    p = plan(azure_inputs, environment={"image": "myacr.azurecr.io/r-base:4.4.1"})
    context = Path(endpoints.write_serving_context(p, str(tmp_path / "ctx")))
    dockerfile = (context / "Dockerfile").read_text()
    assert dockerfile.splitlines()[1] == "FROM myacr.azurecr.io/r-base:4.4.1"
    assert "install.packages(\"plumber\"" in dockerfile
    assert sorted(os.listdir(context)) == ["Dockerfile", "amlr-serve"]
    with_packages = plan(azure_inputs, environment={"cran_packages": ["zoo"]})
    assert with_packages.environment.cran_packages == ("plumber", "zoo")
    assert with_packages.deployment != p.deployment


def test_a_score_that_kills_its_server_or_returns_nonsense(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    score = write(tmp_path / "score.R", "init <- function(model_dir) 1\n"
                                        "score <- function(model, data) {\n"
                                        "  if (isTRUE(data$crash[1])) quit(status = 9)\n"
                                        "  if (isTRUE(data$env[1])) return(new.env())\n"
                                        "  NULL\n"
                                        "}\n")
    home = tmp_path / "home"
    ep = deploy(home, "self-destruct", model, score)
    try:
        assert json.loads(call(home, "endpoint_invoke", name="self-destruct", body='{"data": [{"x": 1}]}')) is None
        err = call_error(home, "endpoint_invoke", name="self-destruct", body='{"data": [{"env": true}]}')
        assert err["class"] == "score_failed" and "not JSON-able" in err["message"]
        err = call_error(home, "endpoint_invoke", name="self-destruct", body='{"data": [{"crash": true}]}')
        assert err["class"] == "endpoint_down"
        deadline = time.monotonic() + 10
        while procs.pid_alive(ep["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert call(home, "endpoint_get", name="self-destruct")["status"] == "Dead"
    finally:
        call(home, "endpoint_delete", name="self-destruct")
