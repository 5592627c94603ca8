"""Run the jobs amlr builds the way Azure ML's runtime runs them, with a real Rscript.

Nobody here can start an Azure ML job, so this test plays the service: for
every node of a classic pipeline (all three step types, built as real
azureml-pipeline objects) and every job of a v2 pipeline (the submitted
azure-ai-ml ``PipelineJob`` and the exported YAML alike) it copies the node's
code folder, mounts data as folders, sets the variables the service sets, and
runs the node's command under each plausible model of what the service does
with it:

* classic, ``kept``: the words kept apart, structured bindings given as the
  literal ``$AZUREML_DATAREFERENCE_<port>`` text (nobody substituted them);
* classic, ``substituted``: the words kept apart, bindings replaced by paths;
* classic, ``sh`` / ``bash``: the words joined with spaces (as the classic SDK's
  ``" ".join`` does) and run by ``/bin/sh -c`` / ``/bin/bash -c``;
* v2, ``bash``: ``${{inputs.x}}`` / ``${{outputs.x}}`` replaced as text, then
  ``/bin/bash -c`` (what the v2 runtime does).

In each: R runs (its log line is checked), the consumer reads the producer's
data, arguments with quotes, spaces, ``$``, commas, backslashes, unicode and a
newline reach ``commandArgs()`` byte for byte, and ``quit(status = 3)`` fails
the node -- and the emulated service then runs nothing that depends on it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs Rscript")

pytest.importorskip("azureml.pipeline.steps")
pytest.importorskip("azure.ai.ml")

from amlr.backends import azureml as classic  # noqa: E402
from amlr.backends import azureml_v2 as v2  # noqa: E402
from amlr.export import export_pipeline  # noqa: E402
from amlr.spec import Pipeline, validate  # noqa: E402
from test_backend_azureml import image_env, node, offline  # noqa: E402,F401

TRICKY = ["it's", "hello world", "$HOME", "a,b", "back\\slash", "ünï ✓", "two\nlines", '--q="x"', "`id`", "*", ""]

PRODUCE = """\
args <- commandArgs(TRUE)
out <- Sys.getenv("AMLR_OUTPUT_data")
writeLines(enc2utf8(args), file.path(out, "args.txt"), useBytes = TRUE)
cat("R ran produce with", length(args), "arguments\\n")
"""

CONSUME = """\
args <- commandArgs(TRUE)
got <- readLines(file.path(Sys.getenv("AMLR_INPUT_data"), "args.txt"), encoding = "UTF-8")
cat("R ran consume; read", length(got), "lines from the producer\\n")
if (identical(args[1], "fail")) quit(status = 3)
writeLines(c(got, args), file.path(Sys.getenv("AMLR_OUTPUT_result"), "all.txt"), useBytes = TRUE)
writeLines(args, file.path("outputs", "also-kept.txt"))
"""

REPORT = """\
x <- readLines(file.path(commandArgs(TRUE)[2], "all.txt"), encoding = "UTF-8")
cat("R ran report on", length(x), "lines\\n")
"""


def make_source(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    (src / "produce.R").write_text(PRODUCE)
    (src / "consume.R").write_text(CONSUME)
    (src / "report.R").write_text(REPORT)
    return src


def spec(src: Path, *, fail: bool = False, step_type: str = "command") -> dict[str, Any]:
    def ref(step: str, output: str) -> dict[str, str]:
        return {"type": "step_output", "step": step, "output": output}

    steps = [
        {"name": "produce", "script": "produce.R", "args": TRICKY, "outputs": ["data"]},
        {"name": "consume", "script": "consume.R", "args": ["fail"] if fail else ["second", "it's"],
         "inputs": {"data": ref("produce", "data")}, "outputs": ["result"]},
        {"name": "report", "script": "report.R", "args": ["--from", "${{inputs.result}}"],
         "inputs": {"result": ref("consume", "result")}},
    ]
    for s in steps:
        s.update(source_dir=str(src), step_type=step_type)
    return {"name": "emulated", "compute": "cpu-cluster", "environment": image_env(), "steps": steps}


# -- the emulated service ---------------------------------------------------------------------


class Service:
    """Mounts, variables and the order of nodes: what Azure ML provides around a command."""

    def __init__(self, root: Path, pipeline: Pipeline):
        self.root = root
        self.pipeline = pipeline
        bin_dir = root / "bin"
        bin_dir.mkdir(exist_ok=True)
        if not (bin_dir / "python").exists():
            os.symlink(sys.executable, bin_dir / "python")
        self.path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        self.results: dict[str, subprocess.CompletedProcess] = {}

    def output_mount(self, step: str, name: str) -> Path:
        path = self.root / "mnt" / step / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def ports(self, step_name: str) -> tuple[dict[str, str], dict[str, str]]:
        step = self.pipeline.step(step_name)
        inputs = {}
        for name, inp in step.inputs.items():
            assert inp.kind == "step_output"
            inputs[name] = str(self.output_mount(inp.step or "", inp.output or ""))
        outputs = {name: str(self.output_mount(step_name, name)) for name in step.outputs}
        return inputs, outputs

    def run_all(self, code_of: Callable[[str], str], command_of: Callable[[str, dict, dict], Any],
                env_of: Callable[[dict, dict], dict[str, str]]) -> None:
        """Run the nodes in order; a failed node cancels what depends on it (as the service does)."""
        failed: set[str] = set()
        for step in self.pipeline.steps:
            if any(up in failed for up in step.upstream()):
                failed.add(step.name)
                continue
            inputs, outputs = self.ports(step.name)
            work = self.root / "jobs" / step.name
            shutil.copytree(code_of(step.name), work)  # each job gets its own copy of its code
            env = {k: v for k, v in os.environ.items() if not k.startswith("AMLR_")}
            env.update(env_of(inputs, outputs), PATH=self.path)
            done = subprocess.run(command_of(step.name, inputs, outputs), cwd=work, env=env, capture_output=True,
                                  timeout=120)
            self.results[step.name] = done
            if done.returncode != 0:
                failed.add(step.name)


def check_success(service: Service) -> None:
    for name in ("produce", "consume", "report"):
        done = service.results[name]
        assert done.returncode == 0, (name, done.stderr.decode())
        assert f"R ran {name}".encode() in done.stdout, done.stdout
        assert done.stderr.decode().rstrip().endswith("Pipeline step execution returned 0")
    lines = (service.root / "mnt" / "consume" / "result" / "all.txt").read_text(encoding="utf-8").split("\n")
    # produce's arguments, byte for byte (the one with a newline is two lines), then consume's.
    assert lines[:-1] == "\n".join([*TRICKY, "second", "it's"]).split("\n")
    assert (service.root / "jobs" / "consume" / "outputs" / "also-kept.txt").read_text() == "second\nit's\n"
    assert b"R ran report on" in service.results["report"].stdout


def check_failure(service: Service) -> None:
    done = service.results["consume"]
    assert done.returncode == 3, done.stderr.decode()
    assert b"R ran consume" in done.stdout
    assert done.stderr.decode().rstrip().endswith("Pipeline step execution returned 3")
    assert "report" not in service.results


# -- classic ------------------------------------------------------------------------------------


def classic_argv(n: Any) -> list[str]:
    """What the service holds for a node: its executable (or script) and its structured arguments."""
    args = [str(a) for a in n._module_builder._arguments]
    command = n.get_param("Command").value if "Command" in n._params else None
    if command:
        return [command, *args]
    return ["python", n.get_param("Script").value, *args]


BINDING = re.compile(r"^(input|output):(\w+)$")


def classic_command(model: str, argv: list[str], inputs: dict, outputs: dict) -> Any:
    def bind(word: str) -> str:
        m = BINDING.match(word)
        if not m:
            return word
        if model == "substituted":
            return (inputs if m.group(1) == "input" else outputs)[m.group(2)]
        return "$AZUREML_DATAREFERENCE_" + m.group(2)

    words = [bind(w) for w in argv]
    if model in ("sh", "bash"):
        return [f"/bin/{model}", "-c", " ".join(words)]
    return words


def classic_env(inputs: dict, outputs: dict) -> dict[str, str]:
    return {f"AZUREML_DATAREFERENCE_{k}": v for k, v in {**inputs, **outputs}.items()}


@pytest.mark.parametrize("step_type", ["command", "estimator", "python_script"])
@pytest.mark.parametrize("model", ["kept", "substituted", "sh", "bash"])
def test_classic_nodes_run_r_under_every_runtime_model(offline, tmp_path, step_type, model):
    src = make_source(tmp_path)
    for fail in (False, True):
        root = tmp_path / ("fail" if fail else "ok")
        root.mkdir()
        plan, built = classic_build(offline, spec(src, fail=fail, step_type=step_type), root)
        service = Service(root, plan.pipeline)
        service.run_all(
            lambda name: node(built, name)._module_builder._content_path,  # noqa: B023 - called in this iteration
            lambda name, i, o: classic_command(model, classic_argv(node(built, name)), i, o),  # noqa: B023
            classic_env,
        )
        (check_failure if fail else check_success)(service)


def classic_build(offline: Any, raw: dict, root: Path) -> tuple[Any, Any]:
    plan = classic.plan_pipeline(validate(raw), str(root / "run"))
    built = classic.build_pipeline(offline.workspace, plan, datastore=offline.datastore, input_paths={})
    return plan, built


# -- v2 -------------------------------------------------------------------------------------------


PLACEHOLDER = re.compile(r"\$\{\{(inputs|outputs)\.(\w+)\}\}")


def v2_command(command: str, inputs: dict, outputs: dict) -> list[str]:
    text = PLACEHOLDER.sub(lambda m: (inputs if m.group(1) == "inputs" else outputs)[m.group(2)], command)
    return ["/bin/bash", "-c", text]


def v2_env(inputs: dict, outputs: dict) -> dict[str, str]:
    env = {f"AZURE_ML_INPUT_{k}": v for k, v in inputs.items()}
    env.update({f"AZURE_ML_OUTPUT_{k}": v for k, v in outputs.items()})
    return env


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "fail"])
def test_v2_submitted_jobs_run_r_after_substitution_and_bash(tmp_path, fail):
    src = make_source(tmp_path)
    pipeline = validate(spec(src, fail=fail))
    plan = v2.stage(pipeline, snapshots_dir=str(tmp_path / "snap"), environments_dir=str(tmp_path / "envs"),
                    experiment_name="emulated")
    job = v2.to_azure_job(plan)
    assert job._validate().passed
    service = Service(tmp_path, pipeline)
    service.run_all(lambda name: job.jobs[name].component.code,
                    lambda name, i, o: v2_command(job.jobs[name].component.command, i, o), v2_env)
    (check_failure if fail else check_success)(service)


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "fail"])
def test_v2_exported_yaml_runs_r_after_substitution_and_bash(tmp_path, fail):
    import yaml

    src = make_source(tmp_path)
    pipeline = validate(spec(src, fail=fail))
    (tmp_path / "export").mkdir()
    result = export_pipeline(pipeline, str(tmp_path / "export" / "emulated.yml"))
    with open(result.path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    base = Path(result.path).parent

    def body(name: str) -> dict:
        job = doc["jobs"][name]
        return job.get("component", job)

    service = Service(tmp_path, pipeline)
    service.run_all(lambda name: str(base / body(name)["code"]),
                    lambda name, i, o: v2_command(body(name)["command"], i, o), v2_env)
    (check_failure if fail else check_success)(service)


def test_the_old_shell_command_form_would_have_passed_without_running_r(tmp_path):
    """The issue's reproduction, kept as a guard: `sh -c exec python ...` joined runs nothing and exits 0."""
    script = tmp_path / "hello.R"
    script.write_text('cat("R ran\\n")\n')
    joined = " ".join(["sh", "-c", "exec python bootstrapper.py -- hello.R"])
    done = subprocess.run(["/bin/sh", "-c", joined], cwd=tmp_path, capture_output=True, timeout=30)
    assert done.returncode == 0 and b"R ran" not in done.stdout
    # amlr's command words survive the same treatment: nothing in them is shell text.
    from amlr import stepcontract

    words = stepcontract.command("hello", ["data"], ["model"], lambda kind, name: f"${{{{{kind}s.{name}}}}}")
    stepcontract.check_shell_safe(words)
    assert [w for w in words if isinstance(w, str)] == " ".join(words).split(" ")


