"""The step contract (amlr.stepcontract) and the bootstrapper's --step mode, with hostile arguments.

Every backend writes the same contract and starts the same command; these tests
hold the pieces to their promises at the unit level: arguments with ``$``,
quotes, commas, backslashes, spaces and newlines survive the contract byte for
byte and reach R unchanged; the command line holds only shell-safe words;
placeholders resolve to paths or are refused with a reason.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PYTHON_DIR, requires_rscript

from amlr import bootstrapper, stepcontract as sc

HOSTILE_ARGS = [
    "$HOME", "${HOME}", "$(echo pwned)", "`id`", "a b", "it's", 'say "hi"', "a,b,c", "back\\slash",
    "trailing\\", "\\$HOME", "--flag=x y", "", "new\nline", "tab\there", "ünïcødé", "*", "?", ";", "&&", "|",
    "${{ not a port }}x",
]
HOSTILE_WITHOUT_PLACEHOLDER = HOSTILE_ARGS[:-1]


def test_contract_path_and_command_words():
    assert sc.contract_path("fit model") == "_amlr/steps/fit model.json"
    argv = sc.command("train", ["b_in", "a_in"], ["model"], lambda kind, name: f"/mnt/{kind}/{name}")
    assert argv == ["python", "_amlr/bootstrapper.py", "--step", "_amlr/steps/train.json",
                    "--input", "a_in", "/mnt/input/a_in", "--input", "b_in", "/mnt/input/b_in",
                    "--output", "model", "/mnt/output/model"]
    # a port the service binds itself (None) is left out; the python word can change
    argv = sc.command("s", ["data"], ["out"], lambda kind, name: None if kind == "input" else "o", python="py3")
    assert argv == ["py3", "_amlr/bootstrapper.py", "--step", "_amlr/steps/s.json", "--output", "out", "o"]


def test_v2_command_line_is_the_words_joined_and_reparses_to_them():
    argv = sc.command("train", ["data"], ["model"], lambda kind, name: f"${{{{{kind}s.{name}}}}}")
    line = sc.command_line(argv)
    assert line == ("python _amlr/bootstrapper.py --step _amlr/steps/train.json "
                    "--input data ${{inputs.data}} --output model ${{outputs.model}}")
    assert shlex.split(line) == argv


def test_classic_bindings_pass_the_shell_check():
    sc.check_shell_safe(["python", "$AZUREML_DATAREFERENCE_data", "${{inputs.x}}", "${{outputs.y_2}}", 42, object()])


@pytest.mark.parametrize("word", ["a b", "$HOME", "it's", 'x"y', "a\\b", "a;b", "${{inputs.a}}x", "",
                                  "$AZUREML_DATAREFERENCE_", "${{params.x}}", "x\ny", "$(id)"])
def test_words_a_shell_would_change_are_refused(word):
    with pytest.raises(ValueError, match="would not survive a shell"):
        sc.check_shell_safe(["python", word])
    with pytest.raises(ValueError, match="would not survive a shell"):
        sc.command_line(["python", word])


def test_document_keeps_hostile_args_byte_for_byte_and_is_canonical():
    doc = sc.document(step="fit", script="R/fit.R", args=HOSTILE_ARGS, env={"Z": "$z", "A": 'q"uote'},
                      inputs=["b", "a"], outputs=["m"], values={"u": "https://x/y?a=1&b=$2"}, metrics_sink="none")
    assert doc == {
        "format": "amlr-step/1", "step": "fit", "script": "R/fit.R", "args": HOSTILE_ARGS,
        "env": {"A": 'q"uote', "Z": "$z"}, "inputs": ["a", "b"], "outputs": ["m"],
        "values": {"u": "https://x/y?a=1&b=$2"}, "metrics_sink": "none",
    }
    assert list(doc["env"]) == ["A", "Z"]
    raw = sc.to_bytes(doc)
    assert raw.endswith(b"\n") and "ünïcødé".encode() in raw  # UTF-8, not \u escapes
    assert json.loads(raw.decode("utf-8")) == doc
    # The bytes are part of every step's code identity: a change of layout would make every
    # step of every earlier run look different, so no step would ever be reused after an upgrade.
    small = sc.document(step="s", script="é.R", args=["a"], env={}, inputs=[], outputs=[])
    assert sc.to_bytes(small) == (
        '{\n "args": [\n  "a"\n ],\n "env": {},\n "format": "amlr-step/1",\n "inputs": [],\n'
        ' "metrics_sink": "auto",\n "outputs": [],\n "script": "é.R",\n "step": "s",\n "values": {}\n}\n'
    ).encode("utf-8")
    shuffled = dict(reversed(list(doc.items())))
    assert sc.to_bytes(shuffled) == raw
    assert sc.document(step="s", script="x.R", args=[], env={}, inputs=[], outputs=[])["values"] == {}
    assert sc.document(step="s", script="x.R", args=[], env={}, inputs=[], outputs=[])["metrics_sink"] == "auto"


def test_placeholders_and_their_problems():
    assert sc.placeholders("--in=${{inputs.a}} ${{ outputs.b }} ${{x}} $HOME {{y}}") == ["inputs.a", "outputs.b", "x"]
    assert sc.placeholder_problem("inputs.a", ["a"], []) is None
    assert sc.placeholder_problem("outputs.m", [], ["m"]) is None
    assert sc.placeholder_problem("outputs.outputs", [], []) is None  # ./outputs always exists
    assert sc.placeholder_problem("inputs.outputs", [], []) == (
        "`${{inputs.outputs}}` names no input of the step (its inputs: none)")
    assert sc.placeholder_problem("inputs.m", ["a", "b"], ["m"]) == (
        "`${{inputs.m}}` names no input of the step (its inputs: a, b)")
    assert sc.placeholder_problem("outputs.a", ["a"], ["m"]) == (
        "`${{outputs.a}}` names no output of the step (its outputs: m)")
    unknown = sc.placeholder_problem("params.x", ["x"], ["x"])
    assert unknown == ("`${{params.x}}` is not a placeholder amlr knows; use ${{inputs.NAME}} or "
                       "${{outputs.NAME}} with a name of the step's inputs or outputs "
                       "(in r_sweep(): ${{search_space.NAME}}; in r_map(): ${{item}})")
    assert sc.placeholder_problem("inputs.1a", ["1a"], []) is not None


def test_resolve_placeholders_in_both_resolvers():
    paths = {"inputs": {"data": "/in/d a$ta"}, "outputs": {"model": "C:\\out\\m", "outputs": "/o"}}
    text = "--data=${{inputs.data}},${{ outputs.model }};$HOME ${{outputs.outputs}}"
    want = "--data=/in/d a$ta,C:\\out\\m;$HOME /o"
    assert sc.resolve_placeholders(text, paths) == want
    assert bootstrapper.resolve_placeholders(text, paths["inputs"], paths["outputs"]) == want
    for bad in ("${{inputs.model}}", "${{outputs.data}}", "${{nope}}"):
        with pytest.raises(KeyError) as caught:
            sc.resolve_placeholders(bad, paths)
        assert caught.value.args == (bad[3:-2],)  # the expression, for the caller's message
        with pytest.raises(bootstrapper.BootstrapError, match="names no port"):
            bootstrapper.resolve_placeholders(bad, paths["inputs"], paths["outputs"])
    with pytest.raises(KeyError):
        sc.resolve_placeholders("${{inputs.data}}", {"outputs": {"data": "x"}})


def _step_folder(tmp_path: Path, args: list[str], env: dict[str, str], inputs=(), outputs=(), values=None):
    snap = tmp_path / "snap with space"
    (snap / "_amlr" / "steps").mkdir(parents=True)
    (snap / "echo.R").write_text(
        'a <- commandArgs(trailingOnly = TRUE)\n'
        'writeLines(jsonlite::toJSON(list(args = a, v = Sys.getenv("STEP_V")), auto_unbox = TRUE), "seen.json")\n',
        encoding="utf-8")
    doc = sc.document(step="echo", script="echo.R", args=args, env=env, inputs=list(inputs), outputs=list(outputs),
                      values=values)
    (snap / sc.contract_path("echo")).write_bytes(sc.to_bytes(doc))
    shutil.copy2(PYTHON_DIR / "amlr" / "bootstrapper.py", snap / sc.BOOTSTRAPPER_IN_SNAPSHOT)
    return snap


@requires_rscript
def test_hostile_args_and_env_reach_r_unchanged_through_the_contract(tmp_path):
    if subprocess.run(["Rscript", "-e", "library(jsonlite)"], capture_output=True).returncode != 0:
        pytest.fail("jsonlite is part of amlr's requirements and must be installed")
    data = tmp_path / "in put$1"
    data.mkdir()
    args = HOSTILE_WITHOUT_PLACEHOLDER + ["--data=${{inputs.data}}", "${{outputs.model}},x"]
    snap = _step_folder(tmp_path, args, {"STEP_V": "$X \\ 'q' \"d\", c"}, inputs=["data"], outputs=["model"])
    out = tmp_path / "out'put"
    argv = sc.command("echo", ["data"], ["model"], lambda kind, name: str(data) if kind == "input" else str(out),
                      python=sys.executable)
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    env.pop("AMLR_METRICS_FILE", None)
    res = subprocess.run(argv, cwd=snap, env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr.decode().rstrip("\n").split("\n")[-1] == "Pipeline step execution returned 0"
    seen = json.loads((snap / "seen.json").read_text(encoding="utf-8"))
    # R drops empty arguments from commandArgs() on no platform: the empty string arrives too
    assert seen["args"] == HOSTILE_WITHOUT_PLACEHOLDER + [f"--data={data}", f"{out},x"]
    assert seen["v"] == "$X \\ 'q' \"d\", c"
    assert out.is_dir() and (snap / "outputs").is_dir()


def test_contract_refusals_name_the_problem(tmp_path):
    snap = _step_folder(tmp_path, ["${{inputs.nope}}"], {}, inputs=[], outputs=[])
    res = subprocess.run([sys.executable, str(PYTHON_DIR / "amlr" / "bootstrapper.py"), "--step",
                          sc.contract_path("echo")], cwd=snap, capture_output=True, timeout=60)
    assert res.returncode == 2
    assert b"argument placeholder ${{inputs.nope}} names no port of this step" in res.stderr
    # a binding the contract does not declare
    snap2 = _step_folder(tmp_path / "two", [], {}, inputs=[], outputs=[])
    res = subprocess.run([sys.executable, str(PYTHON_DIR / "amlr" / "bootstrapper.py"), "--step",
                          sc.contract_path("echo"), "--input", "extra", "/x"], cwd=snap2, capture_output=True,
                         timeout=60)
    assert res.returncode == 2 and b"the command binds extra, which the step contract does not declare" in res.stderr


def test_unsubstituted_bindings_fall_back_to_the_service_variables(tmp_path):
    snap = _step_folder(tmp_path, ["${{inputs.data}}", "${{outputs.model}}"], {}, inputs=["data"], outputs=["model"],
                        values=None)
    opts = bootstrapper.parse_args(["--step", str(snap / sc.contract_path("echo")),
                                    "--input", "data", "$AZUREML_DATAREFERENCE_data",
                                    "--output", "model", "${{outputs.model}}"])
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        got = bootstrapper.from_contract(opts, {"AZUREML_DATAREFERENCE_data": "/mnt/d",
                                                "AZURE_ML_OUTPUT_model": "/mnt/m"})
    finally:
        os.chdir(cwd)
    assert got.inputs == {"data": "/mnt/d"} and got.outputs == {"model": "/mnt/m"}
    assert got.args == ["/mnt/d", "/mnt/m"] and got.script == "echo.R"
    with pytest.raises(bootstrapper.BootstrapError, match="input data has no path"):
        bootstrapper.from_contract(opts, {})


@pytest.mark.parametrize("given", ["", "${{inputs.data}}", "$AZURE_ML_INPUT_data", "${AZURE_ML_INPUT_data}"])
def test_every_variable_the_service_may_set_is_a_port_path(tmp_path, given):
    snap = _step_folder(tmp_path, ["${{inputs.data}}"], {}, inputs=["data"], outputs=["model"], values=None)
    opts = bootstrapper.parse_args(["--step", str(snap / sc.contract_path("echo")), "--input", "data", given,
                                    "--output", "model", ""])
    for env, want in (({"AZURE_ML_INPUT_data": "/v2/d", "AZURE_ML_OUTPUT_model": "/v2/m"}, ("/v2/d", "/v2/m")),
                      ({"AZURE_ML_INPUT_DATA": "/up/d", "AZURE_ML_OUTPUT_MODEL": "/up/m"}, ("/up/d", "/up/m")),
                      ({"AZUREML_DATAREFERENCE_data": "/v1/d", "AZUREML_DATAREFERENCE_model": "/v1/m",
                        "AZURE_ML_INPUT_data": "/no"}, ("/v1/d", "/v1/m"))):
        got = bootstrapper.from_contract(opts, env, workdir=str(tmp_path))
        assert (got.inputs["data"], got.outputs["model"]) == want
        assert got.args == [want[0]]
    with pytest.raises(bootstrapper.BootstrapError) as err:
        bootstrapper.from_contract(opts, {"AZURE_ML_OUTPUT_model": "/m"}, workdir=str(tmp_path))
    assert str(err.value) == (f"input data has no path: the command gave {given!r} and neither "
                              "AZUREML_DATAREFERENCE_data nor AZURE_ML_INPUT_data is set")
    with pytest.raises(bootstrapper.BootstrapError) as err:
        bootstrapper.from_contract(opts, {"AZURE_ML_INPUT_data": "/d"}, workdir=str(tmp_path))
    assert str(err.value) == ("output model has no path: the command gave '' and neither "
                              "AZUREML_DATAREFERENCE_model nor AZURE_ML_OUTPUT_model is set")


def test_search_space_placeholders_take_the_trials_values():
    got = bootstrapper.resolve_placeholders("--lr=${{search_space.lr}}:${{ inputs.d }}", {"d": "/d"}, {},
                                            {"lr": "0.1"})
    assert got == "--lr=0.1:/d"
    with pytest.raises(bootstrapper.BootstrapError) as err:
        bootstrapper.resolve_placeholders("${{search_space.depth}}", {}, {}, {"lr": "0.1"})
    assert str(err.value) == "argument placeholder ${{search_space.depth}} has no --param value"
    with pytest.raises(bootstrapper.BootstrapError, match="has no --param value"):
        bootstrapper.resolve_placeholders("${{search_space.lr}}", {}, {})
    with pytest.raises(bootstrapper.BootstrapError) as err:
        bootstrapper.resolve_placeholders("${{outputs.nope}}", {}, {"m": "/m"})
    assert str(err.value) == "argument placeholder ${{outputs.nope}} names no port of this step"


def test_a_json_file_that_is_not_a_contract_is_refused_by_name(tmp_path):
    for body in ('{"format": "amlr-step/2", "script": "a.R"}', '["amlr-step/1"]'):
        (tmp_path / "c.json").write_text(body)
        with pytest.raises(bootstrapper.BootstrapError) as err:
            bootstrapper.from_contract(bootstrapper.parse_args(["--step", "c.json"]), {}, workdir=str(tmp_path))
        assert (str(err.value), err.value.exit_code) == (
            f"{tmp_path / 'c.json'} is not an amlr step contract (amlr-step/1)", 2)
    (tmp_path / "c.json").write_text("{torn")
    with pytest.raises(bootstrapper.BootstrapError, match=r"cannot read the step contract .*c\.json: "):
        bootstrapper.from_contract(bootstrapper.parse_args(["--step", "c.json"]), {}, workdir=str(tmp_path))


# -- sweep and map placeholders (r_sweep(): ${{search_space.NAME}}; r_map(): ${{item}}) -------------


def test_fanout_placeholders_are_told_apart_from_ports():
    assert sc.fanout_placeholder("item") == ("item", "")
    assert sc.fanout_placeholder("search_space.alpha") == ("param", "alpha")
    assert sc.fanout_placeholder("inputs.data") is None and sc.fanout_placeholder("search_space.") is None


@pytest.mark.parametrize("expr, kwargs, problem", [
    ("search_space.lr", {}, "`${{search_space.lr}}` is a sweep parameter, but step is not in an r_sweep(); "
                            "wrap it: r_sweep(step, params = list(lr = ...), objective = ...)"),
    ("search_space.lr", {"params": ["alpha", "depth"]},
     "`${{search_space.lr}}` names no parameter of the sweep (its params: alpha, depth); add `lr` to `params` "
     "or fix the name"),
    ("search_space.lr", {"params": []},
     "`${{search_space.lr}}` names no parameter of the sweep (its params: none); add `lr` to `params` or fix the "
     "name"),
    ("search_space.lr", {"params": ["lr"]}, None),
    ("search_space.lr", {"pending": True}, None),  # r_step() on its own: r_sweep() may still wrap it
    ("item", {}, "`${{item}}` is a map item, but the step is not in an r_map(); wrap it: r_map(step, over = ...)"),
    ("item", {"item": True}, None),
    ("item", {"pending": True}, None),
    ("inputs.nope", {"pending": True}, "`${{inputs.nope}}` names no input of the step (its inputs: data)"),
    ("outputs.nope", {}, "`${{outputs.nope}}` names no output of the step (its outputs: none)"),
    ("outputs.outputs", {}, None),
])
def test_placeholder_problems_name_the_fix(expr, kwargs, problem):
    assert sc.placeholder_problem(expr, ["data"], [], **kwargs) == problem


def test_a_trials_values_and_an_items_value_are_put_into_arguments():
    text = "--lr=${{search_space.lr}} --in=${{inputs.data}} --item=${{item}} ${{outputs.model}}"
    assert sc.substitute_fanout(text, {"lr": "0.1"}, item="a.csv") == \
        "--lr=0.1 --in=${{inputs.data}} --item=a.csv ${{outputs.model}}"
    assert sc.substitute_fanout("${{ search_space.lr }}", {"lr": "1"}) == "1"
    with pytest.raises(KeyError) as err:
        sc.substitute_fanout("${{item}}", {})
    assert err.value.args == ("item",)
    with pytest.raises(KeyError) as err:
        sc.substitute_fanout("x ${{search_space.depth}}", {"lr": "1"})
    assert err.value.args == ("search_space.depth",)


def test_resolving_takes_search_space_values_before_ports():
    paths = {"inputs": {"data": "/d"}, "outputs": {}, "search_space": {"lr": "0.5"}}
    assert sc.resolve_placeholders("${{search_space.lr}}:${{inputs.data}}", paths) == "0.5:/d"
    with pytest.raises(KeyError) as err:
        sc.resolve_placeholders("${{search_space.depth}}", paths)
    assert err.value.args == ("search_space.depth",)
    with pytest.raises(KeyError):
        sc.resolve_placeholders("${{search_space.lr}}", {"inputs": {}})


def test_a_sweep_steps_command_passes_each_parameter_as_a_service_input():
    argv = sc.command("train", [], [], lambda kind, name: None, params=["lr", "alpha"])
    assert argv == ["python", "_amlr/bootstrapper.py", "--step", "_amlr/steps/train.json",
                    "--param", "alpha", "${{inputs.alpha}}", "--param", "lr", "${{inputs.lr}}"]
    opts = bootstrapper.parse_args([w.replace("${{inputs.alpha}}", "0.1").replace("${{inputs.lr}}", "2")
                                    for w in argv[2:]])
    assert opts.params == {"alpha": "0.1", "lr": "2"}
