"""amlr's R API driven from Python through rpy2 (R embedded in this process).

Proof that the package works when R is embedded in Python, and a cross-check
of the JSON protocol from both sides: what R's run_status()/run_steps()/
run_metrics() return must agree with what ``amlr.api.handle_json`` answers
for the same run.

R finds the installed amlr through R_LIBS (``make test`` installs it into
.Rlib and exports R_LIBS; without R_LIBS the repo's .Rlib is used). The tests
skip, saying why, when amlr is not installed there.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from amlr import api

REPO = Path(__file__).resolve().parents[2]

# Only the package here: importing rpy2.robjects starts R, which waits for the
# first test that needs it (so collecting this module never starts R).
pytest.importorskip("rpy2", reason="rpy2 is not installed in this Python")

PREPARE_R = """
out <- amlr::step_output("data")
write.csv(data.frame(x = 1:10), file.path(out, "numbers.csv"), row.names = FALSE)
amlr::log_metric("rows_written", 10)
cat("prepared 10 rows\\n")
"""

TRAIN_R = """
numbers <- read.csv(file.path(amlr::step_input("data"), "numbers.csv"))
amlr::log_metric("total", sum(numbers$x))
amlr::log_metric("loss", 0.5)
amlr::log_metric("loss", 0.25)
cat("total is", sum(numbers$x), "\\n")
"""


@pytest.fixture(scope="module")
def r() -> SimpleNamespace:
    """Embedded R with amlr loaded; R talks to this Python's interpreter over system2."""
    # R reads R_LIBS once, when it starts (the import below): the Makefile's
    # .Rlib, unless R_LIBS says otherwise.
    if not os.environ.get("R_LIBS") and (REPO / ".Rlib" / "amlr" / "DESCRIPTION").is_file():
        os.environ["R_LIBS"] = str(REPO / ".Rlib")
    import rpy2.robjects as ro
    from rpy2.robjects.packages import importr, isinstalled

    if not isinstalled("amlr"):
        pytest.skip(
            f"the amlr R package is not installed in R_LIBS={os.environ.get('R_LIBS', '(unset)')}; "
            "run `make setup` (installs it into .Rlib) or set R_LIBS"
        )
    importr("base").options(**{"amlr.bridge": "system2"})
    return SimpleNamespace(ro=ro, amlr=importr("amlr"))


@pytest.fixture
def r_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rscript: str) -> Path:
    """AMLR_HOME and AMLR_PYTHON for the embedded R (os.environ is R's environment)."""
    home = tmp_path / "amlr-home"
    monkeypatch.setenv("AMLR_HOME", str(home))
    monkeypatch.setenv("AMLR_PYTHON", sys.executable)
    return home


def py_call(home: Path, method: str, **params: Any) -> Any:
    params["home"] = str(home)
    answer = json.loads(api.handle_json(json.dumps({"method": method, "params": params})))
    assert "error" not in answer, answer
    return answer["result"]


def column(frame: Any, name: str) -> list:
    return list(frame.rx2(name))


def field(obj: Any, name: str) -> Any:
    return obj.rx2(name)[0]


def test_two_step_pipeline_from_python_through_r(r, r_env, tmp_path):
    amlr_r, ro = r.amlr, r.ro
    src = tmp_path / "src"
    src.mkdir()
    (src / "prepare.R").write_text(PREPARE_R, encoding="utf-8")
    (src / "train.R").write_text(TRAIN_R, encoding="utf-8")

    prepare = amlr_r.r_step(str(src / "prepare.R"), outputs="data")
    train = amlr_r.r_step(str(src / "train.R"), inputs=ro.ListVector({"data": amlr_r.output_of(prepare, "data")}))
    pipeline = amlr_r.r_pipeline(prepare, train, name="rpy2-demo")
    assert list(pipeline.rx2("order")) == ["prepare", "train"]

    run = amlr_r.submit_r_pipeline(pipeline, experiment="from-python", wait=True, quiet=True)
    run_id = field(run, "id")
    assert list(ro.r["class"](run)) == ["amlr_run"]
    assert field(run, "status") == "Completed"
    assert field(run, "backend") == "local"
    assert str(r_env) in field(run, "run_dir")

    assert amlr_r.run_status(run)[0] == "Completed"
    assert amlr_r.run_status("latest")[0] == "Completed"

    steps = amlr_r.run_steps(run)
    assert column(steps, "step") == ["prepare", "train"]
    assert column(steps, "status") == ["Completed", "Completed"]
    assert column(steps, "exit_code") == [0, 0]

    metrics = amlr_r.run_metrics(run)
    r_metrics = sorted(zip(column(metrics, "step"), column(metrics, "name"), column(metrics, "index"),
                           column(metrics, "value")))
    assert r_metrics == [
        ("prepare", "rows_written", 0, 10.0),
        ("train", "loss", 0, 0.5),
        ("train", "loss", 1, 0.25),
        ("train", "total", 0, 55.0),
    ]

    logs = list(amlr_r.run_logs(run, step="train"))
    assert "total is 55 " in logs

    # The same run, asked over the JSON protocol from this side.
    status = py_call(r_env, "status", run=run_id)
    for key in ("id", "status", "backend", "experiment", "pipeline", "run_dir"):
        assert status[key] == field(run, key), key
    assert py_call(r_env, "status", run="latest")["id"] == run_id

    py_steps = py_call(r_env, "steps", run=run_id)
    assert [s["name"] for s in py_steps] == column(steps, "step")
    assert [s["status"] for s in py_steps] == column(steps, "status")
    assert [s["exit_code"] for s in py_steps] == column(steps, "exit_code")
    for s, started in zip(py_steps, column(steps, "started")):
        assert math.isclose(s["started"], started, abs_tol=1e-3)

    py_metrics = sorted((m["step"], m["name"], m["idx"], m["value_num"]) for m in py_call(r_env, "metrics", run=run_id))
    assert py_metrics == r_metrics


def test_a_validation_error_reaches_python_as_the_classed_r_condition(r, r_env, tmp_path):
    (tmp_path / "a.R").write_text("cat(1)\n", encoding="utf-8")
    classes = r.ro.r(
        """function(script) {
          a <- amlr::r_step(script, name = "a", inputs = list(x = amlr::output_of("ghost", "out")))
          e <- tryCatch(amlr::r_pipeline(a), error = function(e) e)
          c(class(e), conditionMessage(e))
        }"""
    )(str(tmp_path / "a.R"))
    assert list(classes)[:2] == ["amlr_error_invalid_spec", "amlr_error"]
    assert "no step `ghost`" in list(classes)[-1]