def test_contract_resolver_in_the_bootstrapper_matches_the_package(tmp_path):
    """The bootstrapper carries its own copy of the placeholder grammar; both must agree."""
    from amlr import bootstrapper, stepcontract

    paths = {"inputs": {"data": "/mnt/in data"}, "outputs": {"model": "/mnt/out", "outputs": "/w/outputs"}}
    for text in ["${{inputs.data}}/x.csv", "--m=${{ outputs.model }}", "${{outputs.outputs}}", "plain $HOME"]:
        assert bootstrapper.resolve_placeholders(text, paths["inputs"], paths["outputs"]) == \
            stepcontract.resolve_placeholders(text, paths)
    assert json.loads(stepcontract.to_bytes(stepcontract.document(
        step="s", script="s.R", args=[], env={}, inputs=[], outputs=[])))["format"] == bootstrapper.CONTRACT_FORMAT


# -- metrics: a v2 job's snapshot forwards log_metric() values to MLflow --------------------------

LOG_METRICS = """\
f <- Sys.getenv("AMLR_METRICS_FILE")
cat('{"name":"rmse","value":0.25}', '{"name":"model","value":"glm"}', '{"name":"rmse","value":0.125}',
    file = f, sep = "\\n", append = TRUE)
cat("\\n", file = f, append = TRUE)
cat("R logged metrics\\n")
"""


