"""The one validator every backend relies on."""

import pytest


from amlr.errors import InvalidSpec
from amlr.spec import find_cycle, suggest_name, validate


@pytest.fixture
def src(tmp_path):
    for name in ("prepare.R", "train.R", "report.R"):
        (tmp_path / name).write_text("cat('x')\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    return tmp_path


def step(src, name, script=None, **kw):
    out = {"name": name, "script": script or f"{name}.R", "source_dir": str(src)}
    out.update(kw)
    return out


def ref(step_name, output):
    return {"type": "step_output", "step": step_name, "output": output}


def test_valid_pipeline_is_ordered_by_dependencies(src):
    spec = {
        "name": "cars",
        "steps": [
            step(src, "report", inputs={"model": ref("train", "model")}),
            step(src, "train", inputs={"data": ref("prepare", "data")}, outputs=["model"]),
            step(src, "prepare", outputs="data", inputs={"raw": str(src / "data.csv")}),
        ],
    }
    p = validate(spec)
    assert [s.name for s in p.steps] == ["prepare", "train", "report"]
    assert p.step("prepare").outputs == ["data"]  # a scalar from R's auto_unbox becomes a list
    assert p.step("prepare").inputs["raw"].kind == "path"
    assert p.downstream() == {"prepare": ["train"], "train": ["report"], "report": []}


def test_duplicate_step_names_name_the_field(src):
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, "train"), step(src, "train")]})
    assert err.value.field == "steps[train].name"
    assert "unique" in err.value.message


def test_unknown_step_in_output_of(src):
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, "train", inputs={"data": ref("prep", "data")})]})
    assert err.value.field == "steps[train].inputs.data"
    assert "no step `prep`" in err.value.message


def test_unknown_output_in_output_of(src):
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [
            step(src, "prepare", outputs=["data"]),
            step(src, "train", inputs={"data": ref("prepare", "dat")}),
        ]})
    assert "no such output" in err.value.message and "data" in err.value.message


def test_cycle_is_named(src):
    spec = {"name": "p", "steps": [
        step(src, "prepare", inputs={"m": ref("report", "r")}, outputs=["data"]),
        step(src, "train", inputs={"data": ref("prepare", "data")}, outputs=["model"]),
        step(src, "report", inputs={"model": ref("train", "model")}, outputs=["r"]),
    ]}
    with pytest.raises(InvalidSpec) as err:
        validate(spec)
    assert err.value.field == "steps"
    assert err.value.message == (
        "The steps form a cycle: prepare -> report -> train -> prepare. Remove one of these output_of() links.")


def test_a_name_used_as_input_and_output_is_refused(src):
    """A step whose input and output share a name would bind one path to both (outputs overwrite inputs)."""
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [
            step(src, "prepare", inputs={"data": str(src / "data.csv")}, outputs=["data"])]})
    assert err.value.field == "steps[prepare].outputs"
    assert err.value.message == "Step `prepare` uses `data` both as an input and an output name; rename one."
    # the same names on different steps are fine
    p = validate({"name": "p", "steps": [
        step(src, "prepare", inputs={"data": str(src / "data.csv")}, outputs=["clean"]),
        step(src, "train", inputs={"clean": ref("prepare", "clean")}, outputs=["data"])]})
    assert [s.name for s in p.steps] == ["prepare", "train"]


def test_find_cycle_closed_path():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": [], "b": ["a"]}) is None


@pytest.mark.parametrize("bad", ["Train", "1step", "my-step", "a b", ""])
def test_invalid_step_names(src, bad):
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, bad, script="train.R")]})
    assert "name" in err.value.field


def test_invalid_name_suggests_a_fix(src):
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, "Train-Model", script="train.R")]})
    assert 'name = "train_model"' in err.value.message
    assert suggest_name("01 Prepare.R") == "step_01_prepare"


def test_script_outside_source_dir(src, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "x.R").write_text("1\n")
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, "x", script="../" + other.name + "/x.R")]})
    assert err.value.field == "steps[x].script"
    assert "inside its source_dir" in err.value.message


def test_missing_script_and_input(src):
    with pytest.raises(InvalidSpec, match="does not exist"):
        validate({"name": "p", "steps": [step(src, "nope")]})
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, "train", inputs={"data": str(src / "missing.csv")})]})
    assert err.value.field == "steps[train].inputs.data"


def test_uri_inputs_are_not_checked_on_disk(src):
    p = validate({"name": "p", "steps": [step(src, "train", inputs={"data": "azureml://datastores/x/paths/y"})]})
    assert p.steps[0].inputs["data"].kind == "uri"


def test_relative_input_paths_become_absolute(src, monkeypatch):
    monkeypatch.chdir(src)
    p = validate({"name": "p", "steps": [step(src, "train", inputs={"data": "data.csv"})]})
    assert p.steps[0].inputs["data"].path == str(src / "data.csv")


def test_round_trip_through_json(src):
    spec = {"name": "p", "steps": [
        step(src, "prepare", outputs=["data"]),
        step(src, "train", inputs={"data": ref("prepare", "data")}, args=["--n", "3"]),
    ]}
    p = validate(spec)
    again = validate(p.to_json())
    assert again.to_json() == p.to_json()


def test_empty_and_malformed(src):
    with pytest.raises(InvalidSpec, match="no steps"):
        validate({"name": "p", "steps": []})
    with pytest.raises(InvalidSpec):
        validate({"name": "bad name!", "steps": [step(src, "train")]})
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, "train", allow_reuse="yes")]})
    assert err.value.field == "steps[train].allow_reuse"


# -- details a silent change would break (found by mutation testing, docs/mutation.md) ---------------


def test_an_empty_env_from_r_is_no_variables(src):
    for empty in ([], {}, None):
        p = validate({"name": "p", "steps": [step(src, "train", env=empty)]})
        assert p.step("train").env == {}


def test_a_field_of_the_wrong_type_is_named_exactly(src):
    with pytest.raises(InvalidSpec) as err:
        validate({"name": 5, "steps": [step(src, "train")]})
    assert err.value.field == "name"
    with pytest.raises(InvalidSpec) as err:
        validate({"name": "p", "steps": [step(src, "train", compute=["a", "b"])]})
    assert err.value.field == "steps[train].compute"


def test_asking_a_pipeline_for_a_step_it_lacks_names_the_step(src):
    p = validate({"name": "p", "steps": [step(src, "train")]})
    with pytest.raises(KeyError) as err:
        p.step("nope")
    assert err.value.args == ("nope",)


def test_the_order_of_steps_refuses_a_cycle_by_itself_too(src):
    from amlr.spec import Input, topological_order

    p = validate({"name": "p", "steps": [step(src, "prepare", outputs=["d"]), step(src, "train", outputs=["m"])]})
    a, b = p.step("prepare"), p.step("train")
    a.inputs = {"m": Input("step_output", step="train", output="m")}
    b.inputs = {"d": Input("step_output", step="prepare", output="d")}
    with pytest.raises(InvalidSpec) as err:
        topological_order([a, b])
    assert (err.value.field, err.value.message) == ("steps", "The steps form a cycle.")


def test_a_collector_waits_for_its_inputs_and_its_members(src):
    p = validate({"name": "p", "steps": [step(src, "prepare", outputs=["d"]),
                                         step(src, "train", inputs={"d": ref("prepare", "d")})]})
    s = p.step("train")
    s.fanout = {"role": "gather", "members": [{"step": "t_2"}, {"step": "t_1"}]}
    assert s.upstream() == ["prepare", "t_1", "t_2"]
