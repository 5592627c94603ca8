"""Every rule of the spec validator, one bad input each: the exact field and message a user sees.

The messages are the product here (they name the problem and the fix), so they
are compared whole. Inputs are what R's jsonlite sends (scalars as length-1
lists, empty named lists as [] or {}).
"""
from __future__ import annotations

import os

import pytest

from amlr.errors import InvalidSpec
from amlr.spec import Input, suggest_name, topological_order, validate


@pytest.fixture
def src(tmp_path):
    (tmp_path / "a.R").write_text("1\n")
    (tmp_path / "b.R").write_text("1\n")
    (tmp_path / "data.csv").write_text("1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.R").write_text("1\n")
    return tmp_path


def one(src, **kw):
    step = {"name": "a", "script": "a.R", "source_dir": str(src)}
    step.update(kw)
    return {"name": "p", "steps": [step]}


def refused(spec) -> tuple[str, str]:
    with pytest.raises(InvalidSpec) as err:
        validate(spec)
    assert err.value.kind == "invalid_spec"
    return err.value.field, err.value.message


S = "steps[a]"
CASES = [
    ("not an object", lambda src: {"name": "p", "steps": ["a.R"]}, "steps[0]",
     "Each step must be an object built by r_step()."),
    ("no name", lambda src: {"name": "p", "steps": [{"script": "a.R", "source_dir": str(src)}]}, "steps[0].name",
     "`steps[0].name` is missing; give it a non-empty string."),
    ("name not a string", lambda src: one(src, name=3), "steps[0].name", "`steps[0].name` must be a string, not int."),
    ("bad name", lambda src: one(src, name="Fit Model.R"), "steps[0].name",
     "Step name `Fit Model.R` is not allowed: Azure ML wants lower-case letters, digits and `_`, starting with a "
     "letter or `_` (at most 255). Try name = \"fit_model\"."),
    ("no script", lambda src: one(src, script=""), f"{S}.script", f"`{S}.script` is missing; give it a non-empty string."),
    ("inputs not named", lambda src: one(src, inputs=["x"]), f"{S}.inputs", "`inputs` of step `a` must be a named list."),
    ("bad input name", lambda src: one(src, inputs={"my data": "x"}), f"{S}.inputs.my data",
     "Input name `my data` of step `a` must be letters, digits and `_`, starting with a letter or `_`."),
    ("input not a path", lambda src: one(src, inputs={"d": 3}), f"{S}.inputs.d",
     "Input `d` of step `a` must be a path, a URI or output_of(step, output)."),
    ("input of unknown type", lambda src: one(src, inputs={"d": {"type": "table"}}), f"{S}.inputs.d",
     "Input `d` of step `a` has unknown type 'table'; use a path, a URI or output_of()."),
    ("output_of without output", lambda src: one(src, inputs={"d": {"type": "step_output", "step": "b"}}),
     f"{S}.inputs.d.output", f"`{S}.inputs.d.output` is missing; give it a non-empty string."),
    ("bad output name", lambda src: one(src, outputs=["2x"]), f"{S}.outputs",
     "Output name `2x` of step `a` must be letters, digits and `_`, starting with a letter or `_`."),
    ("output twice", lambda src: one(src, outputs=["m", "M"]), f"{S}.outputs", "Step `a` declares output `M` twice."),
    ("reserved output", lambda src: one(src, outputs=["outputs"]), f"{S}.outputs",
     "Output name `outputs` of step `a` is reserved: files the script writes under ./outputs are kept as that output "
     "already. Write there, or give this output another name."),
    ("input and output share a name, any case", lambda src: one(src, inputs={"Data": str(src)}, outputs=["data"]),
     f"{S}.outputs", "Step `a` uses `data` both as an input and an output name; rename one."),
    ("allow_reuse not logical", lambda src: one(src, allow_reuse="yes"), f"{S}.allow_reuse",
     "`allow_reuse` of step `a` must be TRUE or FALSE."),
    ("step_type", lambda src: one(src, step_type="spark"), f"{S}.step_type",
     "`step_type` of step `a` must be \"command\", \"estimator\" or \"python_script\"."),
    ("environment", lambda src: one(src, environment="r-4.3"), f"{S}.environment",
     "`environment` of step `a` must come from r_environment()."),
    ("named args", lambda src: one(src, args={"alpha": "0.1"}), f"{S}.args",
     "`args` of step `a` must be an unnamed character vector; named arguments have no meaning to Rscript. Write "
     "c(\"--alpha\", \"0.1\") instead of c(alpha = \"0.1\")."),
    ("NA arg", lambda src: one(src, args=["x", None]), f"{S}.args[2]",
     "Argument 2 of step `a` is NA; give a string, or leave it out."),
    ("nested arg", lambda src: one(src, args=[["x"]]), f"{S}.args[1]",
     "Argument 1 of step `a` is a list; `args` must be a character vector (use unlist() or paste() first)."),
    ("unknown placeholder", lambda src: one(src, args=["--in", "${{inputs.data}}"]), f"{S}.args[2]",
     "Argument 2 of step `a`: `${{inputs.data}}` names no input of the step (its inputs: none)."),
    ("env not named", lambda src: one(src, env=["A=1"]), f"{S}.env",
     "`env` of step `a` must be a named character vector, e.g. env = c(N_TREES = \"500\")."),
    ("env bad name", lambda src: one(src, env={"1A": "x"}), f"{S}.env.1A",
     "Environment variable name `1A` of step `a` is not valid: letters, digits and `_`, not starting with a digit."),
    ("env reserved", lambda src: one(src, env={"azureml_x": "x"}), f"{S}.env.azureml_x",
     "Environment variable `azureml_x` of step `a` uses a prefix that amlr and Azure ML set themselves (AMLR_, "
     "AZUREML_, AZURE_ML_); choose another name."),
    ("env reserved amlr", lambda src: one(src, env={"AMLR_HOME": "x"}), f"{S}.env.AMLR_HOME", None),
    ("env reserved azure_ml", lambda src: one(src, env={"AZURE_ML_INPUT_x": "x"}), f"{S}.env.AZURE_ML_INPUT_x", None),
    ("env NA", lambda src: one(src, env={"A": None}), f"{S}.env.A",
     "Environment variable `A` of step `a` must be one string, not NA or a vector."),
    ("env vector", lambda src: one(src, env={"A": ["1", "2"]}), f"{S}.env.A", None),
    ("files empty", lambda src: one(src, files=[""]), f"{S}.files[1]",
     "`files` of step `a` must be paths inside its source_dir."),
    ("files outside", lambda src: one(src, files=["data.csv", "../x.csv"]), f"{S}.files[2]",
     lambda src: f"File `../x.csv` of step `a` is outside its source_dir `{src}`; only files of the snapshot can be read on "
     "Azure ML."),
    ("files missing", lambda src: one(src, files=["nope.csv"]), f"{S}.files[1]",
     lambda src: f"File `nope.csv` of step `a` does not exist in `{src}`."),
    ("register not named", lambda src: one(src, outputs=["m"], register=["x"]), f"{S}.register",
     "`register` must be a named character vector: c(output = \"asset-name\")."),
    ("register unknown output", lambda src: one(src, outputs=["m"], register={"model": "cars"}), f"{S}.register",
     "`register` names output `model`, which the step does not declare (its outputs: m); add it to `outputs`."),
    ("register, no outputs", lambda src: one(src, register={"model": "cars"}), f"{S}.register",
     "`register` names output `model`, which the step does not declare (its outputs: none); add it to `outputs`."),
    ("script absolute", lambda src: one(src, script=str(src / "a.R")), f"{S}.script",
     lambda src: f"Script `{src / 'a.R'}` of step `a` must be a path inside its source_dir (`{src}`); move the script there or "
     "widen source_dir."),
    ("script above", lambda src: one(src, script="sub/../../a.R"), f"{S}.script", None),
    ("script backslash above", lambda src: one(src, script="..\\a.R"), f"{S}.script", None),
    ("source_dir missing", lambda src: one(src, source_dir=str(src / "nope")), f"{S}.source_dir",
     lambda src: f"source_dir `{src / 'nope'}` of step `a` is not a folder."),
    ("script missing", lambda src: one(src, script="sub/none.R"), f"{S}.script",
     lambda src: f"Script `sub/none.R` of step `a` does not exist in `{src}`."),
    ("pipeline not an object", lambda src: ["a.R"], "pipeline",
     "A pipeline spec must be an object built by r_pipeline()."),
    ("pipeline compute", lambda src: dict(one(src), compute=3), "compute", "`compute` must be a string, not int."),
    ("output_of without step", lambda src: one(src, inputs={"d": {"type": "step_output", "output": "o"}}),
     f"{S}.inputs.d.step", f"`{S}.inputs.d.step` is missing; give it a non-empty string."),
    ("path input without path", lambda src: one(src, inputs={"d": {"type": "path", "path": ""}}),
     f"{S}.inputs.d.path", f"`{S}.inputs.d.path` is missing; give it a non-empty string."),
    ("own output", lambda src: one(src, outputs=["m"], inputs={"x": {"type": "step_output", "step": "a", "output": "m"}}),
     f"{S}.inputs.x", "Step `a` reads its own output `m`; a step cannot depend on itself."),
    ("data mode", lambda src: one(src, inputs={"d": {"type": "data_asset", "name": "cars", "mode": "rw"}}),
     f"{S}.inputs.d.mode", "`mode` of aml_data(\"cars\") must be one of: ro_mount, download."),
    ("data type", lambda src: one(src, inputs={"d": {"type": "data_asset", "name": "cars", "data_type": "csv"}}),
     f"{S}.inputs.d.data_type", "`type` of aml_data(\"cars\") must be uri_folder, uri_file or mltable."),
]


