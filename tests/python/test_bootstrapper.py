"""Tests of inst/python/amlr/bootstrapper.py.

The bootstrapper runs as a real subprocess against real R scripts; the metrics
forwarder is exercised in-process with a fake sink.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAPPER = ROOT / "inst" / "python" / "amlr" / "bootstrapper.py"
HAS_R = shutil.which("Rscript") is not None
needs_r = pytest.mark.skipif(not HAS_R, reason="Rscript is not installed on this machine")
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


# The same file the subprocess tests run (conftest puts inst/python first on sys.path), imported
# under its package name so that in-process tests and mutation testing see one module.
import amlr.bootstrapper as bs  # noqa: E402
import amlr.stepmetrics as sm  # noqa: E402

assert Path(bs.__file__).resolve() == BOOTSTRAPPER.resolve()


def run_bs(args, cwd, env=None, **kw):
    full_env = dict(os.environ)
    full_env.pop("AMLR_METRICS_FILE", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(BOOTSTRAPPER), *args],
        cwd=str(cwd), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=30, **kw,
    )


def last_line(data: bytes) -> str:
    return data.decode("utf-8", "replace").rstrip("\n").split("\n")[-1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Running R
# --------------------------------------------------------------------------

@needs_r
def test_seed_form(tmp_path):
    write(tmp_path / "hello.r", 'cat("hello from R\\n")\n')
    res = run_bs(["hello.r"], tmp_path)
    assert res.returncode == 0
    assert res.stdout.decode() == "hello from R\n"
    assert last_line(res.stderr) == "Pipeline step execution returned 0"
    assert b"Traceback" not in res.stderr


@needs_r
def test_exit_code_is_r_exit_code(tmp_path):
    write(tmp_path / "fail.R", "quit(status = 3)\n")
    res = run_bs(["fail.R"], tmp_path)
    assert res.returncode == 3
    assert last_line(res.stderr) == "Pipeline step execution returned 3"


@needs_r
def test_r_error_exits_1_and_final_line_is_last(tmp_path):
    write(tmp_path / "err.R", 'stop("boom")\n')
    res = run_bs(["err.R"], tmp_path)
    assert res.returncode == 1
    err = res.stderr.decode()
    assert "boom" in err
    assert last_line(res.stderr) == "Pipeline step execution returned 1"


@needs_r
def test_stdout_stderr_order_on_one_pipe(tmp_path):
    write(tmp_path / "il.R", 'for (i in 1:5) { cat("out", i, "\\n", sep = ""); message("err", i) }\n')
    res = subprocess.run(
        [sys.executable, str(BOOTSTRAPPER), "il.R"], cwd=str(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
    )
    lines = res.stdout.decode().splitlines()
    expected = [x for i in range(1, 6) for x in (f"out{i}", f"err{i}")]
    assert lines == expected + ["Pipeline step execution returned 0"]


@needs_r
def test_arguments_are_passed_verbatim(tmp_path):
    write(
        tmp_path / "args.R",
        'a <- commandArgs(trailingOnly = TRUE)\n'
        'writeLines(paste0("[", length(a), "]"), "n.txt")\n'
        'con <- file("args.txt", open = "wb"); writeBin(charToRaw(paste(a, collapse = "\\x01")), con); close(con)\n',
    )
    args = ["two words", 'quo"te', "it's", "naïve ✓", "", "--foo", "--input", "x=y", "-", "--"]
    res = run_bs(["args.R", *args], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "n.txt").read_text().strip() == f"[{len(args)}]"
    got = (tmp_path / "args.txt").read_bytes().decode("utf-8").split("\x01")
    assert got == args


@needs_r
def test_double_dash_separates_script_starting_with_dash(tmp_path):
    write(tmp_path / "-odd.R", 'cat(commandArgs(trailingOnly = TRUE), sep = "|")\n')
    res = run_bs(["--", "-odd.R", "--flag", "a b"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode() == "--flag|a b"


@needs_r
def test_inputs_outputs_and_step_env(tmp_path):
    write(
        tmp_path / "env.R",
        'v <- c("AMLR_INPUT_raw", "AMLR_INPUT_Other_2", "AMLR_OUTPUT_model", "AMLR_IN_STEP", "AMLR_METRICS_FILE")\n'
        'for (n in v) cat(n, "=", Sys.getenv(n), "\\n", sep = "")\n'
        'cat("dir=", dir.exists(Sys.getenv("AMLR_OUTPUT_model")), "\\n", sep = "")\n',
    )
    out_dir = tmp_path / "deep" / "er" / "model"
    res = run_bs(
        ["--input", "raw=/data/in put", "--input=Other_2=rel/path", "--output", f"model={out_dir}", "env.R"],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    got = dict(line.split("=", 1) for line in res.stdout.decode().splitlines())
    assert got["AMLR_INPUT_raw"] == "/data/in put"
    assert got["AMLR_INPUT_Other_2"] == "rel/path"
    assert got["AMLR_OUTPUT_model"] == str(out_dir)
    assert got["AMLR_IN_STEP"] == "1"
    assert got["AMLR_METRICS_FILE"]  # a private temp file when the caller gives none
    assert got["dir"] == "TRUE"
    assert out_dir.is_dir()
    assert not os.path.exists(os.path.dirname(got["AMLR_METRICS_FILE"]))  # cleaned up


@needs_r
def test_metrics_file_from_caller_is_kept(tmp_path):
    metrics = tmp_path / "m" / "metrics.jsonl"
    write(
        tmp_path / "m.R",
        'f <- Sys.getenv("AMLR_METRICS_FILE")\n'
        'cat(\'{"name": "acc", "value": 0.9, "time": "2024-01-01T00:00:00Z"}\\n\', file = f, append = TRUE)\n',
    )
    res = run_bs(["--metrics-sink", "none", "m.R"], tmp_path, env={"AMLR_METRICS_FILE": str(metrics)})
    assert res.returncode == 0, res.stderr
    assert json.loads(metrics.read_text())["value"] == 0.9


def _start_sleeping_step(tmp_path):
    write(
        tmp_path / "sleep.R",
        'writeLines(as.character(Sys.getpid()), "pid.tmp"); invisible(file.rename("pid.tmp", "pid"))\n'
        "Sys.sleep(30)\n",
    )
    proc = subprocess.Popen(
        [sys.executable, str(BOOTSTRAPPER), "sleep.R"], cwd=str(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 15
    while not pid_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"R did not start: {proc.communicate()}")
        time.sleep(0.05)
    return proc, int(pid_file.read_text().strip())


def _signal_step(proc, signum):
    try:
        proc.send_signal(signum)  # the bootstrapper only, not its group
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return err


@needs_r
@posix_only
def test_sigterm_is_forwarded_to_r(tmp_path):
    proc, r_pid = _start_sleeping_step(tmp_path)
    err = _signal_step(proc, signal.SIGTERM)
    assert proc.returncode == 143
    assert last_line(err) == "Pipeline step execution was terminated by signal 15"
    with pytest.raises(ProcessLookupError):
        os.kill(r_pid, 0)


@needs_r
@posix_only
def test_sigint_is_forwarded_to_r(tmp_path):
    """Non-interactive R turns an interrupt into an error: it halts with status 1."""
    proc, r_pid = _start_sleeping_step(tmp_path)
    err = _signal_step(proc, signal.SIGINT)
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    # R exits 1 on an interrupt, but the step was stopped by the signal: reported as 128 + 2.
    assert proc.returncode == 130
    assert last_line(err) == "Pipeline step execution was terminated by signal 2"
    with pytest.raises(ProcessLookupError):
        os.kill(r_pid, 0)


@needs_r
@posix_only
def test_r_killed_by_signal(tmp_path):
    write(tmp_path / "kill.R", "tools::pskill(Sys.getpid(), tools::SIGKILL)\nSys.sleep(5)\n")
    res = run_bs(["kill.R"], tmp_path)
    assert res.returncode == 137
    assert last_line(res.stderr) == "Pipeline step execution was terminated by signal 9"


def _ctrl_c_once(target):
    """A stand-in for ``target`` that first sends this process a real SIGINT (Ctrl-C), once."""
    fired = []

    def wrapper(*args, **kwargs):
        if not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return target(*args, **kwargs)

    return wrapper


@posix_only
@pytest.mark.parametrize("moment", ["before the handlers", "after the handlers"])
def test_ctrl_c_before_r_starts_exits_130_and_r_never_runs(tmp_path, monkeypatch, capfd, moment):
    """Ctrl-C while the bootstrapper prepares (finding Rscript; or with its handlers installed, just
    before starting R) stops the step as the shell would report it: 130, and R is not started."""
    script = write(tmp_path / "never.R", 'writeLines("ran", "ran.txt")\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMLR_METRICS_FILE", raising=False)
    if moment == "before the handlers":
        monkeypatch.setattr(bs, "find_rscript", _ctrl_c_once(bs.find_rscript))
    else:
        monkeypatch.setattr(bs, "_flush_std", _ctrl_c_once(bs._flush_std))
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = bs.main(["--metrics-sink", "none", script.name])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capfd.readouterr().err
    assert code == 130
    assert last_line(err.encode()) == "Pipeline step execution was terminated by signal 2"
    assert not (tmp_path / "ran.txt").exists()


# --------------------------------------------------------------------------
# Failing before R starts
# --------------------------------------------------------------------------

def test_missing_rscript_env(tmp_path):
    write(tmp_path / "hello.r", 'cat("hi\\n")\n')
    res = run_bs(["hello.r"], tmp_path, env={"AMLR_RSCRIPT": "/nonexistent/Rscript"})
    assert res.returncode == 127
    lines = res.stderr.decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("amlr bootstrapper: ") and "AMLR_RSCRIPT" in lines[0]
    assert lines[1] == "Pipeline step execution returned 127"
    assert b"Traceback" not in res.stderr
    assert res.stdout == b""


def test_missing_rscript_on_path(tmp_path):
    write(tmp_path / "hello.r", 'cat("hi\\n")\n')
    env = {"PATH": str(tmp_path / "empty-bin"), "AMLR_RSCRIPT": ""}
    res = run_bs(["hello.r"], tmp_path, env=env)
    assert res.returncode == 127
    lines = res.stderr.decode().splitlines()
    assert lines == [
        "amlr bootstrapper: Rscript not found on PATH; install R or set AMLR_RSCRIPT",
        "Pipeline step execution returned 127",
    ]


def test_rscript_not_executable(tmp_path):
    write(tmp_path / "hello.r", 'cat("hi\\n")\n')
    fake = write(tmp_path / "Rscript", "not a program\n")
    fake.chmod(0o644)
    res = run_bs(["hello.r"], tmp_path, env={"AMLR_RSCRIPT": str(fake)})
    assert res.returncode == 126
    assert b"Traceback" not in res.stderr
    assert last_line(res.stderr) == "Pipeline step execution returned 126"


def test_missing_script(tmp_path):
    res = run_bs(["nope.R"], tmp_path)
    assert res.returncode == 2
    lines = res.stderr.decode().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("amlr bootstrapper: R script not found: nope.R")
    assert lines[1] == "Pipeline step execution returned 2"


@pytest.mark.parametrize(
    "args",
    [
        ["--input", "1bad=/x", "s.R"],
        ["--output", "has-dash=/x", "s.R"],
        ["--input", "=/x", "s.R"],
        ["--input", "name=", "s.R"],
        ["--input", "noequals", "s.R"],
        ["--input"],
        ["--metrics-sink", "bogus", "s.R"],
        ["--unknown", "s.R"],
        ["--input", "a=1", "--input", "a=2", "s.R"],
        [],
    ],
)
def test_bad_command_line(tmp_path, args):
    write(tmp_path / "s.R", "quit(status = 5)\n")
    res = run_bs(args, tmp_path)
    assert res.returncode == 2
    lines = res.stderr.decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("amlr bootstrapper: ")
    assert lines[1] == "Pipeline step execution returned 2"
    assert not (tmp_path / "x").exists()


def test_a_relative_contract_is_found_from_the_snapshot_root_too(tmp_path):
    """Azure ML may start the command elsewhere than the code folder: the contract path is also
    tried from the folder holding ``_amlr/``."""
    snap = tmp_path / "snap"
    (snap / "_amlr" / "steps").mkdir(parents=True)
    shutil.copy2(BOOTSTRAPPER, snap / "_amlr" / "bootstrapper.py")
    write(snap / "s.R", 'cat("ran from", basename(getwd()), "\\n")\n')
    (snap / "_amlr" / "steps" / "s.json").write_text(json.dumps(
        {"format": "amlr-step/1", "script": str(snap / "s.R"), "args": [], "inputs": [], "outputs": [],
         "metrics_sink": "none"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run([sys.executable, str(snap / "_amlr" / "bootstrapper.py"), "--step", "_amlr/steps/s.json"],
                         cwd=elsewhere, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode() == "ran from elsewhere \n"
    res = run_bs(["--step", "_amlr/steps/missing.json"], elsewhere)
    assert res.returncode == 2
    assert f"step contract not found: _amlr/steps/missing.json (working directory {elsewhere})" in res.stderr.decode()


def test_help(tmp_path):
    res = run_bs(["--help"], tmp_path)
    assert res.returncode == 0
    assert res.stdout.decode().startswith("usage: python bootstrapper.py")
    assert res.stderr == b""


# --------------------------------------------------------------------------
# Pieces, in-process
# --------------------------------------------------------------------------

def test_parse_args_keeps_r_arguments():
    opts = bs.parse_args(["--input", "a=/p", "--output=out=o", "--metrics-sink=mlflow", "s.R", "--input", "b=c", "--"])
    assert opts.script == "s.R"
    assert opts.args == ["--input", "b=c", "--"]
    assert opts.inputs == {"a": "/p"}
    assert opts.outputs == {"out": "o"}
    assert opts.metrics_sink == "mlflow"
    assert bs.parse_args(["--", "--x.R", "-y"]).script == "--x.R"
    assert bs.parse_args(["s.R"]).metrics_sink == "auto"


@pytest.mark.parametrize("step", [["--step", "c.json"], ["--step=c.json"]], ids=["two words", "equals"])
def test_step_mode_takes_two_word_ports_whichever_way_step_is_given(step):
    opts = bs.parse_args(["--input", "data", "/in", *step, "--output", "model", "", "--param", "lr", "0.1"])
    assert (opts.step, opts.script, opts.args) == ("c.json", "", [])
    assert (opts.inputs, opts.outputs, opts.params) == ({"data": "/in"}, {"model": ""}, {"lr": "0.1"})
    with pytest.raises(bs.BootstrapError, match="--input expects NAME=PATH"):
        bs.parse_args(["--input", "data", "/in", "s.R"])  # without --step, a port is one word


@pytest.mark.parametrize("word", ["-h", "--help"])
def test_help_wins_over_everything_before_it(word):
    assert bs.parse_args(["--input", "a=/p", word, "--bogus"]) == bs.Options("", [], {}, {}, help=True)
    assert bs.parse_args(["s.R", word]).help is False  # after the script it is R's


def test_build_env():
    env = bs.build_env({"PATH": "/bin", "AMLR_IN_STEP": "0"}, {"Raw": "/i"}, {"out": "/o"}, "/m.jsonl")
    assert env == {
        "PATH": "/bin", "AMLR_INPUT_Raw": "/i", "AMLR_OUTPUT_out": "/o",
        "AMLR_IN_STEP": "1", "AMLR_METRICS_FILE": "/m.jsonl",
    }


def test_final_line():
    assert bs.final_line(0) == ("Pipeline step execution returned 0", 0)
    assert bs.final_line(-15) == ("Pipeline step execution was terminated by signal 15", 143)


def test_resolve_sink(monkeypatch):
    assert sm.resolve_sink("none", {}) == "none"
    assert sm.resolve_sink("mlflow", {}) == "mlflow"
    assert sm.resolve_sink("auto", {}) == "none"
    monkeypatch.setattr(sm, "_module_available", lambda name: name == "mlflow")
    assert sm.resolve_sink("auto", {"AZUREML_RUN_ID": "r", "MLFLOW_TRACKING_URI": "u"}) == "mlflow"
    monkeypatch.setattr(sm, "_module_available", lambda name: True)
    assert sm.resolve_sink("auto", {"AZUREML_RUN_ID": "r", "MLFLOW_TRACKING_URI": "u"}) == "azureml"
    assert sm.resolve_sink("auto", {"AZUREML_RUN_ID": ""}) == "none"


def _line(name, value, t="2024-05-01T12:00:00Z"):
    return json.dumps({"name": name, "value": value, "time": t}) + "\n"


def test_forwarder_tails_complete_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    got, warnings = [], []
    fwd = sm.MetricsForwarder(str(path), got.append, warn=warnings.append)
    fwd.poll()  # no file yet: nothing, no warning
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(_line("loss", 1.5) + _line("loss", 1) + _line("label", "best"))
        fh.write('{"name": "loss", "val')  # R is mid-write
    fwd.poll()
    assert [(m.name, m.value, m.index) for m in got] == [("loss", 1.5, 0), ("loss", 1, 1), ("label", "best", 0)]
    assert got[0].time == "2024-05-01T12:00:00Z"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('ue": 0.5, "time": "2024-05-01T12:00:01Z"}\n')
    fwd.poll()
    assert [(m.name, m.value, m.index) for m in got][-1] == ("loss", 0.5, 2)
    assert warnings == []
    assert fwd.forwarded == 4


def test_forwarder_bad_lines_warn_once(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "not json secret-ish\n" + _line("a", 1) + '{"name": "b", "value": null}\n' + "[1]\n\n" + _line("a", 2),
        encoding="utf-8",
    )
    got, warnings = [], []
    fwd = sm.MetricsForwarder(str(path), got.append, warn=warnings.append)
    fwd.close()
    assert [(m.name, m.value, m.index) for m in got] == [("a", 1, 0), ("a", 2, 1)]
    assert len(warnings) == 1
    assert "line 1" in warnings[0] and "not valid JSON" in warnings[0]
    assert "secret-ish" not in warnings[0]
    assert fwd.skipped == 3


def test_forwarder_final_drain_takes_unterminated_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line("a", 1).rstrip("\n"), encoding="utf-8")
    got = []
    fwd = sm.MetricsForwarder(str(path), got.append, warn=lambda m: None)
    fwd.poll()
    assert got == []
    fwd.close()
    assert [m.value for m in got] == [1]


def test_forwarder_failing_sink_warns_once_and_redacts(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "s3cr3t-value")
    path = tmp_path / "metrics.jsonl"
    path.write_text(_line("a", 1) + _line("a", 2), encoding="utf-8")
    calls, warnings = [], []

    def sink(metric):
        calls.append(metric)
        raise RuntimeError("POST https://user:hunter2@host/x failed with token s3cr3t-value")

    fwd = sm.MetricsForwarder(str(path), sink, warn=warnings.append)
    fwd.close()
    assert len(calls) == 1
    assert len(warnings) == 1
    assert "RuntimeError" in warnings[0]
    assert "hunter2" not in warnings[0] and "s3cr3t-value" not in warnings[0]


def test_forwarder_thread_and_stop(tmp_path):
    path = tmp_path / "metrics.jsonl"
    got = []
    fwd = sm.MetricsForwarder(str(path), got.append, warn=lambda m: None, poll_interval=0.05)
    fwd.start()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(_line("a", 1))
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [m.value for m in got] == [1]  # forwarded while "R" still runs
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(_line("a", 2))
    assert fwd.stop(timeout=5)
    assert [m.value for m in got] == [1, 2]


def test_mlflow_sink_uses_steps_and_tags(monkeypatch):
    calls = []

    class FakeMlflow:
        @staticmethod
        def log_metric(name, value, step=None, timestamp=None):
            calls.append(("metric", name, value, step, timestamp))

        @staticmethod
        def set_tag(name, value):
            calls.append(("tag", name, value))

    monkeypatch.setitem(sys.modules, "mlflow", FakeMlflow)
    sink = sm.MLflowSink()
    sink(sm.Metric("loss", 0.5, "1970-01-01T00:00:01Z", 3))
    sink(sm.Metric("note", "ok", None, 0))
    sink(sm.Metric("loss", 1, None, 4))
    assert calls == [
        ("metric", "loss", 0.5, 3, 1000),
        ("tag", "note", "ok"),
        ("metric", "loss", 1, 4, None),
    ]


def test_azureml_sink_logs_to_run_context(monkeypatch):
    import types

    logged = []

    class FakeRun:
        @staticmethod
        def get_context():
            return FakeRun()

        def log(self, name, value):
            logged.append((name, value))

        def flush(self):
            logged.append("flushed")

    core = types.ModuleType("azureml.core")
    core.Run = FakeRun
    monkeypatch.setitem(sys.modules, "azureml", types.ModuleType("azureml"))
    monkeypatch.setitem(sys.modules, "azureml.core", core)
    sink = sm.AzureMLSink()
    sink(sm.Metric("acc", 0.75, None, 0))
    sink(sm.Metric("model", "glm", None, 0))
    sink.close()
    assert logged == [("acc", 0.75), ("model", "glm"), "flushed"]


@needs_r
def test_r_written_metrics_reach_the_sink(tmp_path):
    """R appends JSON lines with cat(append = TRUE); the forwarder reads them all."""
    metrics = tmp_path / "metrics.jsonl"
    write(
        tmp_path / "log.R",
        'f <- Sys.getenv("AMLR_METRICS_FILE")\n'
        'for (i in 1:3) cat(sprintf(\'{"name": "loss", "value": %s, "time": "%s"}\\n\', 1 / i,\n'
        '  format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC")), file = f, append = TRUE)\n'
        'cat(\'{"name": "model", "value": "glm \\\\u00e9", "time": "2024-01-01T00:00:00Z"}\\n\', file = f, append = TRUE)\n',
    )
    res = run_bs(["--metrics-sink", "none", "log.R"], tmp_path, env={"AMLR_METRICS_FILE": str(metrics)})
    assert res.returncode == 0, res.stderr
    got, warnings = [], []
    fwd = sm.MetricsForwarder(str(metrics), got.append, warn=warnings.append)
    fwd.close()
    assert warnings == []
    assert [(m.name, m.index) for m in got] == [("loss", 0), ("loss", 1), ("loss", 2), ("model", 0)]
    assert got[1].value == 0.5
    assert got[3].value == "glm \u00e9"


@needs_r
def test_sink_failure_does_not_change_exit_code(tmp_path):
    """mlflow is forced but (in a clean PYTHONPATH) may be missing: one warning, R's code kept."""
    write(
        tmp_path / "m.R",
        'cat(\'{"name": "a", "value": 1, "time": "2024-01-01T00:00:00Z"}\\n\', file = Sys.getenv("AMLR_METRICS_FILE"), append = TRUE)\n'
        "quit(status = 4)\n",
    )
    fake = tmp_path / "fakemods"
    fake.mkdir()
    write(fake / "mlflow.py", 'def log_metric(*a, **k):\n    raise RuntimeError("tracking server down")\n')
    res = run_bs(["--metrics-sink", "mlflow", "m.R"], tmp_path, env={"PYTHONPATH": str(fake)})
    assert res.returncode == 4
    lines = res.stderr.decode().splitlines()
    warnings = [x for x in lines if x.startswith("amlr bootstrapper: ")]
    assert len(warnings) == 1 and "tracking server down" in warnings[0]
    assert lines[-1] == "Pipeline step execution returned 4"
    assert b"Traceback" not in res.stderr


