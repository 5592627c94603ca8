"""A local run's record outside the database (amlr.runrecord): run.json, metrics files, recovery.

Each function is checked field by field, on real files, because the registry is
rebuilt from exactly these files when the SQLite file is lost.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from amlr import runrecord
from amlr.runrecord import REBUILT_REASON, RUN_FIELDS, STEP_FIELDS

RUN = {"id": "r1", "experiment": "cars", "pipeline": "cars-pipe", "backend": "local", "status": "Completed",
       "created": 10.5, "started": 11.0, "ended": 12.25, "error": None, "n_steps": 2,
       "run_dir": "/not/written", "runner_pid": 4242}
STEPS = [
    {"name": "prep", "position": 0, "status": "Completed", "reused": True, "reused_from": "r0", "exit_code": 0,
     "started": 11.0, "ended": 11.5, "fingerprint": "fp-prep", "allow_reuse": True, "log_path": "/l/prep.log",
     "outputs": {"data": "/o/data"}, "error": None, "pid": 99},
    {"name": "fit", "position": 1, "status": "Failed", "reused": False, "reused_from": None, "exit_code": 3,
     "started": 11.5, "ended": 12.25, "fingerprint": "fp-fit", "allow_reuse": False, "log_path": "/l/fit.log",
     "outputs": {}, "error": "exit code 3", "pid": 100},
]


def test_the_run_file_holds_every_field_of_the_run_and_its_steps_and_nothing_else(tmp_path):
    (tmp_path / runrecord.RUN_FILE).write_text("old")
    runrecord.write_run_file(str(tmp_path), RUN, STEPS)
    record = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert set(record) == {*RUN_FIELDS, "steps"}
    assert {k: record[k] for k in RUN_FIELDS} == {k: RUN[k] for k in RUN_FIELDS}
    assert [set(s) for s in record["steps"]] == [set(STEP_FIELDS)] * 2
    assert record["steps"] == [{k: s[k] for k in STEP_FIELDS} for s in STEPS]
    assert sorted(os.listdir(tmp_path)) == ["run.json"]  # the temporary file was renamed, not left behind


def test_a_run_file_reads_back_as_the_same_run_and_steps(tmp_path):
    folder = tmp_path / "r1"
    folder.mkdir()
    runrecord.write_run_file(str(folder), RUN, STEPS)
    run, steps = runrecord.record_from_folder(str(folder), "r1")
    assert run == {**{k: RUN[k] for k in RUN_FIELDS if k not in ("id", "n_steps")}, "id": "r1",
                   "run_dir": str(folder)}
    assert steps == [{k: s[k] for k in STEP_FIELDS} for s in STEPS]


def test_a_run_that_was_still_going_comes_back_failed_with_the_reason(tmp_path):
    going = {**RUN, "status": "Running", "ended": None}
    steps = [{**STEPS[0]}, {**STEPS[1], "status": "Queued", "error": None}, {**STEPS[1], "name": "x",
                                                                              "status": "Canceled"}]
    runrecord.write_run_file(str(tmp_path), going, steps)
    run, got = runrecord.record_from_folder(str(tmp_path), "r9")
    assert (run["id"], run["status"], run["error"]) == ("r9", "Failed", REBUILT_REASON)
    assert [(s["status"], s["error"]) for s in got] == [("Completed", None), ("Failed", REBUILT_REASON),
                                                       ("Canceled", "exit code 3")]


def test_without_a_usable_run_file_the_plan_and_logs_tell_the_run(tmp_path):
    (tmp_path / "a.log").write_text("hello\nPipeline step execution returned 0\n")
    (tmp_path / "b.log").write_text("Pipeline step execution returned 0\n")
    (tmp_path / "spec.json").write_text(json.dumps({"pipeline": {"name": "cars"}, "steps": {
        "a": {"log": str(tmp_path / "a.log"), "fingerprint": "fa", "outputs": {"o": "/x"}},
        "b": {"log": str(tmp_path / "b.log"), "fingerprint": "fb"}}}))
    os.utime(tmp_path / "spec.json", (1_000_000.0, 1_000_000.0))
    (tmp_path / "run.json").write_text(json.dumps({"status": "Completed"}))  # no experiment: not a run file
    run, steps = runrecord.record_from_folder(str(tmp_path), "old")
    assert run == {"id": "old", "experiment": "cars", "pipeline": "cars", "backend": "local",
                   "status": "Completed", "created": 1_000_000.0, "run_dir": str(tmp_path), "error": None}
    assert steps == [
        {"name": "a", "position": 0, "status": "Completed", "exit_code": 0, "fingerprint": "fa",
         "log_path": str(tmp_path / "a.log"), "outputs": {"o": "/x"}, "error": None},
        {"name": "b", "position": 1, "status": "Completed", "exit_code": 0, "fingerprint": "fb",
         "log_path": str(tmp_path / "b.log"), "outputs": {}, "error": None},
    ]


def test_a_damaged_run_file_falls_back_to_the_plan(tmp_path):
    (tmp_path / "run.json").write_text("{torn")
    (tmp_path / "s.log").write_text("Pipeline step execution returned 2\n")
    (tmp_path / "spec.json").write_text(json.dumps({"pipeline": {"name": "p"}, "steps": {
        "s": {"log": str(tmp_path / "s.log")}}}))
    run, [step] = runrecord.record_from_folder(str(tmp_path), "r")
    assert (run["status"], run["error"]) == ("Failed", REBUILT_REASON)
    assert (step["status"], step["exit_code"], step["error"]) == ("Failed", 2, "exit code 2")


def test_the_final_line_is_looked_for_in_the_last_4_kib_only(tmp_path):
    log = tmp_path / "s.log"
    log.write_text("Pipeline step execution returned 0\n" + "x" * 5000 + "\n")
    assert runrecord.log_exit(str(log)) is None  # R printed more after it: not the final line
    log.write_text("x" * 5000 + "\nPipeline step execution was terminated by signal 2\n")
    assert runrecord.log_exit(str(log)) == 130
    log.write_text("Pipeline step execution was terminated by signal x\n")
    assert runrecord.log_exit(str(log)) is None


def test_metrics_files_keep_every_named_object_in_order(tmp_path):
    f = Path(tmp_path / "m.jsonl")
    f.write_bytes(b'{"name": "a", "value": 1}\n\xff\xfe\n{"name": "a", "value": 2, "time": "t"}\n'
                  b'"name"\n{"name": "b"}\n')
    assert runrecord.read_metrics_file(str(f)) == [{"name": "a", "value": 1},
                                                   {"name": "a", "value": 2, "time": "t"}, {"name": "b"}]
