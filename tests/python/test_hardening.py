"""Faults survived (issue 12): signals, orphans, secrets, key files, a lost registry.

Real Rscript processes, a real SQLite registry, real signals. Waiting loops
have generous caps so a slow machine does not fail them; nothing asserts a
duration.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge_calls import call
from amlr import api, bootstrapper, procs, snapshot, stepmetrics
from amlr.errors import RegistryDamaged
from amlr.registry import Registry

RSCRIPT = shutil.which("Rscript")
needs_r = pytest.mark.skipif(RSCRIPT is None, reason="Rscript is not installed")
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics (/proc, prctl)")
BOOTSTRAPPER = Path(bootstrapper.__file__)


def until(predicate, cap: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {cap}s")


def wait_run(home: Path, run_id: str) -> dict:
    return until(lambda: (lambda r: r if r["status"] in ("Completed", "Failed", "Canceled") else None)(
        call(home, "status", run=run_id)), what=f"run {run_id} ending")


# -- the bootstrapper and signals ------------------------------------------------------------


def start_bootstrapper(tmp_path: Path, code: str = "Sys.sleep(120)") -> tuple[subprocess.Popen, Path]:
    pid_file = tmp_path / "r.pid"
    (tmp_path / "s.R").write_text(f'writeLines(as.character(Sys.getpid()), "{pid_file}")\n{code}\n')
    proc = subprocess.Popen([sys.executable, str(BOOTSTRAPPER), "s.R"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="R starting")
    return proc, pid_file


@needs_r
@linux
@pytest.mark.parametrize("name", ["SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM"])
def test_every_terminating_signal_is_forwarded(name: str, tmp_path: Path) -> None:
    signum = int(getattr(signal, name))
    proc, pid_file = start_bootstrapper(tmp_path)
    r_pid = int(pid_file.read_text())
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert err.decode().rstrip().splitlines()[-1] == f"Pipeline step execution was terminated by signal {signum}"
    until(lambda: not procs.pid_alive(r_pid), what="R ending")


@needs_r
@linux
def test_sigint_is_130(tmp_path: Path) -> None:
    proc, _ = start_bootstrapper(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # R answers SIGINT with exit status 1, like stop(); the step was interrupted, and says so.
    assert proc.returncode == 130
    assert err.decode().rstrip().endswith("terminated by signal 2")


def test_signal_before_r_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A stop request that arrives before R exists: R is never started, 128+N."""
    (tmp_path / "s.R").write_text("1\n")
    fake = tmp_path / "Rscript"
    fake.write_text("#!/bin/sh\necho STARTED > started\n")
    fake.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMLR_RSCRIPT", str(fake))
    real_flush = bootstrapper._flush_std
    sent: list = []

    def flush_and_get_signalled() -> None:
        real_flush()
        if not sent:  # the first flush is inside run(), after the handlers are installed
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)  # recorded, not fatal

    monkeypatch.setattr(bootstrapper, "_flush_std", flush_and_get_signalled)
    code = bootstrapper.main(["s.R"])
    assert code == 128 + signal.SIGTERM
    assert not (tmp_path / "started").exists()
    assert capsys.readouterr().err.rstrip().endswith("terminated by signal 15")


@needs_r
@linux
def test_r_dies_with_a_killed_bootstrapper(tmp_path: Path) -> None:
    proc, pid_file = start_bootstrapper(tmp_path)
    r_pid = int(pid_file.read_text())
    proc.kill()
    proc.wait(timeout=60)
    until(lambda: not procs.pid_alive(r_pid), what="R ending after its bootstrapper was killed")


# -- the local runner --------------------------------------------------------------------------




def spec(src: Path, name: str = "s", **step) -> dict:
    base = {"name": name, "script": f"{name}.R", "source_dir": str(src), "args": [], "inputs": {}, "outputs": []}
    base.update(step)
    return {"name": "p", "steps": [base]}


@needs_r
@linux
def test_setsid_escapee_is_reaped_and_reported(home: Path, src: Path) -> None:
    token = f"sleep 300.{os.getpid()}{time.time_ns() % 100000}"  # a command line no other process has
    (src / "s.R").write_text(f"system(\"setsid sh -c '{token}; echo done' >/dev/null 2>&1 &\")\n"
                             "Sys.sleep(0.5)\ncat('done\\n')\n")
    run = call(home, "submit", spec=spec(src))
    run = wait_run(home, run["id"])
    assert run["status"] == "Completed"
    log = "\n".join(call(home, "logs", run=run["id"])["s"])
    assert "amlr ended them" in log and "sleep" in log
    left = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True).stdout.split()
    assert left == []


