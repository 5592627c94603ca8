"""r_sweep()/r_map(): expansion, the local runner with real Rscript trials, reuse per trial,
failures, bad input, and the Azure ML v2 sweep node validated by azure-ai-ml."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from bridge_calls import call, call_error
from bridge_calls import wait_run as wait
from amlr import bootstrapper, stepcontract, sweep, sweepspec
from amlr.errors import InvalidSpec, Unsupported
from amlr.spec import validate

needs_r = pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed")

# A trial: fails for alpha > 5, logs loss = (alpha - 0.3)^2 + depth, writes its values to `model`.
TRAIN = r'''
a <- commandArgs(TRUE)
alpha <- as.numeric(a[1]); depth <- as.numeric(a[2])
if (alpha > 5) stop("alpha too large")
writeLines(paste(a, collapse = " "), file.path(Sys.getenv("AMLR_OUTPUT_model"), "values.txt"))
f <- Sys.getenv("AMLR_METRICS_FILE")
if (!is.na(depth) && depth >= 0) {
  cat(sprintf('{"name":"loss","value":%s}\n', 99), file = f, append = TRUE)
  cat(sprintf('{"name":"loss","value":%s}\n', (alpha - 0.3)^2 + depth), file = f, append = TRUE)
}
'''
REPORT = 'cat("best:", readLines(file.path(Sys.getenv("AMLR_INPUT_model"), "values.txt")), "\\n")\n'
COUNT = r'''
f <- commandArgs(TRUE)[1]
if (grepl("bad", f)) stop("cannot read ", f)
writeLines(as.character(length(readLines(f))), file.path(Sys.getenv("AMLR_OUTPUT_counts"), "n.txt"))
'''



@pytest.fixture
def src(src):
    d = src
    (d / "train.R").write_text(TRAIN)
    (d / "report.R").write_text(REPORT)
    (d / "count.R").write_text(COUNT)
    return d


def sweep_step(src, params, name="train", **kw):
    fanout = {"role": "sweep", "params": params, "objective": "loss", **kw}
    return {"name": name, "script": "train.R", "source_dir": str(src), "outputs": ["model"],
            "args": ["${{search_space.alpha}}", "${{search_space.depth}}"], "fanout": fanout}


def report_step(src, of="train"):
    return {"name": "report", "script": "report.R", "source_dir": str(src),
            "inputs": {"model": {"type": "step_output", "step": of, "output": "model"}}}




def run_pipeline(home, steps, **options):
    run = call(home, "submit", spec={"name": "p", "steps": steps}, options=options)
    return wait(home, run["id"])


# -- the grammar --------------------------------------------------------------------------


def test_placeholder_grammar_is_one_in_the_package_and_the_bootstrapper():
    paths = {"inputs": {"d": "/in"}, "outputs": {"m": "/out"}, "search_space": {"alpha": "0.1"}}
    for text in ["--a=${{search_space.alpha}}", "${{ search_space.alpha }}/${{inputs.d}}", "${{outputs.m}}"]:
        assert bootstrapper.resolve_placeholders(text, paths["inputs"], paths["outputs"], paths["search_space"]) == \
            stepcontract.resolve_placeholders(text, paths)
    with pytest.raises(bootstrapper.BootstrapError):
        bootstrapper.resolve_placeholders("${{search_space.beta}}", {}, {}, {"alpha": "1"})
    with pytest.raises(KeyError):
        stepcontract.resolve_placeholders("${{search_space.beta}}", {"search_space": {"alpha": "1"}})
    opts = bootstrapper.parse_args(["--step", "c.json", "--param", "alpha", "0.5", "--param", "e", ""])
    assert opts.params == {"alpha": "0.5", "e": ""}


def test_a_placeholder_naming_no_parameter_is_a_classed_error(src):
    step = sweep_step(src, {"alpha": [1, 2]})
    step["args"] = ["${{search_space.alhpa}}"]
    with pytest.raises(InvalidSpec, match=r"names no parameter of the sweep \(its params: alpha\)"):
        validate({"name": "p", "steps": [step]})
    plain = {"name": "s", "script": "train.R", "source_dir": str(src), "args": ["${{search_space.alpha}}"]}
    with pytest.raises(InvalidSpec, match="not in an r_sweep"):
        validate({"name": "p", "steps": [plain]})
    # r_step() checks a step on its own: the sweep that wraps it comes later.
    assert validate({"name": "p", "steps": [plain]}, pending=True).steps[0].args == ["${{search_space.alpha}}"]
    plain["args"] = ["${{item}}"]
    with pytest.raises(InvalidSpec, match="not in an r_map"):
        validate({"name": "p", "steps": [plain]})
    plain["args"] = ["${{search_space.a-b}}"]
    with pytest.raises(InvalidSpec, match="not a placeholder amlr knows"):
        validate({"name": "p", "steps": [plain]}, pending=True)


@pytest.mark.parametrize("params, kw, message", [
    ({"alpha": []}, {}, "has no values"),
    ({"alpha": [1, 2, 3], "depth": [1, 2, 3]}, {"max_trials": 4}, r"9 combinations, more than max_trials = 4; use sampling = \"random\""),
    ({"alpha": list(range(40)), "depth": list(range(40))}, {}, "1600 combinations, more than amlr's limit of 1000"),
    ({"alpha": {"type": "uniform", "min_value": 0, "max_value": 1}, "depth": [1]}, {}, "a grid cannot enumerate"),
    ({"alpha": [1], "depth": [1]}, {"sampling": "random"}, "needs `max_trials`"),
    ({"alpha": {"type": "uniform", "min_value": 1, "max_value": 1}, "depth": [1]}, {"sampling": "random", "max_trials": 2}, "min_value < max_value"),
    ({"alpha": [1, 1.0], "depth": [1]}, {}, "lists the value 1 twice"),
    ({"alpha": [None], "depth": [1]}, {}, "NA, Inf and lists are not allowed"),
    ({"learning.rate": [1], "alpha": [1], "depth": [1]}, {}, "Try `learning_rate`"),
    ({"alpha": [1], "depth": [1]}, {"early_termination": {"type": "bandit"}}, "exactly one of slack_factor"),
])
def test_bad_sweeps_are_classed_errors_naming_the_fix(src, params, kw, message):
    with pytest.raises(InvalidSpec, match=message):
        validate({"name": "p", "steps": [sweep_step(src, params, **kw)]})


def test_huge_grid_is_refused_without_enumerating_it(src):
    params = {f"p{i}": list(range(10)) for i in range(12)}  # 10^12 combinations
    step = sweep_step(src, {**params, "alpha": [1], "depth": [1]}, sampling="grid")
    started = time.monotonic()
    with pytest.raises(InvalidSpec, match="1000000000000 combinations"):
        validate({"name": "p", "steps": [step]})
    assert time.monotonic() - started < 5  # a product of lengths, not a list of combinations


def test_random_sampling_is_seeded_recorded_and_repeatable(src):
    params = {"alpha": {"type": "loguniform", "min_value": -5, "max_value": 0}, "depth": {"type": "randint", "upper": 4}}
    a = validate({"name": "p", "steps": [sweep_step(src, params, sampling="random", max_trials=6)]}).steps[0]
    assert isinstance(a.fanout["seed"], int)  # picked and recorded
    again = validate({"name": "p", "steps": [sweep_step(src, params, sampling="random", max_trials=6,
                                                         seed=a.fanout["seed"])]}).steps[0]
    assert sweepspec.trial_values(a.fanout) == sweepspec.trial_values(again.fanout)
    values = sweepspec.trial_values(a.fanout)
    assert len(values) == 6 and all(0 < v["alpha"] <= 1 and v["depth"] in range(4) for v in values)
    # A small discrete space gives its distinct combinations only, never duplicate trials.
    small = validate({"name": "p", "steps": [sweep_step(src, {"alpha": [1, 2], "depth": [0]}, sampling="random",
                                                        max_trials=50, seed=3)]}).steps[0]
    assert sorted(v["alpha"] for v in sweepspec.trial_values(small.fanout)) == [1, 2]


def test_trial_names_depend_only_on_their_values(src):
    p3 = validate({"name": "p", "steps": [sweep_step(src, {"alpha": [0.1, 1], "depth": [1]})]})
    p4 = validate({"name": "p", "steps": [sweep_step(src, {"alpha": [0.1, 0.5, 1], "depth": [1]})]})
    names3 = [s.name for s in sweep.expand(p3, None).steps]
    names4 = [s.name for s in sweep.expand(p4, None).steps]
    assert set(names3) < set(names4) and len(names4) == 4
    trial = sweep.expand(p3, None).steps[0]
    assert trial.args == ["0.1", "1"] and trial.fanout["role"] == "trial"


# -- local runs with real Rscript trials ------------------------------------------------------


@needs_r
def test_sweep_runs_trials_picks_the_best_and_feeds_it_downstream(home, src):
    run = run_pipeline(home, [sweep_step(src, {"alpha": [0.1, 0.3, 9], "depth": [0, 1]}, max_concurrent=2),
                              report_step(src)])
    assert run["status"] == "Completed", run
    table = call(home, "trials", run=run["id"])
    assert table["kind"] == "sweep" and len(table["trials"]) == 6
    by = {(t["values"]["alpha"], t["values"]["depth"]): t for t in table["trials"]}
    assert by[(9, 0)]["status"] == "Failed" and by[(9, 1)]["status"] == "Failed"
    best = by[(0.3, 0)]
    assert best["best"] and best["objective"] == 0  # the last value of the series, not the first (99)
    assert sum(t["best"] for t in table["trials"]) == 1
    logs = call(home, "logs", run=run["id"])
    assert "best: 0.3 0" in "\n".join(logs["report"])
    assert "4 of 6 trials completed" in "\n".join(logs["train"])
    steps = {s["name"]: s for s in call(home, "steps", run=run["id"])}
    assert steps["train"]["outputs"]["model"] == steps[best["trial"]]["outputs"]["model"]


@needs_r
def test_a_rerun_with_one_more_value_runs_one_trial(home, src):
    first = run_pipeline(home, [sweep_step(src, {"alpha": [0.1, 0.3], "depth": [1]})])
    assert first["status"] == "Completed"
    second = run_pipeline(home, [sweep_step(src, {"alpha": [0.1, 0.3, 0.5], "depth": [1]})])
    trials = call(home, "trials", run=second["id"])["trials"]
    assert [t["reused"] for t in trials] == [True, True, False]
    assert [t["values"]["alpha"] for t in trials if t["best"]] == [0.3]


@needs_r
def test_all_trials_failing_fails_the_sweep_and_its_consumers(home, src):
    run = run_pipeline(home, [sweep_step(src, {"alpha": [6, 7], "depth": [1]}), report_step(src)])
    assert run["status"] == "Failed"
    steps = {s["name"]: s for s in call(home, "steps", run=run["id"])}
    assert "all 2 trials failed" in steps["train"]["error"]
    assert steps["report"]["status"] == "Canceled"


@needs_r
def test_an_objective_never_logged_names_the_trials(home, src):
    run = run_pipeline(home, [sweep_step(src, {"alpha": [0.1, 0.2], "depth": [-1]})])
    assert run["status"] == "Failed"
    train = {s["name"]: s for s in call(home, "steps", run=run["id"])}["train"]
    assert "no trial logged the objective `loss`" in train["error"]
    for t in call(home, "trials", run=run["id"])["trials"]:
        assert t["trial"] in train["error"]


@needs_r
def test_max_concurrent_bounds_the_trials_running_at_once(home, src):
    (src / "slow.R").write_text(
        'd <- Sys.getenv("AMLR_OUTPUT_model"); Sys.sleep(0.6)\n'
        'cat(\'{"name":"loss","value":1}\\n\', file = Sys.getenv("AMLR_METRICS_FILE"))\n')
    step = sweep_step(src, {"alpha": [1, 2, 3, 4], "depth": [1]}, max_concurrent=1)
    step["script"] = "slow.R"
    run = run_pipeline(home, [step], max_parallel=4)
    assert run["status"] == "Completed"
    spans = sorted((s["started"], s["ended"]) for s in call(home, "steps", run=run["id"]) if "__" in s["name"])
    assert all(b[0] >= a[1] - 0.05 for a, b in zip(spans, spans[1:])), spans  # never two at once


@needs_r
def test_map_over_files_gathers_a_folder_per_item_and_lists_failures(home, src, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("1\n2\n")
    (data / "sub" / "b c.csv").write_text("1\n")
    (data / "bad.csv").write_text("x\n")
    (data / ".hidden").write_text("skip me\n")
    (src / "total.R").write_text('cat(sort(list.files(Sys.getenv("AMLR_INPUT_counts"), recursive = TRUE)), sep = "\\n")\n')
    m = {"name": "count", "script": "count.R", "source_dir": str(src), "outputs": ["counts"], "args": ["${{item}}"],
         "fanout": {"role": "map", "over": {"type": "files", "input": {"type": "path", "path": str(data)}}}}
    total = {"name": "total", "script": "total.R", "source_dir": str(src),
             "inputs": {"counts": {"type": "step_output", "step": "count", "output": "counts"}}}
    run = run_pipeline(home, [m, total])
    assert run["status"] == "Completed", run
    table = call(home, "trials", run=run["id"])
    assert table["kind"] == "map"
    assert {t["item"]: t["status"] for t in table["trials"]} == {
        "a.csv": "Completed", "bad.csv": "Failed", "sub__b_c.csv": "Completed"}
    logs = call(home, "logs", run=run["id"])
    assert logs["total"][:2] == ["a.csv/n.txt", "sub__b_c.csv/n.txt"]
    assert "failed: bad.csv" in "\n".join(logs["count"])


@needs_r
def test_map_over_values_and_bad_over(home, src):
    (src / "echo.R").write_text('writeLines(commandArgs(TRUE), file.path(Sys.getenv("AMLR_OUTPUT_o"), "x"))\n')
    m = {"name": "each", "script": "echo.R", "source_dir": str(src), "outputs": ["o"], "args": ["--v=${{item}}"],
         "fanout": {"role": "map", "over": {"type": "values", "values": ["a b", "ü", 3]}}}
    run = run_pipeline(home, [m])
    assert run["status"] == "Completed"
    out = {s["name"]: s for s in call(home, "steps", run=run["id"])}["each"]["outputs"]["o"]
    assert sorted(os.listdir(out)) == ["3", "a_b", "ü"] or sorted(os.listdir(out)) == ["3", "a_b", "item"]
    with open(os.path.join(out, "a_b", "x"), encoding="utf-8") as fh:
        assert fh.read() == "--v=a b\n"
    for over, message in [({"type": "values", "values": []}, "is empty"),
                          ({"type": "values", "values": ["x", "x"]}, "lists `x` twice"),
                          ({"type": "values", "values": list(range(1001))}, "over amlr's limit")]:
        bad = dict(m, fanout={"role": "map", "over": over})
        with pytest.raises(InvalidSpec, match=message):
            validate({"name": "p", "steps": [bad]})
    with pytest.raises(InvalidSpec, match=r"only as \$\{\{item\}\}"):
        validate({"name": "p", "steps": [dict(m, args=["x"])]})


@needs_r
def test_two_sweeps_submitted_at_once_share_reuse_safely(home, src):
    """Concurrent sweeps over overlapping values: both complete, each picks its own best."""
    procs = [subprocess.Popen([sys.executable, "-c", (
        "import sys, json; sys.path.insert(0, %r); from amlr import api; "
        "print(api.handle_json(json.dumps({'method': 'submit', 'params': {'home': %r, 'spec': %r}})))"
    ) % (str(stepcontract.__file__.rsplit("/amlr/", 1)[0]), str(home),
         {"name": "p", "steps": [sweep_step(src, {"alpha": values, "depth": [1]})]})],
        stdout=subprocess.PIPE, text=True) for values in ([0.1, 0.3], [0.3, 0.6])]
    ids = [json.loads(p.communicate(timeout=60)[0])["result"]["id"] for p in procs]
    runs = [wait(home, i) for i in ids]
    assert [r["status"] for r in runs] == ["Completed", "Completed"]
    bests = [[t["values"]["alpha"] for t in call(home, "trials", run=i)["trials"] if t["best"]] for i in ids]
    assert bests == [[0.3], [0.3]]


def test_run_trials_of_a_run_without_a_sweep_is_a_classed_error(home, src):
    plain = {"name": "report", "script": "report.R", "source_dir": str(src)}
    run = call(home, "submit", spec={"name": "p", "steps": [plain]})
    wait(home, run["id"])
    err = call_error(home, "trials", run=run["id"])
    assert err["class"] == "step_not_found" and "no r_sweep() or r_map()" in err["message"]


# -- Azure ML -----------------------------------------------------------------------------------


def azure_spec(src, **kw):
    s = sweep_step(src, {"alpha": [0.1, 0.3], "depth": {"type": "randint", "upper": 3}}, sampling="random",
                   max_trials=4, seed=7, max_concurrent=2,
                   early_termination={"type": "bandit", "slack_factor": 0.2}, **kw)
    s["environment"] = {"image": "rocker/r-ver:4.4.1"}
    r = report_step(src)
    r["environment"] = {"image": "rocker/r-ver:4.4.1"}
    return {"name": "p", "steps": [s, r]}


def test_export_writes_a_sweep_node_that_azure_ai_ml_validates(src, tmp_path):
    from azure.ai.ml import load_job
    from amlr.export import export_pipeline
    import yaml

    out = tmp_path / "out" / "p.yml"
    out.parent.mkdir()
    export_pipeline(validate(azure_spec(src)), str(out))
    doc = yaml.safe_load(out.read_text())
    node = doc["jobs"]["train"]
    assert node["type"] == "sweep"
    assert node["objective"] == {"goal": "minimize", "primary_metric": "loss"}
    assert node["sampling_algorithm"] == {"type": "random", "seed": 7}
    assert node["limits"] == {"max_total_trials": 4, "max_concurrent_trials": 2}
    assert node["early_termination"]["type"] == "bandit"
    assert node["search_space"]["alpha"] == {"type": "choice", "values": ["0.1", "0.3"]}
    assert "--param alpha ${{inputs.alpha}}" in node["trial"]["command"]
    assert node["trial"]["inputs"]["depth"] == {"type": "integer"}
    assert doc["jobs"]["report"]["inputs"]["model"] == "${{parent.jobs.train.outputs.model}}"
    job = load_job(str(out))
    validation = job._validate()
    assert validation.passed, str(validation)
    # The trial's contract still carries the placeholders the bootstrapper fills from --param.
    code = out.parent / node["trial"]["code"]
    contract = json.loads((code / "_amlr" / "steps" / "train.json").read_text())
    assert contract["args"] == ["${{search_space.alpha}}", "${{search_space.depth}}"]


def test_sdk_pipeline_job_with_a_sweep_node_validates(src, tmp_path):
    from amlr.backends import azureml_v2

    plan = azureml_v2.stage(validate(azure_spec(src)), snapshots_dir=str(tmp_path / "s"),
                            environments_dir=str(tmp_path / "e"), experiment_name="x")
    job = azureml_v2.to_azure_job(plan)
    validation = job._validate()
    assert validation.passed, str(validation)
    node = job.jobs["train"]
    assert type(node).__name__ == "Sweep"
    assert node.objective.primary_metric == "loss" and node.limits.max_total_trials == 4
    assert type(node.early_termination).__name__ == "BanditPolicy"


@needs_r
def test_an_azure_trial_command_runs_with_the_values_azure_substitutes(src, tmp_path, rscript):
    """Emulate Azure ML: substitute ${{inputs.*}}/${{outputs.*}} in the trial command, run it with bash -c."""
    from amlr.backends import azureml_v2

    plan = azureml_v2.stage(validate(azure_spec(src)), snapshots_dir=str(tmp_path / "s"),
                            environments_dir=str(tmp_path / "e"), experiment_name="x")
    node = next(n for n in plan.nodes if n.name == "train")
    command = node.command.replace("${{inputs.alpha}}", "0.3").replace("${{inputs.depth}}", "2") \
        .replace("${{outputs.model}}", str(tmp_path / "model"))
    boot = os.path.join(node.code, "_amlr", "bootstrapper.py")
    command = command.replace("python _amlr/bootstrapper.py", f"{sys.executable} {boot}")
    env = dict(os.environ, AMLR_METRICS_FILE=str(tmp_path / "m.jsonl"))
    done = subprocess.run(["bash", "-c", command], cwd=node.code, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model" / "values.txt").read_text() == "0.3 2\n"


def test_azure_refuses_values_a_shell_would_split_and_classic_names_v2(src, tmp_path):
    from amlr.backends import azureml, azureml_v2

    spec = azure_spec(src)
    spec["steps"][0]["fanout"]["params"]["alpha"] = ["a b", "c;rm -rf"]
    with pytest.raises(InvalidSpec, match="would not survive the shell"):
        azureml_v2.stage(validate(spec), snapshots_dir=str(tmp_path / "s"), environments_dir=str(tmp_path / "e"),
                         experiment_name="x")
    with pytest.raises(Unsupported, match="azureml_v2"):
        azureml.plan_pipeline(validate(azure_spec(src)), str(tmp_path / "run"), default_compute="cpu")


def test_azure_map_is_one_node_per_item_and_a_gather_node(src, tmp_path):
    from azure.ai.ml import load_job
    from amlr.export import export_pipeline
    import yaml

    m = {"name": "count", "script": "count.R", "source_dir": str(src), "outputs": ["counts"],
         "args": ["${{item}}"], "environment": {"image": "rocker/r-ver:4.4.1"},
         "fanout": {"role": "map", "over": {"type": "values", "values": ["x", "y z", "w"]}}}
    reader = report_step(src, of="count")
    reader["inputs"] = {"counts": {"type": "step_output", "step": "count", "output": "counts"}}
    reader["environment"] = {"image": "rocker/r-ver:4.4.1"}
    out = tmp_path / "out" / "m.yml"
    out.parent.mkdir()
    export_pipeline(validate({"name": "p", "steps": [m, reader]}), str(out))
    job = load_job(str(out))
    validation = job._validate()
    assert validation.passed, str(validation)
    items = [n for n in job.jobs if n.startswith("count__")]
    assert len(items) == 3 and set(job.jobs) == {*items, "count", "report"}
    doc = yaml.safe_load(out.read_text())
    gather = doc["jobs"]["count"]
    assert sorted(gather["inputs"].values()) == sorted(
        "${{parent.jobs.%s.outputs.counts}}" % n for n in items)
    assert doc["jobs"]["report"]["inputs"]["counts"] == "${{parent.jobs.count.outputs.counts}}"
    # Emulate Azure ML: mount each item's output, substitute, run the gather command with bash -c.
    command = gather["command"]
    for port, binding in gather["inputs"].items():
        item = binding.split(".")[2]
        folder = tmp_path / "mnt" / item
        folder.mkdir(parents=True)
        (folder / "n.txt").write_text(item + "\n")
        command = command.replace("${{inputs.%s}}" % port, str(folder))
    command = command.replace("${{outputs.counts}}", str(tmp_path / "gathered")).replace("python ", sys.executable + " ", 1)
    code = out.parent / gather["code"]
    done = subprocess.run(["bash", "-c", command], cwd=code, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "gathered")) == ["w", "x", "y_z"]
    assert (tmp_path / "gathered" / "y_z" / "n.txt").read_text().strip() in items


# -- attacks ------------------------------------------------------------------------------------


def test_values_that_look_like_placeholders_and_names_that_clash_are_refused(src):
    with pytest.raises(InvalidSpec, match="would be read as a placeholder"):
        validate({"name": "p", "steps": [sweep_step(src, {"alpha": ["${{inputs.x}}"], "depth": [1]})]})
    m = {"name": "each", "script": "train.R", "source_dir": str(src), "args": ["${{item}}"],
         "fanout": {"role": "map", "over": {"type": "values", "values": ["${{outputs.outputs}}"]}}}
    with pytest.raises(InvalidSpec, match="would be read as a placeholder"):
        validate({"name": "p", "steps": [m]})
    with pytest.raises(InvalidSpec, match="has the name of the step's input or output `model`"):
        validate({"name": "p", "steps": [sweep_step(src, {"alpha": [1], "depth": [1], "Model": [1]})]})


def test_item_labels_stay_distinct_and_safe():
    taken: set = set()
    labels = [sweep._unique(sweep.item_label(t), taken) for t in ["a b", "a_b", "../../etc", "A_B", "", "x/y"]]
    assert labels == ["a_b", "a_b_2", "etc", "A_B_3", "item", "x__y"]
    assert all("/" not in label and not label.startswith(".") for label in labels)


def test_a_trial_name_clash_with_a_user_step_is_refused(src):
    p = validate({"name": "p", "steps": [sweep_step(src, {"alpha": [1], "depth": [1]})]})
    trial = sweep.expand(p, None).steps[0].name
    other = {"name": trial, "script": "report.R", "source_dir": str(src)}
    p2 = validate({"name": "p", "steps": [sweep_step(src, {"alpha": [1], "depth": [1]}), other]})
    with pytest.raises(InvalidSpec, match="clashes with a trial"):
        sweep.expand(p2, None)


@needs_r
def test_canceling_a_sweep_stops_its_trials_and_ends_the_run(home, src):
    (src / "slow.R").write_text('Sys.sleep(30)\n')
    step = sweep_step(src, {"alpha": [1, 2, 3], "depth": [1]})
    step["script"] = "slow.R"
    run = call(home, "submit", spec={"name": "p", "steps": [step]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(s["status"] == "Running" for s in call(home, "steps", run=run["id"])):
        time.sleep(0.1)
    call(home, "cancel", run=run["id"])
    ended = wait(home, run["id"], timeout=30)
    assert ended["status"] == "Canceled"
    assert all(s["status"] in ("Canceled", "Failed") for s in call(home, "steps", run=run["id"]))


@needs_r
def test_map_over_the_files_of_a_registered_data_asset(home, src, tmp_path):
    from amlr.store import Store

    data = tmp_path / "scans"
    data.mkdir()
    (data / "one.csv").write_text("1\n2\n3\n")
    (data / "two.csv").write_text("1\n")
    home.mkdir()
    Store(str(home)).register("data", str(data), "scans")
    m = {"name": "count", "script": "count.R", "source_dir": str(src), "outputs": ["counts"], "args": ["${{item}}"],
         "fanout": {"role": "map", "over": {"type": "files", "input": {"type": "data_asset", "name": "scans"}}}}
    run = run_pipeline(home, [m])
    assert run["status"] == "Completed", run
    out = {s["name"]: s for s in call(home, "steps", run=run["id"])}["count"]["outputs"]["counts"]
    assert {d: open(os.path.join(out, d, "n.txt")).read() for d in sorted(os.listdir(out))} == \
        {"one.csv": "3\n", "two.csv": "1\n"}
    # An empty folder has nothing to map over: a classed error at submit, nothing recorded.
    empty = tmp_path / "empty"
    empty.mkdir()
    m["fanout"]["over"]["input"] = {"type": "path", "path": str(empty)}
    err = call_error(home, "submit", spec={"name": "p", "steps": [m]})
    assert err["class"] == "invalid_spec" and "holds no files" in err["message"]
