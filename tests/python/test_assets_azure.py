"""Data assets and models on Azure ML, offline against the real SDK classes.

azureml_v2: ``aml_data()`` becomes an azure-ai-ml ``Input`` of path
``azureml:<name>:<version>`` (``@latest``) with its type and mode, a
registered output an ``Output`` with a name; the exported YAML says the same
and passes azure-ai-ml's ``load_job`` validation. Models are azure-ai-ml
``Model`` entities on the job's output. The classic backend binds the
registered ``Dataset`` (``as_named_input().as_mount()/as_download()``) and
registers outputs through ``PipelineData.as_dataset().register()``. Only the
calls that would reach Azure are faked (a client that records them).
"""
import json
import os
from types import SimpleNamespace

import pytest

from test_export import hello_spec, load_yaml, write
from amlr import assets
from amlr.backends import azureml_v2 as v2
from amlr.export import export_pipeline
from amlr.registry import Registry
from amlr.spec import validate
from amlr.store import Store

WORKSPACE = {"subscription_id": "sub-0001", "resource_group": "rg-amlr", "workspace_name": "ws-amlr", "auth": "cli"}


def data_spec(root, *, version="latest", mode="ro_mount", data_type=None, register=True):
    """hello's image environment; train reads a data asset, registers its model; score reads the model."""
    spec = hello_spec(root)
    src = os.path.join(str(root), "proj")
    write(os.path.join(src, "train.R"), "cat('train')\n")
    write(os.path.join(src, "score.R"), "cat('score')\n")
    cars = {"type": "data_asset", "name": "cars", "version": version, "mode": mode}
    if data_type:
        cars["data_type"] = data_type
    train = {"name": "train", "script": "train.R", "source_dir": src, "inputs": {"cars": cars},
             "outputs": ["model"], "environment": spec.get("environment")}
    if register:
        train["register"] = {"model": "cars-model"}
    score = {"name": "score", "script": "score.R", "source_dir": src, "outputs": ["scores"],
             "inputs": {"model": {"type": "step_output", "step": "train", "output": "model"}},
             "environment": spec.get("environment")}
    return {"name": "cars", "compute": "cpu-cluster", "environment": {"image": "rocker/r-ver:4.4.1"},
            "steps": [train, score]}


# -- azureml_v2: the plan and the azure-ai-ml job ----------------------------------------------------


@pytest.mark.parametrize("version, mode, data_type, path", [
    ("latest", "ro_mount", None, "azureml:cars@latest"),
    ("2", "download", "uri_file", "azureml:cars:2"),
    ("2024.1", "ro_mount", "mltable", "azureml:cars:2024.1"),
])
def test_plan_input_spells_the_asset_with_type_and_mode(tmp_path, version, mode, data_type, path):
    step = validate(data_spec(tmp_path, version=version, mode=mode, data_type=data_type)).step("train")
    got = v2.plan_input(step, "cars")
    assert (got.kind, got.type, got.path, got.mode) == ("asset", data_type or "uri_folder", path, mode)


def test_the_pipeline_job_reads_the_asset_and_names_the_registered_output(tmp_path):
    from azure.ai.ml import Input, Output
    from azure.ai.ml.entities import PipelineJob

    plan = v2.stage(validate(data_spec(tmp_path, version="3", mode="download")),
                    snapshots_dir=str(tmp_path / "snap"), environments_dir=str(tmp_path / "env"),
                    experiment_name="cars")
    job = v2.to_azure_job(plan)
    assert isinstance(job, PipelineJob)
    train = job.jobs["train"]
    cars = train.inputs["cars"]._data
    assert isinstance(cars, Input)
    assert (cars.type, cars.path, cars.mode) == ("uri_folder", "azureml:cars:3", "download")
    model = train.outputs["model"]._data
    assert isinstance(model, Output) and (model.type, model.name) == ("uri_folder", "cars-model")
    assert getattr(job.jobs["score"].outputs["scores"]._data, "name", None) is None
    assert job._validate().passed
    # What the job document carries: the asset reference and the output's asset name.
    body = json.dumps(job._to_dict(), default=str)
    assert "azureml:cars:3" in body and "cars-model" in body


