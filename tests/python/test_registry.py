"""The run registry's reuse and record, on a real SQLite file in a private AMLR_HOME.

Reuse is the one place where the registry decides what a user's run does: a
wrong answer silently skips a step (stale or missing outputs) or silently
re-runs one. These tests hold ``find_reusable`` to its rules with real rows
and real folders, and the record functions it reads from.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from amlr import registry as regmod
from amlr import runrecord
from amlr.errors import RunNotFound, StepNotFound
from amlr.registry import Registry


@pytest.fixture
def reg(amlr_home: Path) -> Registry:
    return Registry(str(amlr_home))


def _run(reg: Registry, tmp_path: Path, run_id: str, *, fingerprint="fp-1", status="Completed", backend="local",
         ended=100.0, outputs=("model",), make_dirs=True, created=None) -> dict[str, str]:
    paths = {}
    for name in outputs:
        p = tmp_path / run_id / name
        if make_dirs:
            p.mkdir(parents=True)
        paths[name] = str(p)
    reg.insert_run({"id": run_id, "experiment": "cars", "pipeline": "cars", "backend": backend,
                    **({"created": created} if created is not None else {})},
                   [{"name": "train", "fingerprint": fingerprint, "outputs": dict.fromkeys(outputs)}])
    reg.update_step(run_id, "train", status=status, ended=ended, exit_code=0, outputs=paths)
    return paths


def test_a_completed_local_step_with_the_same_fingerprint_is_reused(reg, tmp_path):
    paths = _run(reg, tmp_path, "r1")
    found = reg.find_reusable("fp-1", exclude_run="r2")
    assert found is not None
    assert found["run_id"] == "r1" and found["name"] == "train" and found["backend"] == "local"
    assert found["outputs"] == paths and found["exit_code"] == 0


@pytest.mark.parametrize("change", ["fingerprint", "status", "backend", "excluded", "running"])
def test_a_step_that_differs_in_any_rule_is_not_reused(reg, tmp_path, change):
    kw = {"fingerprint": "fp-other"} if change == "fingerprint" else {"status": "Failed"} if change == "status" else \
        {"backend": "azureml"} if change == "backend" else {"status": "Running"} if change == "running" else {}
    _run(reg, tmp_path, "r1", **kw)
    assert reg.find_reusable("fp-1", exclude_run="r1" if change == "excluded" else "r2") is None


def test_a_prior_step_whose_output_folders_are_gone_is_not_reused(reg, tmp_path):
    """Reusing it would hand the next step paths that do not exist."""
    paths = _run(reg, tmp_path, "r1", outputs=("model", "report"))
    os.rmdir(paths["report"])
    assert reg.find_reusable("fp-1", exclude_run="r2") is None
    # a file where the folder was is not an output folder either
    Path(paths["report"]).write_text("not a folder")
    assert reg.find_reusable("fp-1", exclude_run="r2") is None


def test_the_newest_prior_step_with_its_outputs_present_wins(reg, tmp_path):
    old = _run(reg, tmp_path, "old", ended=100.0)
    new = _run(reg, tmp_path, "new", ended=200.0)
    assert reg.find_reusable("fp-1", "now")["run_id"] == "new"
    os.rmdir(new["model"])
    found = reg.find_reusable("fp-1", "now")
    assert found["run_id"] == "old" and found["outputs"] == old


def test_a_step_without_outputs_is_reusable(reg, tmp_path):
    _run(reg, tmp_path, "r1", outputs=())
    found = reg.find_reusable("fp-1", "r2")
    assert found is not None and found["outputs"] == {}


def test_steps_and_metrics_round_trip(reg, tmp_path):
    _run(reg, tmp_path, "r1")
    reg.update_step("r1", "train", reused=1, reused_from="r0")
    [step] = reg.get_steps("r1")
    assert step["reused"] is True and step["reused_from"] == "r0" and step["position"] == 0
    assert reg.get_step("r1", "train")["name"] == "train"
    with pytest.raises(StepNotFound, match=r"Run `r1` has no step `fit` \(its steps: train\)"):
        reg.get_step("r1", "fit")
    assert reg.add_metrics("r1", "train", []) == 0
    assert reg.add_metrics("r1", "train", [{"name": "rmse", "value": 2, "time": "2026-01-01T00:00:00Z"},
                                           {"name": "rmse", "value": 1.5},
                                           {"name": "note", "value": "ok"},
                                           {"name": "flag", "value": True},
                                           {"name": "none", "value": None}]) == 5
    assert reg.add_metrics("r1", "train", [{"name": "rmse", "value": 1.0}]) == 1  # appended, not replaced
    got = [(m["name"], m["idx"], m["value_num"], m["value_str"], m["time"]) for m in reg.get_metrics("r1")]
    assert got == [("flag", 0, None, "True", None), ("none", 0, None, None, None), ("note", 0, None, "ok", None),
                   ("rmse", 0, 2.0, None, "2026-01-01T00:00:00Z"), ("rmse", 1, 1.5, None, None), ("rmse", 2, 1.0, None, None)]
    reg.delete_run("r1")
    assert reg.get_metrics("r1") == [] and reg.get_steps("r1") == []
    with pytest.raises(RunNotFound):
        reg.get_run("r1")


def test_resolve_latest_ids_and_remote_ids(reg, tmp_path):
    with pytest.raises(RunNotFound, match="There are no runs yet"):
        reg.resolve("latest")
    _run(reg, tmp_path, "a", created=1.0)
    _run(reg, tmp_path, "b", created=2.0)
    reg.update_run("b", remote_id="remote-b")
    reg.update_run("b")  # nothing to change: no SQL error
    assert reg.resolve("latest") == "b" and reg.resolve(None) == "b" and reg.resolve({"id": "a"}) == "a"
    assert reg.resolve("remote-b") == "b"
    with pytest.raises(RunNotFound, match="No run `zz`"):
        reg.resolve("zz")
    with pytest.raises(RunNotFound, match="must be an amlr_run"):
        reg.resolve(3)
    assert [r["id"] for r in reg.list_runs()] == ["b", "a"]
    assert [r["id"] for r in reg.list_runs(limit=1)] == ["b"]
    assert reg.list_runs(experiment="other") == []


def test_log_exit_reads_the_final_bootstrapper_line(tmp_path):
    log = tmp_path / "step.log"
    assert runrecord.log_exit(None) is None and runrecord.log_exit(str(log)) is None
    log.write_text("x\nPipeline step execution returned 3\ntrailing\n")
    assert runrecord.log_exit(str(log)) == 3
    log.write_text("Pipeline step execution returned 0\nPipeline step execution was terminated by signal 15\n")
    assert runrecord.log_exit(str(log)) == 143
    log.write_text("Pipeline step execution returned x\n")
    assert runrecord.log_exit(str(log)) is None
    log.write_text("y" * 10000 + "\nPipeline step execution returned 0\n")
    assert runrecord.log_exit(str(log)) == 0


def test_read_metrics_keeps_named_records(tmp_path):
    f = tmp_path / "m.jsonl"
    assert runrecord.read_metrics_file(str(f)) == []
    f.write_text('{"name": "a", "value": 1}\nnot json\n[1]\n{"value": 2}\n{"name": "b", "value": "x"}\n')
    assert runrecord.read_metrics_file(str(f)) == [{"name": "a", "value": 1}, {"name": "b", "value": "x"}]


def test_a_stored_steps_outputs_come_back_as_a_mapping(reg, tmp_path):
    paths = _run(reg, tmp_path, "r1", outputs=("model", "report"))
    assert reg.get_steps("r1")[0]["outputs"] == paths
    reg.insert_run({"id": "r2", "experiment": "e", "pipeline": "p", "backend": "local"}, [{"name": "s"}])
    assert reg.get_steps("r2")[0]["outputs"] == {}


def test_log_exit_reads_a_log_that_is_only_the_final_line_and_bad_bytes(tmp_path):
    log = tmp_path / "step.log"
    log.write_bytes(b"Pipeline step execution returned 4\n")
    assert runrecord.log_exit(str(log)) == 4
    log.write_bytes(b"R said \xff\xfe\n" + b"Pipeline step execution returned 5\n")
    assert runrecord.log_exit(str(log)) == 5


@pytest.mark.parametrize("marker", ["run.json", "spec.json"])
def test_an_emptied_or_missing_registry_next_to_run_folders_is_damage(amlr_home, marker):
    reg = Registry(str(amlr_home))
    reg.ensure()
    folder = amlr_home / "runs" / "amlr_1"
    folder.mkdir(parents=True)
    (folder / marker).write_text("{}")
    (amlr_home / "runs" / "not-a-run").mkdir()  # a folder without a record is not counted
    assert reg.run_folders() == ["amlr_1"]
    (amlr_home / "registry.sqlite").write_bytes(b"")
    runs = amlr_home / "runs"
    fix = (f"The run folders under `{runs}` are the record: rebuild the registry from them with "
           "run_registry_rebuild() (the damaged file is kept next to it).")
    with pytest.raises(regmod.RegistryDamaged) as err:
        reg.list_runs()
    assert err.value.message == f"The run registry `{reg.path}` is empty (0 bytes) but 1 run folder(s) exist. {fix}"
    assert err.value.field == "home"
    (amlr_home / "registry.sqlite").unlink()
    with pytest.raises(regmod.RegistryDamaged) as err:
        reg.list_runs()
    assert err.value.message == f"The run registry `{reg.path}` is missing but 1 run folder(s) exist. {fix}"


def test_an_unusable_home_says_why_and_how_to_fix_it(tmp_path):
    fix = "Set AMLR_HOME to a folder you can write to (Sys.setenv(AMLR_HOME = ...)), or unset it."
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (a_file, f"AMLR_HOME `{a_file}` is a file, not a folder. {fix}"),
        (a_file / "below", f"AMLR_HOME `{a_file / 'below'}` cannot be created: part of that path is a file, not a "
                           f"folder. {fix}"),
    ]
    runs_file = tmp_path / "h1"
    runs_file.mkdir()
    (runs_file / "runs").write_text("x")
    cases.append((runs_file, f"`{runs_file / 'runs'}` is a file, but amlr keeps its run folders there. Move that file "
                             "away, or set AMLR_HOME to another folder."))
    db_dir = tmp_path / "h2"
    (db_dir / "registry.sqlite").mkdir(parents=True)
    cases.append((db_dir, f"The run registry `{db_dir / 'registry.sqlite'}` is a folder, not a file. Move that folder "
                          "away (then run_registry_rebuild() if run folders exist), or set AMLR_HOME to another folder."))
    for home, message in cases:
        with pytest.raises(regmod.HomeUnusable) as err:
            Registry(str(home)).list_runs()
        assert (err.value.message, err.value.field) == (message, "home")
        assert err.value.kind == "home_unusable"


def test_the_run_folders_rebuild_the_registry(reg, tmp_path, amlr_home):
    # r1: recorded the usual way, mirrored into run.json
    _run(reg, tmp_path, "r1", created=10.0)
    os.makedirs(reg.run_dir("r1"))
    reg.update_run("r1", status="Completed", started=11.0, ended=12.0)
    reg.update_step("r1", "train", reused=1, reused_from="r0", started=11.0)
    reg.add_metrics("r1", "train", [{"name": "rmse", "value": 1.5}])
    (Path(reg.run_dir("r1")) / "metrics").mkdir()
    (Path(reg.run_dir("r1")) / "metrics" / "train.jsonl").write_text('{"name": "rmse", "value": 1.5}\n')
    reg.write_run_file("r1")
    reg.write_run_file("no-such-run-folder")  # nothing to mirror into: no error
    # r2: only spec.json and the logs (an older amlr), one step failed
    r2 = Path(reg.run_dir("r2"))
    r2.mkdir()
    (r2 / "ok.log").write_text("hi\nPipeline step execution returned 0\n")
    (r2 / "bad.log").write_text("Pipeline step execution was terminated by signal 9\n")
    (r2 / "spec.json").write_text(json_dumps({"pipeline": {"name": "cars"}, "steps": {
        "prep": {"log": str(r2 / "ok.log"), "fingerprint": "f1", "outputs": {"o": "/x"}},
        "fit": {"log": str(r2 / "bad.log"), "fingerprint": "f2"},
        "never": {"log": None}}}))
    # r3: a run.json of a run that was still going, r4: damage
    r3 = Path(reg.run_dir("r3"))
    r3.mkdir()
    (r3 / "run.json").write_text(json_dumps({"experiment": "e", "pipeline": "p", "backend": "local",
                                             "status": "Running", "created": 5.0, "steps": [
                                                 {"name": "s", "position": 0, "status": "Running"},
                                                 {"name": "t", "position": 1, "status": "Completed"}]}))
    r4 = Path(reg.run_dir("r4"))
    r4.mkdir()
    (r4 / "run.json").write_text("{not json")
    os.remove(reg.path)
    result = reg.rebuild()
    assert result["moved_to"] is None and result["runs"] == 3
    assert sorted(result["added"]) == ["r1", "r2", "r3"] and result["skipped"] == ["r4"]
    run1 = reg.get_run("r1")
    assert (run1["status"], run1["started"], run1["ended"], run1["experiment"]) == ("Completed", 11.0, 12.0, "cars")
    [s1] = reg.get_steps("r1")
    assert (s1["reused"], s1["reused_from"], s1["fingerprint"], s1["status"]) == (True, "r0", "fp-1", "Completed")
    assert [(m["name"], m["value_num"]) for m in reg.get_metrics("r1")] == [("rmse", 1.5)]
    run2 = reg.get_run("r2")
    assert (run2["status"], run2["error"], run2["backend"]) == ("Failed", runrecord.REBUILT_REASON, "local")
    steps2 = {s["name"]: (s["status"], s["exit_code"], s["error"], s["outputs"]) for s in reg.get_steps("r2")}
    assert steps2 == {"prep": ("Completed", 0, None, {"o": "/x"}), "fit": ("Failed", 137, "exit code 137", {}),
                      "never": ("Failed", None, runrecord.REBUILT_REASON, {})}
    run3 = reg.get_run("r3")
    assert (run3["status"], run3["error"]) == ("Failed", runrecord.REBUILT_REASON)
    assert [(s["status"], s["error"]) for s in reg.get_steps("r3")] == [
        ("Failed", runrecord.REBUILT_REASON), ("Completed", None)]
    # a second rebuild of a usable registry keeps it and adds nothing
    again = reg.rebuild()
    assert again["added"] == [] and again["runs"] == 3 and again["moved_to"] is None


def test_a_damaged_registry_is_moved_aside_by_rebuild(reg, tmp_path):
    _run(reg, tmp_path, "r1")
    os.makedirs(reg.run_dir("r1"))
    reg.write_run_file("r1")
    Path(reg.path).write_text("this is not a database\n" * 20)
    result = reg.rebuild()
    assert result["moved_to"] is not None and result["moved_to"].startswith(reg.path + ".damaged-")
    assert Path(result["moved_to"]).read_text().startswith("this is not a database")
    assert result["added"] == ["r1"] and reg.get_run("r1")["pipeline"] == "cars"


def json_dumps(value) -> str:
    import json

    return json.dumps(value)


# -- details a silent change would break (found by mutation testing, docs/mutation.md) ---------------


def test_the_default_home_follows_r_user_dir(monkeypatch, tmp_path):
    for var in ("AMLR_HOME", "R_USER_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert regmod.default_home() == str(tmp_path / "me" / ".local" / "share" / "R" / "amlr")
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg")
    assert regmod.default_home() == "/xdg/R/amlr"
    monkeypatch.setenv("R_USER_DATA_DIR", "/r-data")
    assert regmod.default_home() == "/r-data/R/amlr"
    monkeypatch.setenv("AMLR_HOME", "/mine")
    assert regmod.default_home() == "/mine"


def test_run_ids_are_utc_time_stamped_and_random():
    import re
    import time

    before = time.strftime("%Y%m%d_%H%M", time.gmtime())
    ids = {regmod.new_run_id() for _ in range(50)}
    after = time.strftime("%Y%m%d_%H%M", time.gmtime())
    assert len(ids) == 50
    for run_id in ids:
        assert re.fullmatch(r"amlr_\d{8}_\d{6}_[0-9a-f]{6}", run_id), run_id
        assert run_id[5:18] in (before, after)
    assert regmod.new_run_id("trial").startswith("trial_")


def test_a_remote_run_keeps_its_remote_id_and_workspace(reg):
    ws = {"subscription_id": "s", "resource_group": "g", "name": "w"}
    reg.insert_run({"id": "r1", "experiment": "e", "pipeline": "p", "backend": "azureml_v2", "remote_id": "job-9",
                    "portal_url": "https://ml.azure.com/x", "workspace": ws}, [{"name": "s"}])
    run = reg.get_run("r1")
    assert (run["remote_id"], run["portal_url"], run["workspace"]) == ("job-9", "https://ml.azure.com/x", ws)
    assert reg.resolve("job-9") == "r1"
    reg.insert_run({"id": "r2", "experiment": "e", "pipeline": "p", "backend": "local"}, [{"name": "s"}])
    assert reg.get_run("r2")["workspace"] is None and reg.get_run("r2")["remote_id"] is None


def test_a_step_inserted_without_a_status_has_not_started(reg):
    reg.insert_run({"id": "r1", "experiment": "e", "pipeline": "p", "backend": "local"},
                   [{"name": "a"}, {"name": "b", "status": "Queued"}])
    assert [s["status"] for s in reg.get_steps("r1")] == ["NotStarted", "Queued"]


def test_a_step_ends_with_its_fields_and_metrics_in_one_write(reg):
    reg.insert_run({"id": "r1", "experiment": "e", "pipeline": "p", "backend": "local"}, [{"name": "s"}])
    reg.add_metrics("r1", "s", [{"name": "loss", "value": 3}])
    reg.finish_step("r1", "s", [{"name": "loss", "value": 2}, {"name": "model", "value": "glm"}],
                    status="Completed", exit_code=0, outputs={"o": "/x"})
    step = reg.get_step("r1", "s")
    assert (step["status"], step["exit_code"], step["outputs"]) == ("Completed", 0, {"o": "/x"})
    got = [(m["name"], m["idx"], m["value_num"], m["value_str"]) for m in reg.get_metrics("r1", "s")]
    assert got == [("loss", 0, 3.0, None), ("loss", 1, 2.0, None), ("model", 0, None, "glm")]
    reg.finish_step("r1", "s", [], status="Failed")
    assert reg.get_step("r1", "s")["status"] == "Failed" and len(reg.get_metrics("r1")) == 3


def test_the_home_and_schema_are_checked_once_per_process(reg, monkeypatch):
    from amlr import sqlitedb

    calls = []
    real = sqlitedb.ensure_schema
    monkeypatch.setattr(sqlitedb, "ensure_schema", lambda *a: (calls.append(1), real(*a))[1])
    for _ in range(3):
        reg.list_runs()
    assert len(calls) == 1
    reg.close()  # forget: the next operation checks again
    reg.list_runs()
    assert len(calls) == 2


def test_a_home_that_cannot_be_created_or_written_says_so(tmp_path, monkeypatch):
    fix = "Set AMLR_HOME to a folder you can write to (Sys.setenv(AMLR_HOME = ...)), or unset it."
    monkeypatch.setattr(os, "makedirs", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(regmod.HomeUnusable) as err:
        Registry(str(tmp_path / "new")).list_runs()
    assert (err.value.message, err.value.field) == (
        f"AMLR_HOME `{tmp_path / 'new'}` cannot be created (Permission denied). {fix}", "home")
    monkeypatch.undo()
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)  # as an unprivileged user finds it
    with pytest.raises(regmod.HomeUnusable) as err:
        Registry(str(tmp_path)).list_runs()
    assert (err.value.message, err.value.field) == (f"AMLR_HOME `{tmp_path}` is not writable. {fix}", "home")


def test_sqlite_errors_become_the_errors_users_can_act_on(reg):
    damaged = reg._translate(sqlite3.DatabaseError("file is not a database"))
    assert isinstance(damaged, regmod.RegistryDamaged) and "is not a valid SQLite database" in damaged.message
    for text in ("attempt to write a readonly database", "unable to open database file", "read-only file system"):
        err = reg._translate(sqlite3.OperationalError(text))
        assert isinstance(err, regmod.HomeUnusable), text
        assert err.message == (f"The run registry `{reg.path}` cannot be written ({text}): AMLR_HOME `{reg.home}` "
                               "or the file is read-only. Make it writable, or set AMLR_HOME to a folder you can "
                               "write to.")
    other = sqlite3.OperationalError("disk I/O error")
    assert reg._translate(other) is other


def test_a_journal_left_without_its_registry_goes_aside_with_it(reg, tmp_path):
    import re

    _run(reg, tmp_path, "r1")
    os.makedirs(reg.run_dir("r1"))
    reg.write_run_file("r1")
    os.remove(reg.path)
    Path(reg.path + "-wal").write_bytes(b"stale journal")
    result = reg.rebuild()
    moved = result["moved_to"]
    assert re.fullmatch(re.escape(reg.path) + r"\.damaged-\d{8}-\d{6}", moved), moved
    assert not os.path.exists(moved) and Path(moved + "-wal").read_bytes() == b"stale journal"
    assert result["added"] == ["r1"]