# --------------------------------------------------------------------------
# The same refusals in-process (what mutation testing can see): exact code and message
# --------------------------------------------------------------------------

def _main(tmp_path, monkeypatch, capfd, argv, env=None):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMLR_METRICS_FILE", raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    code = bs.main(argv)
    err = capfd.readouterr().err.rstrip("\n").split("\n")
    return code, err


@pytest.mark.parametrize("argv, code, message", [
    (["--step", "c.json", "--param", "1x", "v"], 2, "--param expects NAME VALUE"),
    (["--step", "c.json", "--param", "lr"], 2, "--param expects NAME VALUE"),
    (["--input", "a=/p", "--input", "a=/q", "a.R"], 2, "--input a is given twice"),
    (["--step", "c.json", "--output", "m", "/o", "--output", "m", "/p"], 2, "--output m is given twice"),
    (["--input", "data", "a.R"], 2, "--input expects NAME=PATH, got 'data'"),
    (["--output", "m=", "a.R"], 2, "--output m= has an empty path"),
    (["--input", "1x=/p", "a.R"], 2, "--input name '1x' is not valid: use letters, digits and _, not starting with a digit"),
    (["--metrics-sink", "kafka", "a.R"], 2, "--metrics-sink must be one of auto, none, azureml, mlflow, got 'kafka'"),
    (["missing.R"], 2, "R script not found: missing.R (working directory {cwd})"),
])
def test_refusals_in_process(tmp_path, monkeypatch, capfd, argv, code, message):
    (tmp_path / "a.R").write_text("1\n")
    got, err = _main(tmp_path, monkeypatch, capfd, argv)
    assert got == code
    assert err[-1] == f"Pipeline step execution returned {code}"
    assert any(line.endswith(message.format(cwd=tmp_path)) for line in err[:-1]), err