def test_export_writes_the_same_reference_and_azure_ai_ml_loads_it(tmp_path):
    from azure.ai.ml import load_job

    out = tmp_path / "export"
    out.mkdir()
    result = export_pipeline(validate(data_spec(tmp_path, version="2", mode="download", data_type="uri_file")),
                             str(out / "cars.yml"))
    doc = load_yaml(result.path)
    train = doc["jobs"]["train"]
    assert train["inputs"]["cars"] == {"type": "uri_file", "path": "azureml:cars:2", "mode": "download"}
    assert train["outputs"]["model"] == {"type": "uri_folder", "name": "cars-model"}
    assert doc["jobs"]["score"]["outputs"]["scores"] == {"type": "uri_folder"}
    job = load_job(result.path)
    assert job._validate().passed, str(job._validate())
    loaded = job.jobs["train"]
    assert loaded.inputs["cars"]._data.path in ("azureml:cars:2", "cars:2")  # load_job drops the prefix
    assert loaded.inputs["cars"]._data.mode == "download"
    assert loaded.outputs["model"]._data.name == "cars-model"


def test_export_of_latest_uses_azure_mls_latest_label(tmp_path):
    from azure.ai.ml import load_job

    out = tmp_path / "export"
    out.mkdir()
    result = export_pipeline(validate(data_spec(tmp_path, register=False)), str(out / "cars.yml"))
    assert load_yaml(result.path)["jobs"]["train"]["inputs"]["cars"]["path"] == "azureml:cars@latest"
    assert load_job(result.path)._validate().passed


def test_a_step_that_is_never_reused_keeps_the_output_name_off_its_inline_component(tmp_path):
    from azure.ai.ml import load_job

    spec = data_spec(tmp_path)
    spec["steps"][0]["allow_reuse"] = False
    out = tmp_path / "export"
    out.mkdir()
    result = export_pipeline(validate(spec), str(out / "cars.yml"))
    train = load_yaml(result.path)["jobs"]["train"]
    assert train["component"]["outputs"]["model"] == {"type": "uri_folder"}
    assert train["outputs"]["model"]["name"] == "cars-model"
    assert load_job(result.path)._validate().passed


# -- azureml_v2: models and data assets in the workspace --------------------------------------------


class FakeAssets:
    """``MLClient.models`` / ``MLClient.data``: records create_or_update, numbers versions as Azure ML does."""

    def __init__(self):
        self.created = []

    def create_or_update(self, entity):
        self.created.append(entity)
        return SimpleNamespace(name=entity.name, version=entity.version or str(len(self.created)))


def v2_run(tmp_path, home):
    reg = Registry(str(home))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "children.json").write_text(json.dumps({"train": "teal_hat_train"}))
    (run_dir / "job.json").write_text(json.dumps({"pipeline": validate(data_spec(tmp_path)).to_json()}))
    reg.insert_run({"id": "r-v2", "experiment": "cars", "pipeline": "cars", "backend": "azureml_v2",
                    "status": "Completed", "run_dir": str(run_dir), "remote_id": "teal_hat", "workspace": WORKSPACE},
                   [{"name": "train", "status": "Completed", "outputs": {"model": None}}])
    return reg


def test_model_entity_points_at_the_jobs_output_and_carries_the_lineage():
    from azure.ai.ml.entities import Model

    lineage = {"run": "r1", "step": "train", "fingerprint": "abc", "data_assets": [{"name": "cars", "version": "2"}]}
    model = assets.v2_model_entity("cars-model", None, "teal_hat_train", "model", "fit on cars", {"team": "risk"},
                                   lineage)
    assert isinstance(model, Model)
    assert (model.type, model.path) == ("custom_model", "azureml://jobs/teal_hat_train/outputs/model")
    assert model.tags == {"team": "risk"} and model.description == "fit on cars"
    assert json.loads(model.properties["amlr.data_assets"]) == [{"name": "cars", "version": "2"}]
    assert model.properties["amlr.fingerprint"] == "abc"
    assert model._validate().passed if hasattr(model, "_validate") else True


def test_register_model_from_a_v2_run_creates_an_azure_model_and_records_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    reg = v2_run(tmp_path, home)
    models = FakeAssets()
    for module in (v2, v2.client):
        monkeypatch.setattr(module, "connect", lambda info: SimpleNamespace(models=models, jobs=None))
    monkeypatch.setattr(v2, "refresh", lambda reg, run: run)
    out = assets.model_register({"home": str(home), "run": "r-v2", "step": "train", "output": "model",
                                 "name": "cars-model", "tags": {"team": "risk"}})
    [entity] = models.created
    assert entity.path == "azureml://jobs/teal_hat_train/outputs/model" and entity.type == "custom_model"
    assert (out["azure_id"], out["path"], out["backend"]) == ("azureml:cars-model:1", None, "azureml_v2")
    assert out["lineage"]["data_assets"] == [{"name": "cars", "version": "latest"}]
    assert out["lineage"]["remote_run"] == "teal_hat"
    assert [m.azure_id for m in Store(str(home)).list("model")] == ["azureml:cars-model:1"]
    assert reg.get_run("r-v2")["backend"] == "azureml_v2"


