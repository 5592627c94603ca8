"""export_pipeline(): the Azure ML v2 pipeline job YAML (and the JSON spec).

The YAML is checked the way Azure ML would read it: azure-ai-ml's own
``load_job`` and its offline validation, plus what that validation does not
check (each command only names ports its job declares; every output_of()
link points at a real output). A golden file guards the shape; the snapshot
hashes and environment versions in it are normalised.
"""
import json
import os
import re
import shlex

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON_DIR = os.path.join(REPO, "inst", "python")

import yaml  # noqa: E402  (PyYAML comes with azure-ai-ml)

from amlr import api, bootstrapper  # noqa: E402
from amlr.errors import AmlrError, FileExists, InvalidSpec  # noqa: E402
from amlr.export import MARKER, dump_yaml, export_pipeline, sibling_folders  # noqa: E402
from amlr.spec import validate  # noqa: E402

GOLDEN = os.path.join(HERE, "golden")
EXAMPLES_PIPELINE = os.path.join(REPO, "examples", "pipeline")
EXAMPLES_HELLO = os.path.join(REPO, "examples", "hello")
REGISTRY_PASSWORD = "pw-7f3c9a1e-registry-secret"
CLIENT_SECRET = "cs-41d2b8e0-client-secret"


# -- fixture pipelines (also used by test_backend_azureml_v2.py) ---------------------------------


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def hello_spec(root):
    """One step, amlr's default environment (docker/Dockerfile, built by Azure ML)."""
    src = os.path.join(str(root), "hello")
    write(os.path.join(src, "hello.R"), 'cat("Hello from", R.version.string, "\\n")\n')
    return {"name": "hello", "steps": [{"name": "hello", "script": "hello.R", "source_dir": src,
                                         "args": ["amlr user"]}]}


def multi_step_spec(root):
    """prepare -> (train, summarise) -> report, with every kind of input.

    prepare reads a local file and a local folder; report reads a datastore
    URI; summarise runs in its own Dockerfile environment with CRAN packages
    and may not be reused; the others use a prebuilt image from a private
    registry; train has its own compute, the rest the pipeline default.
    """
    proj = os.path.join(str(root), "proj")
    write(os.path.join(proj, "prepare.R"), 'd <- read.csv(amlr::step_input("raw"))\n'
          'write.csv(d, file.path(amlr::step_output("data"), "d.csv"))\n')
    write(os.path.join(proj, "train.R"), 'amlr::log_metric("rmse", 0.5)\n')
    write(os.path.join(proj, "summarise.R"), 'print(summary(1:10))\n')
    write(os.path.join(proj, "report.R"), 'cat(commandArgs(TRUE), "\\n")\n')
    write(os.path.join(proj, "data", "raw.csv"), "x,y\n1,2\n")
    write(os.path.join(proj, "lookup", "codes.csv"), "code\nA\n")
    write(os.path.join(proj, ".Renviron"), f"AMLR_REGISTRY_PASSWORD={REGISTRY_PASSWORD}\n")
    envdir = os.path.join(str(root), "env")
    write(os.path.join(envdir, "install.R"), 'cat("installing", commandArgs(TRUE), "\\n")\n')
    dockerfile = write(os.path.join(envdir, "Dockerfile"), (
        "FROM rocker/r-ver:4.4.1\n"
        "ARG CRAN_PACKAGES=\"\"\n"
        "COPY install.R /tmp/install.R\n"
        "RUN Rscript /tmp/install.R ${CRAN_PACKAGES}\n"
    ))
    registry = {"address": "myacr.azurecr.io", "username": "myacr", "password_env": "AMLR_REGISTRY_PASSWORD"}
    data_ref = {"type": "step_output", "step": "prepare", "output": "data"}
    return {
        "name": "cars",
        "description": "Prepare: fit a model, summarise; then report",
        "compute": "cpu-cluster",
        "environment": {"image": "myacr.azurecr.io/amlr-r:4.4.1", "registry": registry},
        "steps": [
            {"name": "prepare", "script": "prepare.R", "source_dir": proj,
             "inputs": {"raw": os.path.join(proj, "data", "raw.csv"), "lookup": os.path.join(proj, "lookup")},
             "outputs": ["data"]},
            {"name": "train", "script": "train.R", "source_dir": proj, "compute": "gpu-cluster",
             "inputs": {"data": data_ref}, "outputs": ["model"]},
            {"name": "summarise", "script": "summarise.R", "source_dir": proj, "allow_reuse": False,
             "inputs": {"data": data_ref}, "outputs": ["summary"],
             "environment": {"dockerfile": dockerfile, "cran_packages": ["zoo", "DBI"]}},
            {"name": "report", "script": "report.R", "source_dir": proj, "args": ["Fuel use", "--digits=3"],
             "inputs": {"model": {"type": "step_output", "step": "train", "output": "model"},
                        "summary": {"type": "step_output", "step": "summarise", "output": "summary"},
                        "reference": "azureml://datastores/workspaceblobstore/paths/reference/"},
             "outputs": ["report"]},
        ],
    }