class MlflowLoopback:
    """MLflow's REST API on 127.0.0.1 (random port): the calls the MLflow client makes for one run."""

    def __init__(self, run_id: str) -> None:
        import http.server
        import threading

        self.run_id = run_id
        self.calls: list[tuple[str, str, dict]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer.calls.append(("GET", self.path.split("?")[0], {}))
                self._reply({"run": {"info": outer.info(), "data": {}}} if "/runs/get" in self.path else {})

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"{}")
                outer.calls.append(("POST", self.path.split("?")[0], body))
                self._reply({"run_info": outer.info()} if self.path.endswith("/runs/update") else {})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def info(self) -> dict:
        return {"run_id": self.run_id, "run_uuid": self.run_id, "experiment_id": "1", "status": "RUNNING",
                "start_time": 0, "lifecycle_stage": "active", "artifact_uri": "file:///nonexistent"}

    def posted(self, endpoint: str) -> list[dict]:
        return [body for verb, path, body in self.calls if verb == "POST" and path.endswith(endpoint)]

    def __enter__(self) -> "MlflowLoopback":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_v2_job_forwards_metrics_to_mlflow_from_its_snapshot_alone(tmp_path):
    """Only the job's code folder is copied (as Azure ML does): the bootstrapper's companion
    stepmetrics.py must be in it, and the values must reach the tracking server R's job logs to."""
    pytest.importorskip("mlflow")
    src = tmp_path / "src"
    src.mkdir()
    (src / "fit.R").write_text(LOG_METRICS)
    pipeline = validate({"name": "metrics", "compute": "cpu-cluster", "environment": image_env(),
                         "steps": [{"name": "fit", "script": "fit.R", "source_dir": str(src)}]})
    plan = v2.stage(pipeline, snapshots_dir=str(tmp_path / "snap"), environments_dir=str(tmp_path / "envs"),
                    experiment_name="metrics")
    job = v2.to_azure_job(plan)
    service = Service(tmp_path, pipeline)
    python = tmp_path / "bin" / "python"  # the image's python has mlflow: this venv's, not a bare symlink
    python.unlink()
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    with MlflowLoopback("run-fit-1") as server:
        service.run_all(lambda name: job.jobs[name].component.code,
                        lambda name, i, o: v2_command(job.jobs[name].component.command, i, o),
                        lambda i, o: {**v2_env(i, o), "MLFLOW_TRACKING_URI": server.url,
                                      "MLFLOW_RUN_ID": "run-fit-1"})
    done = service.results["fit"]
    assert done.returncode == 0, done.stderr.decode()
    assert b"R logged metrics" in done.stdout
    assert "metrics are not forwarded" not in done.stderr.decode()
    got = [(m["run_id"], m["key"], m["value"], int(m.get("step", 0))) for m in server.posted("/runs/log-metric")]
    assert got == [("run-fit-1", "rmse", 0.25, 0), ("run-fit-1", "rmse", 0.125, 1)], (server.calls, done.stderr)
    tags = [(t["key"], t["value"]) for t in server.posted("/runs/set-tag")]
    assert ("model", "glm") in tags, server.calls