@pytest.mark.parametrize("what, make, field, message", CASES, ids=[c[0] for c in CASES])
def test_each_rule_names_the_field_and_the_fix(src, what, make, field, message):
    got_field, got_message = refused(make(src))
    assert got_field == field
    if callable(message):
        message = message(src)
    if message is not None:
        assert got_message == message


def test_a_script_that_escapes_through_a_link_is_refused(src, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "x.R").write_text("1\n")
    os.symlink(outside / "x.R", src / "link.R")
    field, message = refused(one(src, script="link.R"))
    assert field == f"{S}.script"
    assert message == f"Script `link.R` of step `a` is outside its source_dir `{src}`."


def test_everything_a_step_can_say_is_kept(src, monkeypatch):
    monkeypatch.setenv("HOME", str(src))
    monkeypatch.chdir(src)
    spec = {"name": "p", "description": "d", "compute": "cpu", "environment": {"name": "e"}, "steps": [
        {"name": "b", "script": ["b.R"], "source_dir": [str(src)], "outputs": "model", "allow_reuse": [False],
         "compute": "gpu", "step_type": "estimator", "environment": {"name": "x"},
         "args": ["--n", 3, 0.5, True, False, "${{outputs.model}}", "${{outputs.outputs}}"],
         "env": {"N": ["5"], "FLAG": True, "OFF": False, "X": 2},
         "files": ["sub/c.R", "data.csv", str(src / "data.csv"), "sub\\c.R"],
         "register": {"model": "cars-model"},
         "inputs": {"raw": "~/data.csv", "web": "HTTPS://example.org/x.csv", "blob": ["azureml://datastores/x/paths/y"],
                    "u": {"type": "uri", "uri": "wasbs://c@a.blob/x"}, "p": {"type": "path", "path": "data.csv"},
                    "cars": {"type": "data_asset", "name": "cars", "version": ["latest"]},
                    "cars2": {"type": "data_asset", "name": "cars", "version": 2, "mode": "download",
                              "data_type": "uri_file"}}},
        {"name": "a", "script": "a.R", "source_dir": str(src), "inputs": {"m": {"type": "step_output", "step": "b",
                                                                             "output": "model"}},
         "args": {}, "env": {}, "files": [], "register": {}, "outputs": {}},
    ]}
    p = validate(spec)
    assert [s.name for s in p.steps] == ["b", "a"]
    b = p.step("b")
    assert b.args == ["--n", "3", "0.5", "TRUE", "FALSE", "${{outputs.model}}", "${{outputs.outputs}}"]
    assert b.env == {"N": "5", "FLAG": "TRUE", "OFF": "FALSE", "X": "2"}
    assert b.files == ["data.csv", "sub/c.R"]
    assert b.outputs == ["model"] and b.allow_reuse is False and b.compute == "gpu" and b.step_type == "estimator"
    assert b.register == {"model": "cars-model"}
    assert b.inputs["raw"] == Input("path", path=str(src / "data.csv"))
    assert b.inputs["web"] == Input("uri", uri="HTTPS://example.org/x.csv")
    assert b.inputs["blob"].kind == "uri"
    assert b.inputs["p"] == Input("path", path=os.path.abspath("data.csv"))
    assert b.inputs["cars"] == Input("data_asset", asset="cars", version="latest", mode="ro_mount")
    assert b.inputs["cars2"] == Input("data_asset", asset="cars", version="2", mode="download", data_type="uri_file")
    a = p.step("a")
    assert a.args == [] and a.env == {} and a.files == [] and a.register == {} and a.outputs == []
    assert a.allow_reuse is True and a.step_type == "command" and a.environment is None and a.compute is None
    assert a.upstream() == ["b"] and b.upstream() == []
    assert p.downstream() == {"b": ["a"], "a": []}
    with pytest.raises(KeyError):
        p.step("c")
    out = p.to_json()
    assert out["name"] == "p" and out["description"] == "d" and out["compute"] == "cpu"
    assert out["environment"] == {"name": "e"}
    jb = out["steps"][0]
    assert jb == {
        "name": "b", "script": "b.R", "source_dir": str(src), "args": b.args,
        "inputs": {
            "blob": {"type": "uri", "uri": "azureml://datastores/x/paths/y"},
            "cars": {"type": "data_asset", "name": "cars", "version": "latest", "mode": "ro_mount", "data_type": None},
            "cars2": {"type": "data_asset", "name": "cars", "version": "2", "mode": "download",
                      "data_type": "uri_file"},
            "p": {"type": "path", "path": os.path.abspath("data.csv")},
            "raw": {"type": "path", "path": str(src / "data.csv")},
            "u": {"type": "uri", "uri": "wasbs://c@a.blob/x"},
            "web": {"type": "uri", "uri": "HTTPS://example.org/x.csv"},
        },
        "outputs": ["model"], "environment": {"name": "x"}, "compute": "gpu", "allow_reuse": False,
        "step_type": "estimator", "env": b.env, "files": ["data.csv", "sub/c.R"], "register": {"model": "cars-model"},
    }
    assert "register" not in out["steps"][1]
    assert out["steps"][1]["inputs"] == {"m": {"type": "step_output", "step": "b", "output": "model"}}
    assert validate(out).to_json() == out  # what submit records validates to itself