@needs_r
@linux
def test_runner_sigterm_is_reported_truthfully(home: Path, src: Path) -> None:
    (src / "s.R").write_text("Sys.sleep(120)\n")
    run = call(home, "submit", spec=spec(src))
    until(lambda: call(home, "steps", run=run["id"])[0]["status"] == "Running", what="step running")
    runner = Registry(str(home)).get_run(run["id"])["runner_pid"]
    os.kill(runner, signal.SIGTERM)
    run = wait_run(home, run["id"])
    assert run["status"] == "Canceled"
    assert "SIGTERM from outside" in run["error"] and "run_cancel" not in run["error"].replace("(not run_cancel())", "")


@needs_r
@linux
def test_killed_bootstrapper_is_137(home: Path, src: Path) -> None:
    (src / "s.R").write_text("Sys.sleep(120)\n")
    run = call(home, "submit", spec=spec(src))
    step = until(lambda: (lambda s: s if s["status"] == "Running" and s["pid"] else None)(
        call(home, "steps", run=run["id"])[0]), what="step running")
    os.kill(step["pid"], signal.SIGKILL)
    wait_run(home, run["id"])
    step = call(home, "steps", run=run["id"])[0]
    assert step["status"] == "Failed" and step["exit_code"] == 137


@needs_r
def test_secrets_are_not_handed_to_steps(home: Path, src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "sp-secret-4711")
    monkeypatch.setenv("AMLR_REGISTRY_PASSWORD", "default-pw-4711")
    monkeypatch.setenv("MY_ACR_PW", "acr-pw-4711")
    monkeypatch.setenv("HARMLESS", "visible-4711")
    (src / "s.R").write_text("for (v in c('AZURE_CLIENT_SECRET','AMLR_REGISTRY_PASSWORD','MY_ACR_PW','HARMLESS'))"
                             " cat(v, '=', Sys.getenv(v, 'unset'), '\\n')\n")
    env = {"image": "myacr.azurecr.io/r:1",
           "registry": {"address": "myacr.azurecr.io", "username": "u", "password_env": "MY_ACR_PW"}}
    run = call(home, "submit", spec=spec(src, environment=env))
    run = wait_run(home, run["id"])
    log = "\n".join(call(home, "logs", run=run["id"])["s"])
    # The step ran and printed its environment; a local step sees only what an Azure ML job would see
    # (PATH, HOME, locale, ...) plus r_step(env =), so even a harmless session variable stays out.
    assert "AZURE_CLIENT_SECRET = unset" in log and "HARMLESS = unset" in log
    for secret in ("sp-secret-4711", "default-pw-4711", "acr-pw-4711"):
        assert secret not in log