def test_register_data_on_azure_builds_a_data_entity_of_the_right_type(tmp_path):
    from azure.ai.ml.entities import Data

    folder = tmp_path / "cars"
    folder.mkdir()
    (folder / "cars.csv").write_text("mpg\n21\n")
    data = FakeAssets()
    store = Store(str(tmp_path / "home"))
    a = assets.register_data_azure(store, WORKSPACE, str(folder), "cars", None, "mtcars", "azureml_v2",
                                   client=SimpleNamespace(data=data))
    b = assets.register_data_azure(store, WORKSPACE, str(folder / "cars.csv"), "cars-file", "7", None, "azureml",
                                   client=SimpleNamespace(data=data))
    assert [type(e) for e in data.created] == [Data, Data]
    assert [(e.type, e.name) for e in data.created] == [("uri_folder", "cars"), ("uri_file", "cars-file")]
    assert (a.azure_id, b.azure_id) == ("azureml:cars:1", "azureml:cars-file:7")
    assert [x.name for x in store.list("data")] == ["cars", "cars-file"]


def test_download_data_brings_an_azure_asset_into_the_store_under_its_version(tmp_path):
    from azure.ai.ml.entities import Data

    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "cars.csv").write_text("mpg\n21\n")
    fetched = []

    def fetch(uri, folder):  # what download_artifact_from_aml_uri does: the files land in `folder`
        fetched.append(uri)
        for name in os.listdir(remote):
            with open(remote / name) as src, open(os.path.join(folder, name), "w") as dst:
                dst.write(src.read())

    store = Store(str(tmp_path / "home"))
    data = Data(name="cars", version="4", type="uri_folder",
                path="azureml://datastores/workspaceblobstore/paths/cars/")
    asset = assets.download_into_store(store, data, fetch)
    assert fetched == ["azureml://datastores/workspaceblobstore/paths/cars/"]
    assert (asset.name, asset.version, asset.source) == ("cars", "4", "azureml:cars:4")
    assert store.get("data", "cars", "4").path == asset.path
    assert os.path.isfile(os.path.join(asset.path, "cars.csv"))
    # Again: identical content, nothing new.
    assert assets.download_into_store(store, data, fetch).existing
    one = Data(name="table", version="1", type="uri_file",
               path="azureml://datastores/workspaceblobstore/paths/cars/cars.csv")
    got = assets.download_into_store(store, one, fetch)
    assert got.type == "uri_file" and os.path.basename(got.path) == "cars.csv"


def test_download_of_an_unknown_type_is_refused(tmp_path):
    bad = SimpleNamespace(name="x", version="1", type="custom", path="azureml://x")
    with pytest.raises(Exception, match="cannot bring down"):
        assets.download_into_store(Store(str(tmp_path / "home")), bad, lambda uri, folder: None)


# -- azureml (classic) --------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch):
    from test_backend_azureml import offline_seams

    ws, datastore = offline_seams(monkeypatch.setattr)
    return SimpleNamespace(workspace=ws, datastore=datastore)


def classic_build(offline, spec, tmp_path, datasets):
    from amlr.backends import azureml as v1

    plan = v1.plan_pipeline(validate(spec), str(tmp_path / "run"))

    def get_dataset(name, version):
        datasets.append((name, version))
        from azureml.core import Dataset
        from azureml.data.abstract_dataset import _DatasetRegistration

        # What Dataset.get_by_name returns: a saved, registered dataset (no request when bound).
        found = Dataset.File.from_files(path=(offline.datastore, f"{name}/"), validate=False)
        found._registration = _DatasetRegistration(offline.workspace, saved_id=f"saved-{name}",
                                                   registered_id=f"reg-{name}", name=name, version=version)
        return found

    return v1.build_pipeline(offline.workspace, plan, datastore=offline.datastore, input_paths={},
                             get_dataset=get_dataset)


@pytest.mark.parametrize("mode, expected", [("ro_mount", "mount"), ("download", "download")])
def test_classic_binds_the_registered_dataset_mounted_or_downloaded(offline, tmp_path, mode, expected):
    from azureml.data.dataset_consumption_config import DatasetConsumptionConfig

    asked = []
    built = classic_build(offline, data_spec(tmp_path, version="2", mode=mode), tmp_path, asked)
    assert asked == [("cars", "2")]
    port = built.inputs["train"]["cars"]
    assert isinstance(port, DatasetConsumptionConfig)
    assert (port.name, port.mode) == ("cars", expected)
    argv = built.argv["train"]
    assert argv[argv.index("cars") - 1:argv.index("cars") + 2] == ["--input", "cars", "$AZUREML_DATAREFERENCE_cars"]