def examples_pipeline_spec(root):
    """examples/pipeline/pipeline.R, spelled as the spec R sends (a prebuilt image)."""
    d = EXAMPLES_PIPELINE
    data = {"type": "step_output", "step": "prepare", "output": "data"}
    return {
        "name": "cars",
        "description": "Prepare mtcars, fit a model and summarise in parallel, write a report",
        "environment": {"image": "myacr.azurecr.io/amlr-r:4.4.1"},
        "steps": [
            {"name": "prepare", "script": "prepare.R", "source_dir": d, "outputs": ["data"]},
            {"name": "train", "script": "train.R", "source_dir": d, "inputs": {"data": data}, "outputs": ["model"]},
            {"name": "summarise", "script": "summarise.R", "source_dir": d, "inputs": {"data": data},
             "outputs": ["summary"]},
            {"name": "report", "script": "report.R", "source_dir": d, "args": ["Fuel use of 32 cars"],
             "inputs": {"model": {"type": "step_output", "step": "train", "output": "model"},
                        "summary": {"type": "step_output", "step": "summarise", "output": "summary"}},
             "outputs": ["report"]},
        ],
    }


def examples_hello_spec(root):
    """examples/hello/hello.R as r_step() sends it, in amlr's default environment."""
    return {"name": "hello", "steps": [{"name": "hello", "script": "hello.R", "source_dir": EXAMPLES_HELLO,
                                         "args": ["amlr user"]}]}


FIXTURES = {"hello": hello_spec, "multi_step": multi_step_spec}
if os.path.isfile(os.path.join(EXAMPLES_HELLO, "hello.R")):
    FIXTURES["examples_hello"] = examples_hello_spec
if os.path.isdir(EXAMPLES_PIPELINE):
    FIXTURES["examples_pipeline"] = examples_pipeline_spec


def export_fixture(name, root, **kwargs):
    pipeline = validate(FIXTURES[name](root))
    out = os.path.join(str(root), "out")
    os.makedirs(out, exist_ok=True)
    return export_pipeline(pipeline, os.path.join(out, f"{name}.yml"), **kwargs)