def test_rscript_settings_in_process(tmp_path, monkeypatch, capfd):
    (tmp_path / "a.R").write_text("1\n")
    (tmp_path / "bin").mkdir()
    cases = [
        ({"AMLR_RSCRIPT": str(tmp_path / "no" / "Rscript")}, 127,
         f"AMLR_RSCRIPT={tmp_path / 'no' / 'Rscript'} does not exist; install R or fix AMLR_RSCRIPT"),
        ({"AMLR_RSCRIPT": "NoSuchRscript", "PATH": str(tmp_path / "bin")}, 127,
         "AMLR_RSCRIPT=NoSuchRscript is not on PATH; install R or fix AMLR_RSCRIPT"),
        ({"AMLR_RSCRIPT": "", "PATH": str(tmp_path / "bin")}, 127,
         "Rscript not found on PATH; install R or set AMLR_RSCRIPT"),
    ]
    for env, code, message in cases:
        got, err = _main(tmp_path, monkeypatch, capfd, ["--metrics-sink", "none", "a.R"], env)
        assert (got, err[-1]) == (code, f"Pipeline step execution returned {code}")
        assert any(line.endswith(message) for line in err[:-1]), err
    found = tmp_path / "bin" / "MyRscript"
    found.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(found, 0o755)
    assert bs.find_rscript({"AMLR_RSCRIPT": "MyRscript", "PATH": str(tmp_path / "bin")}) == str(found)
    (tmp_path / "bin" / "Rscript").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(tmp_path / "bin" / "Rscript", 0o755)
    assert bs.find_rscript({"PATH": str(tmp_path / "bin")}) == str(tmp_path / "bin" / "Rscript")