def test_classic_registers_the_output_as_a_dataset_and_still_feeds_the_next_step(offline, tmp_path):
    from azureml.pipeline.core.pipeline_output_dataset import PipelineOutputFileDataset

    built = classic_build(offline, data_spec(tmp_path), tmp_path, [])
    model = built.outputs["train"]["model"]
    assert isinstance(model, PipelineOutputFileDataset)
    assert (model._registration_name, model._create_new_version) == ("cars-model", True)
    assert built.inputs["score"]["model"].name == "model"
    assert not isinstance(built.outputs["score"]["scores"], PipelineOutputFileDataset)
    from test_backend_azureml import edges

    assert ("train", "model", "score", "model") in edges(built)


def test_classic_without_a_workspace_to_look_up_the_dataset_is_a_classed_error(offline, tmp_path):
    from amlr.backends import azureml as v1
    from amlr.errors import InvalidSpec

    plan = v1.plan_pipeline(validate(data_spec(tmp_path)), str(tmp_path / "run"))
    with pytest.raises(InvalidSpec, match="data asset `cars`"):
        v1.build_pipeline(offline.workspace, plan, datastore=offline.datastore, input_paths={})


# -- azureml_v2 submit: the asset's type comes from the workspace --------------------------------------


class FakeData:
    def __init__(self, types):
        self.types = types
        self.asked = []

    def get(self, name, version=None, label=None):
        from azure.core.exceptions import ResourceNotFoundError
        from azure.ai.ml.entities import Data

        self.asked.append((name, version, label))
        if name not in self.types:
            raise ResourceNotFoundError(f"Data asset {name} not found")
        return Data(name=name, version=version or "5", type=self.types[name],
                    path="azureml://datastores/workspaceblobstore/paths/x/")


class RecordingJobs:
    """MLClient.jobs at its one call here (create_or_update), recording what it was given.

    The whole v2 backend runs against the loopback service in test_loopback_v2.py;
    these tests are about the asset look-ups before the job is sent.
    """

    def __init__(self) -> None:
        self.calls: list = []

    def create_or_update(self, job, **kwargs):
        self.calls.append(("create_or_update", job, kwargs))
        return SimpleNamespace(name="job-assets-1", status="NotStarted", studio_url="https://ml.azure.com/runs/x")


def test_recording_jobs_stands_in_for_the_real_job_operations():
    import inspect

    from azure.ai.ml.operations import JobOperations

    assert "job" in inspect.signature(JobOperations.create_or_update).parameters


def test_submit_reads_each_assets_type_from_the_workspace(tmp_path, monkeypatch):
    from bridge_calls import call
    FakeJobs = RecordingJobs

    client = SimpleNamespace(jobs=FakeJobs(), data=FakeData({"cars": "uri_file"}))
    for module in (v2, v2.launch, v2.client):
        monkeypatch.setattr(module, "connect", lambda info: client)
    run = call(tmp_path / "home", "submit", spec=data_spec(tmp_path, version="2"), backend="azureml_v2",
               options={"workspace": WORKSPACE})
    assert client.data.asked == [("cars", "2", None)]
    (_, job, _), = [c for c in client.jobs.calls if c[0] == "create_or_update"]
    cars = job.jobs["train"].inputs["cars"]._data
    assert (cars.type, cars.path, cars.mode) == ("uri_file", "azureml:cars:2", "ro_mount")
    assert job.jobs["train"].outputs["model"]._data.name == "cars-model"
    assert run["backend"] == "azureml_v2"


def test_submit_with_an_asset_the_workspace_lacks_is_a_classed_error_and_records_nothing(tmp_path, monkeypatch):
    from bridge_calls import call, call_error
    FakeJobs = RecordingJobs

    client = SimpleNamespace(jobs=FakeJobs(), data=FakeData({}))
    for module in (v2, v2.launch, v2.client):
        monkeypatch.setattr(module, "connect", lambda info: client)
    err = call_error(tmp_path / "home", "submit", spec=data_spec(tmp_path), backend="azureml_v2",
                     options={"workspace": WORKSPACE})
    assert err["class"] != "python" and "cars" in err["message"]
    assert client.data.asked == [("cars", None, "latest")]
    assert not [c for c in client.jobs.calls if c[0] == "create_or_update"]
    assert call(tmp_path / "home", "list") == []