def test_every_data_type_and_an_empty_environment(src):
    for data_type in ("uri_folder", "uri_file", "mltable"):
        p = validate(one(src, inputs={"d": {"type": "data_asset", "name": "cars", "data_type": data_type}}))
        assert p.step("a").inputs["d"].data_type == data_type
    assert validate(dict(one(src), environment={})).environment is None
    assert validate(dict(one(src), environment={"name": "e"})).environment == {"name": "e"}


def test_without_path_checks_missing_files_pass_but_escapes_do_not(src):
    spec = one(src, script="none.R", source_dir=str(src / "nope"), files=["x.csv"])
    assert validate(spec, check_paths=False).step("a").files == ["x.csv"]
    with pytest.raises(InvalidSpec):
        validate(one(src, script="../a.R"), check_paths=False)


@pytest.mark.parametrize("raw, name", [("Fit Model.R", "fit_model"), ("2fit.r", "step_2fit"), ("", "step_"),
                                       ("dir/Über.R", "_ber"), ("x" * 300, "x" * 255), ("a.Rmd", "a_rmd")])
def test_suggest_name(raw, name):
    assert suggest_name(raw) == name


def test_topological_order_is_stable(src):
    p = validate({"name": "p", "steps": [
        {"name": n, "script": "a.R", "source_dir": str(src)} for n in ("c", "a", "b")]})
    assert [s.name for s in p.steps] == ["c", "a", "b"]
    assert [s.name for s in topological_order(list(reversed(p.steps)))] == ["b", "a", "c"]