def test_a_contract_without_a_sink_forwards_to_auto_and_names_its_bad_lists(tmp_path):
    contract = tmp_path / "c.json"
    contract.write_text(json.dumps({"format": "amlr-step/1", "script": "a.R", "args": [], "inputs": [], "outputs": []}))
    assert bs.from_contract(bs.parse_args(["--step", str(contract)]), {}).metrics_sink == "auto"
    for field in ("inputs", "outputs"):
        contract.write_text(json.dumps({"format": "amlr-step/1", "script": "a.R", field: "data"}))
        with pytest.raises(bs.BootstrapError) as err:
            bs.from_contract(bs.parse_args(["--step", str(contract)]), {})
        assert str(err.value) == f"the step contract's {field} must be a list of strings"


def test_rscript_is_looked_up_on_the_steps_path_not_ours(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    mine = tmp_path / "bin" / "MyRscript"
    mine.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(mine, 0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert bs.find_rscript({"AMLR_RSCRIPT": "MyRscript", "PATH": str(tmp_path / "bin")}) == str(mine)
    plain = tmp_path / "bin" / "Rscript"
    plain.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(plain, 0o755)
    assert bs.find_rscript({"PATH": str(tmp_path / "bin")}) == str(plain)


def test_resolving_a_step_reads_its_contract_in_its_folder_with_the_steps_variables(tmp_path):
    (tmp_path / "steps").mkdir()
    (tmp_path / "a.R").write_text("1\n")
    (tmp_path / "steps" / "a.json").write_text(json.dumps(
        {"format": "amlr-step/1", "script": "a.R", "args": ["${{inputs.d}}"], "inputs": ["d"], "outputs": [],
         "metrics_sink": "none"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "Rscript").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(bin_dir / "Rscript", 0o755)
    opts = bs.parse_args(["--step", "steps/a.json", "--input", "d", "${{inputs.d}}"])
    got, rscript = bs.resolve_step(opts, {"AZURE_ML_INPUT_d": "/mnt/d", "PATH": str(bin_dir)}, str(tmp_path))
    assert (got.script, got.args, got.inputs) == ("a.R", ["/mnt/d"], {"d": "/mnt/d"})
    assert rscript == str(bin_dir / "Rscript")


def test_an_rscript_that_cannot_be_executed_says_why(tmp_path, monkeypatch, capfd):
    (tmp_path / "a.R").write_text("1\n")
    junk = tmp_path / "Rscript"
    junk.write_bytes(b"\x7fELF-not-really")
    os.chmod(junk, 0o755)
    got, err = _main(tmp_path, monkeypatch, capfd, ["--metrics-sink", "none", "a.R"], {"AMLR_RSCRIPT": str(junk)})
    assert (got, err[-1]) == (126, "Pipeline step execution returned 126")
    assert err[0] == f"amlr bootstrapper: cannot run {junk}: Exec format error"


def test_an_output_folder_that_cannot_be_made_is_a_usage_error(tmp_path, monkeypatch, capfd):
    (tmp_path / "a.R").write_text("1\n")
    (tmp_path / "file").write_text("x")
    got, err = _main(tmp_path, monkeypatch, capfd, ["--output", f"o={tmp_path / 'file' / 'o'}", "a.R"])
    assert (got, err[-1]) == (2, "Pipeline step execution returned 2")
    assert err[0].startswith(f"amlr bootstrapper: cannot create the folder of output o ({tmp_path / 'file' / 'o'}): ")


def test_a_signal_that_came_before_r_existed_is_passed_on_once_r_starts():
    forwarder = bs._SignalForwarder()
    forwarder.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)  # lands in our handler: R is not there yet
        assert forwarder.pending == [signal.SIGUSR1]
        child = subprocess.Popen(["sleep", "30"])
        forwarder.attach(child)
        assert child.wait(10) == -signal.SIGUSR1
        assert forwarder.pending == [] and forwarder.outcome(child.returncode) == -signal.SIGUSR1
        assert forwarder.outcome(0) == -signal.SIGUSR1  # R caught it and exited 0: still reported as told
    finally:
        forwarder.restore()
    assert signal.getsignal(signal.SIGUSR1) is not forwarder._handle


def test_contract_values_are_fixed_inputs(tmp_path, monkeypatch):
    contract = tmp_path / "c.json"
    contract.write_text(json.dumps({"format": "amlr-step/1", "script": "a.R", "args": ["${{inputs.u}}"],
                                    "inputs": ["u"], "outputs": [], "values": {"u": "https://x/y.csv"},
                                    "env": {"K": 1}, "metrics_sink": "none"}))
    monkeypatch.chdir(tmp_path)
    got = bs.from_contract(bs.parse_args(["--step", str(contract)]), {})
    assert got.inputs == {"u": "https://x/y.csv"} and got.args == ["https://x/y.csv"]
    assert got.env == {"K": "1"} and got.metrics_sink == "none"
    assert bs.from_contract(bs.parse_args(["--metrics-sink", "mlflow", "--step", str(contract)]), {}).metrics_sink \
        == "mlflow"
    for bad, message in (({"values": "u=x"}, "the step contract's values and env must be objects"),
                         ({"env": "K=1"}, "the step contract's values and env must be objects"),
                         ({"script": ""}, "the step contract names no script"),
                         ({"args": "x"}, "the step contract's args must be a list of strings"),
                         ({"metrics_sink": "kafka"}, "the step contract's metrics_sink must be one of auto, none, "
                                                     "azureml, mlflow")):
        data = json.loads(contract.read_text())
        data.update(bad)
        (tmp_path / "bad.json").write_text(json.dumps(data))
        with pytest.raises(bs.BootstrapError) as err:
            bs.from_contract(bs.parse_args(["--step", str(tmp_path / "bad.json")]), {})
        assert (str(err.value), err.value.exit_code) == (message, 2)