@needs_r
def test_failed_submit_leaves_nothing(home: Path, src: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after the run was recorded (the runner cannot start) removes row and folder."""
    (src / "s.R").write_text("1\n")
    monkeypatch.setenv("AMLR_HOME", str(home))

    def broken(*a, **k):
        raise OSError("cannot fork")

    monkeypatch.setattr(procs, "fork_detached", broken)
    monkeypatch.setattr(procs, "spawn_detached", broken)
    response = api.handle({"method": "submit", "params": {"spec": spec(src), "home": str(home)}})
    assert "error" in response
    assert os.listdir(home / "runs") == []
    assert Registry(str(home)).list_runs() == []


# -- snapshots -------------------------------------------------------------------------------

KEYS = {
    "id_rsa": "k", "server.pem": "k", "tls.key": "k", "cert.p12": "k", "secrets.json": "{}",
    "credentials.json": "{}", ".netrc": "machine x", ".pgpass": "x", ".git-credentials": "x",
    ".aws/credentials": "x", ".azure/config": "x", ".kube/config": "x", ".docker/config.json": "{}",
    "sub/.ssh/id_ed25519": "k", "deep/.aws/config": "x",
}
KEEP = {"main.R": "1", "data/train.csv": "a,b", "R/helpers.R": "f <- 1", "keys.R": "1", "docs/pem.txt": "x"}


def make_tree(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_key_files_are_left_out(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {**KEYS, **KEEP})
    said: list = []
    files = snapshot.list_files(str(src), warn=said.append)
    assert files == sorted(KEEP)
    assert len(said) == 1
    for name in ("id_rsa", "server.pem", "secrets.json", ".netrc", ".aws/", "sub/.ssh/", ".docker/config.json"):
        assert name in said[0]
    assert "!<name>" in said[0] and ".amlignore" in said[0]
    # And the same for what export_pipeline() writes: one snapshot builder for every backend.
    boot = make_tree(tmp_path / "b", {"b.py": ""}) / "b.py"
    snap = snapshot.build_snapshot(str(src), str(tmp_path / "dest"), bootstrapper_path=str(boot), warn=said.append)
    assert not (tmp_path / "dest" / "id_rsa").exists() and snap.files == len(KEEP)


def test_amlignore_brings_a_key_back(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {**KEYS, **KEEP, ".amlignore": "!server.pem\n"})
    said: list = []
    files = snapshot.list_files(str(src), warn=said.append)
    assert "server.pem" in files and "id_rsa" not in files
    assert "server.pem" not in said[0] and "id_rsa" in said[0]
    # Shipping one on purpose is said too (docs/design.md: "with a warning either way").
    assert len(said) == 2 and "Shipping" in said[1] and "server.pem" in said[1] and "id_rsa" not in said[1]


# -- the registry as an index of the run folders ----------------------------------------------


@needs_r
def test_rebuild_restores_runs(home: Path, src: Path) -> None:
    (src / "s.R").write_text("amlr_metric <- function(n, v) cat(sprintf('{\"name\":\"%s\",\"value\":%s}\\n', n, v),"
                             " file = Sys.getenv('AMLR_METRICS_FILE'), append = TRUE)\n"
                             "amlr_metric('rmse', 0.5)\ncat('hello\\n')\n")
    first = wait_run(home, call(home, "submit", spec=spec(src))["id"])
    (src / "s.R").write_text("stop('boom')\n")
    second = wait_run(home, call(home, "submit", spec=spec(src))["id"])
    assert (first["status"], second["status"]) == ("Completed", "Failed")
    # An older run folder without run.json (before amlr wrote one): read from spec.json and the logs.
    os.remove(home / "runs" / second["id"] / "run.json")
    db = home / "registry.sqlite"
    for suffix in ("", "-wal", "-shm"):
        if Path(str(db) + suffix).exists():
            os.remove(str(db) + suffix)
    with pytest.raises(RegistryDamaged, match="run_registry_rebuild"):
        Registry(str(home)).list_runs()
    result = call(home, "registry_rebuild")
    assert sorted(result["added"]) == sorted([first["id"], second["id"]])
    runs = {r["id"]: r for r in call(home, "list")}
    assert runs[first["id"]]["status"] == "Completed" and runs[second["id"]]["status"] == "Failed"
    assert runs[first["id"]]["experiment"] == "p"
    assert call(home, "metrics", run=first["id"])[0]["value_num"] == 0.5
    assert "hello" in call(home, "logs", run=first["id"])["s"]
    assert call(home, "steps", run=second["id"])[0]["exit_code"] == 1
    # A second rebuild adds nothing and keeps what is there.
    assert call(home, "registry_rebuild")["added"] == []


@needs_r
def test_list_warns_about_unrecorded_folders(home: Path, src: Path) -> None:
    (src / "s.R").write_text("1\n")
    run = wait_run(home, call(home, "submit", spec=spec(src))["id"])
    assert call(home, "list", with_warnings=True)["warnings"] == []
    copy = home / "runs" / "amlr_19990101_000000_abcdef"
    shutil.copytree(home / "runs" / run["id"], copy)
    old = time.time() - 3600
    os.utime(copy, (old, old))
    warnings = call(home, "list", with_warnings=True)["warnings"]
    assert len(warnings) == 1 and "run_registry_rebuild()" in warnings[0] and "amlr_19990101" in warnings[0]


# -- metrics ---------------------------------------------------------------------------------


def test_unreachable_mlflow_is_bounded_and_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    for name in stepmetrics.MLFLOW_BOUNDS:
        monkeypatch.delenv(name, raising=False)
    metrics = tmp_path / "m.jsonl"
    metrics.write_text(json.dumps({"name": "rmse", "value": 0.5}) + "\n")
    said: list = []
    sink = stepmetrics.MLflowSink()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == stepmetrics.MLFLOW_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    forwarder = stepmetrics.MetricsForwarder(str(metrics), sink, warn=said.append)
    forwarder.poll(final=True)
    assert len(said) == 1
    assert f"127.0.0.1:{port}" in said[0] and "did not take the metric" in said[0]
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" in said[0]


@needs_r
def test_rebuild_reads_around_a_damaged_run_file_and_a_deleted_log_is_said(home: Path, src: Path) -> None:
    (src / "s.R").write_text("cat('hello\\n')\n")
    run = wait_run(home, call(home, "submit", spec=spec(src))["id"])
    (home / "runs" / run["id"] / "run.json").write_text("{garbage")
    os.remove(home / "registry.sqlite")
    result = call(home, "registry_rebuild")
    assert result["added"] == [run["id"]] and result["skipped"] == []
    assert call(home, "status", run=run["id"])["status"] == "Completed"  # from the log's final line
    os.remove(home / "runs" / run["id"] / "logs" / "s.log")
    assert "is missing" in call(home, "logs", run=run["id"])["s"][0]