def load_yaml(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def component_view(job):
    """What a job runs, whether written short or with an inline component."""
    return job.get("component", job)


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("AMLR_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)


# -- azure-ai-ml accepts it ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_exported_yaml_loads_and_passes_azure_ai_ml_validation(tmp_path, name, secrets_env):
    from azure.ai.ml import load_job
    from azure.ai.ml.entities import PipelineJob

    result = export_fixture(name, tmp_path)
    job = load_job(result.path)
    assert isinstance(job, PipelineJob)
    validation = job._validate()
    assert validation.passed, str(validation)
    spec = FIXTURES[name](tmp_path)
    assert list(job.jobs) == [s.name for s in validate(spec).steps]
    for step in spec["steps"]:
        node = job.jobs[step["name"]]
        code = os.path.join(os.path.dirname(result.path), node.component.code)
        assert os.path.isfile(os.path.join(code, "_amlr", "bootstrapper.py"))
        assert os.path.isfile(os.path.join(code, step["script"]))
        assert node.component.is_deterministic is step.get("allow_reuse", True)


def test_multi_step_yaml_spells_inputs_compute_and_environments(tmp_path, secrets_env):
    result = export_fixture("multi_step", tmp_path)
    doc = load_yaml(result.path)
    jobs = doc["jobs"]
    assert doc["settings"] == {"default_compute": "azureml:cpu-cluster"}
    assert jobs["train"]["compute"] == "azureml:gpu-cluster"
    assert "compute" not in jobs["prepare"]
    assert jobs["prepare"]["inputs"] == {
        "lookup": {"type": "uri_folder", "path": "../proj/lookup"},
        "raw": {"type": "uri_file", "path": "../proj/data/raw.csv"},
    }
    assert jobs["report"]["inputs"]["reference"] == {
        "type": "uri_folder", "path": "azureml://datastores/workspaceblobstore/paths/reference/"}
    assert jobs["report"]["inputs"]["model"] == "${{parent.jobs.train.outputs.model}}"
    assert jobs["train"]["environment"] == {"image": "myacr.azurecr.io/amlr-r:4.4.1"}
    build = component_view(jobs["summarise"])["environment"]["build"]["path"]
    context = os.path.normpath(os.path.join(os.path.dirname(result.path), build))
    assert context.startswith(sibling_folders(result.path)[1] + os.sep)
    with open(os.path.join(context, "Dockerfile"), encoding="utf-8") as fh:
        assert 'ARG CRAN_PACKAGES="DBI zoo"' in fh.read()
    assert os.path.isfile(os.path.join(context, "install.R"))
    # One code folder per job (its own code identity, so Azure ML reuses the unchanged ones).
    assert len({component_view(j)["code"] for j in jobs.values()}) == 4
    # The registry is private: the export says that Azure ML needs its own access.
    assert any("myacr.azurecr.io" in w for w in result.warnings)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_command_references_only_ports_its_job_declares(tmp_path, name, secrets_env):
    result = export_fixture(name, tmp_path)
    doc = load_yaml(result.path)
    spec = {s.name: s for s in validate(FIXTURES[name](tmp_path)).steps}
    for job_name, job in doc["jobs"].items():
        body = component_view(job)
        command = body["command"]
        used_in = set(re.findall(r"\$\{\{inputs\.(\w+)\}\}", command))
        used_out = set(re.findall(r"\$\{\{outputs\.(\w+)\}\}", command))
        assert used_in == set(job.get("inputs", {})) == set(body.get("inputs", job.get("inputs", {})))
        assert used_out == set(job.get("outputs", {}))
        assert not re.search(r"\$\{\{(?!inputs\.|outputs\.)", command), command
        # The command is what the bootstrapper parses: the step's contract and its ports, no shell text;
        # the contract in the job's code folder has the step's script and args.
        argv = command.split(" ")
        assert argv == shlex.split(command)
        assert argv[:2] == ["python", "_amlr/bootstrapper.py"]
        opts = bootstrapper.parse_args(argv[2:])
        step = spec[job_name]
        assert opts.step == f"_amlr/steps/{job_name}.json"
        assert opts.inputs == {n: "${{inputs.%s}}" % n for n in step.inputs}
        assert opts.outputs == {n: "${{outputs.%s}}" % n for n in step.outputs}
        code = os.path.join(os.path.dirname(result.path), body["code"])
        with open(os.path.join(code, opts.step), encoding="utf-8") as fh:
            contract = json.load(fh)
        assert (contract["script"], contract["args"], contract["metrics_sink"]) == (step.script, step.args, "mlflow")


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_output_of_links_point_at_declared_outputs(tmp_path, name, secrets_env):
    doc = load_yaml(export_fixture(name, tmp_path).path)
    jobs = doc["jobs"]
    links = 0
    for job in jobs.values():
        for value in job.get("inputs", {}).values():
            if isinstance(value, str):
                m = re.fullmatch(r"\$\{\{parent\.jobs\.(\w+)\.outputs\.(\w+)\}\}", value)
                assert m, value
                assert m.group(2) in jobs[m.group(1)]["outputs"]
                links += 1
    spec = FIXTURES[name](tmp_path)
    expected = sum(isinstance(v, dict) and v.get("type") == "step_output"
                   for s in spec["steps"] for v in s.get("inputs", {}).values())
    assert links == expected


# -- the shape, stable ----------------------------------------------------------------------


def normalised(text):
    text = re.sub(r"_snapshots/[0-9a-f]{12}", "_snapshots/<snapshot>", text)
    return re.sub(r"_environments/[0-9a-f]{12}", "_environments/<environment>", text)


@pytest.mark.parametrize("name", ["hello", "multi_step"])
def test_golden_yaml(tmp_path, name, secrets_env):
    """Set AMLR_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change."""
    with open(export_fixture(name, tmp_path).path, encoding="utf-8") as fh:
        got = normalised(fh.read())
    golden = os.path.join(GOLDEN, f"{name}.yml")
    if os.environ.get("AMLR_UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(golden, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(got)
    with open(golden, encoding="utf-8") as fh:
        assert got == fh.read()


def tree(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_same_pipeline_gives_byte_identical_files(tmp_path, name, secrets_env):
    first = export_fixture(name, tmp_path)
    before = tree(os.path.dirname(first.path))
    again = export_fixture(name, tmp_path, overwrite=True)
    assert tree(os.path.dirname(again.path)) == before
    assert again.files == first.files
    # From another folder at the same depth the bytes are the same too.
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = export_pipeline(validate(FIXTURES[name](tmp_path)), str(other / f"{name}.yml"))
    assert tree(str(other)) == before
    assert [os.path.relpath(f, str(other)) for f in moved.files] == \
        [os.path.relpath(f, os.path.dirname(first.path)) for f in first.files]


def test_no_secret_reaches_any_exported_file(tmp_path, secrets_env):
    result = export_fixture("multi_step", tmp_path)
    out = os.path.dirname(result.path)
    written = tree(out)
    assert any(name.endswith(".yml") for name in written)
    for name, data in written.items():
        for secret in (REGISTRY_PASSWORD, CLIENT_SECRET):
            assert secret.encode() not in data, f"{secret} leaked into {name}"
    assert not any(os.path.basename(n) == ".Renviron" for n in written)
    assert "AMLR_REGISTRY_PASSWORD" not in written[os.path.basename(result.path)].decode()


# -- files: overwrite, layout, errors -----------------------------------------------------------


def test_refuses_to_overwrite_unless_asked(tmp_path):
    first = export_fixture("hello", tmp_path)
    with open(first.path, "a", encoding="utf-8") as fh:
        fh.write("# my edit\n")
    with pytest.raises(FileExists) as err:
        export_fixture("hello", tmp_path)
    assert err.value.kind == "file_exists" and "overwrite = TRUE" in err.value.message
    with open(first.path, encoding="utf-8") as fh:
        assert fh.read().endswith("# my edit\n")
    export_fixture("hello", tmp_path, overwrite=True)
    with open(first.path, encoding="utf-8") as fh:
        assert "# my edit" not in fh.read()


def test_overwrite_never_deletes_a_folder_export_did_not_write(tmp_path):
    out = tmp_path / "out"
    mine = out / "hello_snapshots"
    mine.mkdir(parents=True)
    (mine / "precious.txt").write_text("keep me")
    with pytest.raises(FileExists) as err:
        export_fixture("hello", tmp_path, overwrite=True)
    assert "was not written by export_pipeline()" in err.value.message
    assert (mine / "precious.txt").read_text() == "keep me"
    assert not (out / "hello.yml").exists()


def test_old_snapshots_are_replaced_on_overwrite(tmp_path):
    spec = hello_spec(tmp_path)
    path = str(tmp_path / "hello.yml")
    export_pipeline(validate(spec), path)
    snapshots = sibling_folders(path)[0]
    old = [d for d in os.listdir(snapshots) if d != MARKER]
    with open(os.path.join(spec["steps"][0]["source_dir"], "hello.R"), "a", encoding="utf-8") as fh:
        fh.write("cat('changed\\n')\n")
    export_pipeline(validate(spec), path, overwrite=True)
    new = [d for d in os.listdir(snapshots) if d != MARKER]
    assert len(new) == 1 and new != old


def test_exporting_into_the_steps_own_folder_does_not_package_the_export(tmp_path):
    spec = hello_spec(tmp_path)
    src = spec["steps"][0]["source_dir"]
    path = os.path.join(src, "hello.yml")
    first = export_pipeline(validate(spec), path)
    before = tree(src)
    export_pipeline(validate(spec), path, overwrite=True)
    assert tree(src) == before
    snapshot, = [f for f in first.files if "_snapshots" in f]
    assert sorted(tree(snapshot)) == [".amlignore", os.path.join("_amlr", "bootstrapper.py"),
                                      os.path.join("_amlr", "stepmetrics.py"),
                                      os.path.join("_amlr", "steps", "hello.json"), "hello.R"]


def test_a_failed_overwrite_puts_the_previous_export_back(tmp_path):
    spec = hello_spec(tmp_path)
    path = str(tmp_path / "hello.yml")
    export_pipeline(validate(spec), path)
    before = tree(str(tmp_path))
    spec["steps"][0]["inputs"] = {"data": write(os.path.join(str(tmp_path), "hello", "a@b.csv"), "x\n")}
    with pytest.raises(InvalidSpec):
        export_pipeline(validate(spec), path, overwrite=True)
    after = tree(str(tmp_path))
    after.pop(os.path.join("hello", "a@b.csv"))
    assert after == before


def test_a_local_input_azure_ml_would_read_as_an_asset_is_refused(tmp_path):
    spec = hello_spec(tmp_path)
    weird = write(os.path.join(str(tmp_path), "hello", "data@v2.csv"), "x\n1\n")
    spec["steps"][0]["inputs"] = {"data": weird}
    with pytest.raises(InvalidSpec) as err:
        export_pipeline(validate(spec), str(tmp_path / "p.yml"))
    assert err.value.field == "steps[hello].inputs.data"
    assert not (tmp_path / "p.yml").exists() and not (tmp_path / "p_snapshots").exists()


def test_unknown_format_and_missing_folder_are_bad_requests(tmp_path):
    pipeline = validate(hello_spec(tmp_path))
    with pytest.raises(AmlrError) as err:
        export_pipeline(pipeline, str(tmp_path / "p.yml"), "cwl")
    assert err.value.kind == "bad_request"
    with pytest.raises(AmlrError) as err:
        export_pipeline(pipeline, str(tmp_path / "nope" / "p.yml"))
    assert err.value.kind == "bad_request"


def test_json_format_writes_the_validated_spec_relative_to_the_file(tmp_path, monkeypatch):
    spec = multi_step_spec(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = export_pipeline(validate(spec), str(out / "cars.json"), "json")
    assert result.files == [str(out / "cars.json")]
    with open(result.path, encoding="utf-8") as fh:
        doc = json.load(fh)
    assert [s["name"] for s in doc["steps"]] == ["prepare", "train", "summarise", "report"]
    assert {s["source_dir"] for s in doc["steps"]} == {"../proj"}
    assert doc["steps"][0]["inputs"]["raw"] == {"type": "path", "path": "../proj/data/raw.csv"}
    assert doc["steps"][2]["environment"]["dockerfile"] == "../env/Dockerfile"
    # Resolved against the file's folder, it is the same pipeline again.
    monkeypatch.chdir(str(out))
    again = validate(doc).to_json()
    dockerfile = again["steps"][2]["environment"].pop("dockerfile")
    assert os.path.samefile(dockerfile, spec["steps"][2]["environment"]["dockerfile"])
    original = validate(spec).to_json()
    original["steps"][2]["environment"].pop("dockerfile")
    assert again == original
    with pytest.raises(FileExists):
        export_pipeline(validate(spec), str(out / "cars.json"), "json")


def test_bridge_method_exports_and_classes_its_errors(tmp_path):
    spec = hello_spec(tmp_path)
    path = str(tmp_path / "hello.yml")
    request = {"method": "export", "params": {"spec": spec, "path": path, "format": "azureml_v2"}}
    out = json.loads(api.handle_json(json.dumps(request)))
    assert out["result"]["path"] == path
    assert out["result"]["files"][0] == path and len(out["result"]["files"]) == 3  # yml, snapshot, context
    again = json.loads(api.handle_json(json.dumps(request)))
    assert again["error"]["class"] == "file_exists"
    request["params"]["overwrite"] = True
    assert "result" in json.loads(api.handle_json(json.dumps(request)))


# -- the YAML emitter -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "plain", "with space", "a: b", "a #b", "#x", "-x", "- x", "yes", "No", "null", "~", "on", "1", "1.5", "0x1F",
    "1e3", ".5", ".inf", "2024-01-01", "1:30", "${{inputs.data}}", "./path/to file.csv", "trailing ", " leading",
    "quote's", '"dq"', "tab\there", "new\nline", "uni\u00e9code", "ls\u2028sep", "del\x7f", "", "*alias", "&anchor",
    "!tag", "[x]", "{x}", "%x", "@x", "`x", "|x", ">x", "?x", "=", "<<", "azureml:cpu", "a,b", "back\\slash",
])
def test_yaml_scalars_read_back_as_the_same_string(text):
    assert yaml.safe_load(dump_yaml({"k": text})) == {"k": text}
    assert yaml.safe_load(dump_yaml({text or "empty": 1})) == {text or "empty": 1}


def test_yaml_nested_documents_read_back():
    doc = {"$schema": "https://x/y.json", "a": {"b": {"c": True, "d": None, "e": 3, "f": 1.25}, "g": {}},
           "h": [], "i": ["x", "y: z"]}
    assert yaml.safe_load(dump_yaml(doc)) == doc


def test_step_env_is_exported_as_environment_variables(tmp_path):
    spec = hello_spec(tmp_path)
    spec["steps"][0]["env"] = {"N_TREES": "500", "MODE": "it's \"quoted\""}
    result = export_pipeline(validate(spec), str(tmp_path / "hello.yml"))
    job = load_yaml(result.path)["jobs"]["hello"]
    assert component_view(job)["environment_variables"] == {"MODE": "it's \"quoted\"", "N_TREES": "500"}


def test_editing_one_script_changes_only_that_jobs_code(tmp_path):
    """Per-step code folders: Azure ML uploads (and re-runs) only the step whose code changed."""
    from amlr.backends import azureml_v2

    spec = multi_step_spec(tmp_path)

    def codes(tag):
        plan = azureml_v2.stage(validate(spec), snapshots_dir=str(tmp_path / tag / "s"),
                                environments_dir=str(tmp_path / tag / "e"), experiment_name="x")
        return {n.name: os.path.basename(n.code) for n in plan.nodes}

    before = codes("a")
    assert codes("b") == before
    step = next(s for s in spec["steps"] if s["name"] == "train")
    script = os.path.join(step["source_dir"], step["script"])
    with open(script, "a", encoding="utf-8") as fh:
        fh.write("# tuned\n")
    after = codes("c")
    assert {n for n in before if before[n] != after[n]} == {"train"}
