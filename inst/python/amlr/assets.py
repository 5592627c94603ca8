"""Data assets and models from R: the bridge methods, and their Azure ML twins.

The local store (:mod:`amlr.store`) does the keeping; this module decides what
to keep: a folder registered from R, a run's step output registered as a model
with its lineage, an Azure ML data asset brought down into the store. The
azure-ai-ml objects (``Data``, ``Model``) are built by small pure functions so
they are tested offline against the real SDK classes; only ``create_or_update``
and downloads need the service.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable, Mapping, Optional

from .backends import get_backend
from .errors import BadRequest, OutputNotFound, StepNotCompleted, StepNotFound
from .registry import Registry, default_home
from .store import Asset, Store, check_name, check_version


def _registry(params: Mapping[str, Any]) -> Registry:
    return Registry(params.get("home") or default_home())


def _scalar(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _text(params: Mapping[str, Any], key: str) -> Optional[str]:
    value = _scalar(params.get(key))
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadRequest(f"`{key}` must be a string.")
    return value


def _tags(raw: Any) -> dict[str, str]:
    if raw in (None, [], {}):
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("`tags` must be a named list or character vector, e.g. c(team = \"risk\").")
    return {str(k): str(_scalar(v)) for k, v in raw.items()}


def store_for(params: Mapping[str, Any]) -> Store:
    return Store(_registry(params).home)


# -- lineage: what a run's step read and produced -------------------------------------------


def _plan(run: Mapping[str, Any]) -> dict[str, Any]:
    for name in ("spec.json", "job.json"):
        path = os.path.join(run.get("run_dir") or "", name)
        try:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            continue
    return {}


def step_lineage(reg: Registry, run: Mapping[str, Any], row: Mapping[str, Any], output: str) -> dict[str, Any]:
    plan = _plan(run)
    step_plan = (plan.get("steps") or {}).get(row["name"]) if isinstance(plan.get("steps"), dict) else None
    assets = []
    if step_plan and isinstance(step_plan.get("data_assets"), dict):
        assets = [{"name": d["name"], "version": d["version"]} for _, d in sorted(step_plan["data_assets"].items())]
    else:  # Azure runs: what the spec asked for (Azure ML resolves "latest" itself)
        pipeline = plan.get("pipeline") or {}
        for s in pipeline.get("steps") or []:
            if s.get("name") == row["name"]:
                assets = [{"name": i["name"], "version": i.get("version") or "latest"}
                          for _, i in sorted((s.get("inputs") or {}).items()) if i.get("type") == "data_asset"]
    return {
        "run": run["id"],
        "remote_run": run.get("remote_id"),
        "backend": run["backend"],
        "step": row["name"],
        "output": output,
        "fingerprint": row.get("fingerprint"),
        "data_assets": assets,
    }


def completed_step(reg: Registry, run_ref: Any, step: str, output: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run and the step row, checked: the step completed and declares ``output``."""
    run = reg.get_run(reg.resolve(run_ref))
    run = get_backend(run["backend"]).refresh(reg, run)
    rows = reg.get_steps(run["id"])
    if not step and len(rows) == 1:
        step = rows[0]["name"]
    if not step:
        raise StepNotFound(f"Run `{run['id']}` has several steps ({', '.join(r['name'] for r in rows)}); "
                           "say which one with `step =`.")
    row = reg.get_step(run["id"], step)
    if row["status"] != "Completed":
        if row["status"] in ("Failed", "Canceled"):
            fix = "Its outputs are incomplete, so nothing was registered; fix the step and submit the pipeline again."
        else:
            fix = "Wait for it with run_wait() and register the model then."
        raise StepNotCompleted(
            f"Step `{step}` of run `{run['id']}` is {row['status']}, not Completed. {fix}", field="step"
        )
    outputs = row.get("outputs") or {}
    if output not in outputs:
        raise OutputNotFound(
            f"Step `{step}` of run `{run['id']}` has no output `{output}` (its outputs: "
            f"{', '.join(outputs) or 'none'}); pass one of those as `output`.",
            field="output",
        )
    return run, row


# -- bridge methods ------------------------------------------------------------------------


def data_register(params: dict[str, Any]) -> dict[str, Any]:
    path = _text(params, "path")
    if not path:
        raise BadRequest("`path` must be the file or folder to register.")
    name = check_name(_scalar(params.get("name")))
    version = check_version(params.get("version"))
    description = _text(params, "description")
    backend = _text(params, "backend") or "local"
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise OutputNotFound(f"`{path}` does not exist; give the path of a file or a folder to register.", field="path")
    if backend == "local":
        return store_for(params).register("data", path, name, version=version, description=description,
                                          source=path).to_json()
    if backend in ("azureml_v2", "azureml"):
        # A v2 data asset is also the classic SDK's dataset of the same name: one registration serves both.
        return register_data_azure(store_for(params), params.get("workspace"), path, name, version, description,
                                   backend).to_json()
    raise BadRequest(f"Unknown backend `{backend}`; use \"local\", \"azureml_v2\" or \"azureml\".")


def data_get(params: dict[str, Any]) -> dict[str, Any]:
    return store_for(params).get("data", _scalar(params.get("name")), params.get("version") or "latest").to_json()


def data_list(params: dict[str, Any]) -> list[dict[str, Any]]:
    name = _text(params, "name")
    return [a.to_json() for a in store_for(params).list("data", name)]


def model_list(params: dict[str, Any]) -> list[dict[str, Any]]:
    name = _text(params, "name")
    return [a.to_json() for a in store_for(params).list("model", name)]


def model_get(params: dict[str, Any]) -> dict[str, Any]:
    return store_for(params).get("model", _scalar(params.get("name")), params.get("version") or "latest").to_json()


def store_rebuild(params: dict[str, Any]) -> dict[str, Any]:
    return store_for(params).rebuild()


def model_register(params: dict[str, Any]) -> dict[str, Any]:
    reg = _registry(params)
    name = check_name(_scalar(params.get("name")), "model")
    version = check_version(params.get("version"))
    output = _text(params, "output")
    if not output:
        raise BadRequest("`output` must name the step output that holds the model, e.g. output = \"model\".")
    run, row = completed_step(reg, _scalar(params.get("run")) or "latest", _text(params, "step") or "", output)
    lineage = step_lineage(reg, run, row, output)
    tags = _tags(params.get("tags"))
    description = _text(params, "description")
    store = Store(reg.home)
    if run["backend"] == "local":
        folder = row["outputs"][output]
        if not folder or not os.path.isdir(folder):
            raise OutputNotFound(
                f"Output `{output}` of step `{row['name']}` (run `{run['id']}`) is no longer on disk (`{folder}`); "
                "submit the pipeline again to recreate it.", field="output")
        return store.register("model", folder, name, version=version, description=description, tags=tags,
                              source=f"run {run['id']}, step {row['name']}, output {output}", lineage=lineage).to_json()
    if run["backend"] == "azureml_v2":
        return register_model_v2(store, run, row, output, name, version, description, tags, lineage).to_json()
    if run["backend"] == "azureml":
        return register_model_classic(store, run, row, output, name, version, description, tags, lineage).to_json()
    raise BadRequest(f"Models cannot be registered from `{run['backend']}` runs.")


# -- Azure ML v2 -----------------------------------------------------------------------------


def azure_id(name: str, version: str) -> str:
    return f"azureml:{name}:{version}"


def job_output_uri(job_name: str, output: str) -> str:
    return f"azureml://jobs/{job_name}/outputs/{output}"


def v2_model_entity(name: str, version: Optional[str], job_name: str, output: str, description: Optional[str],
                    tags: Mapping[str, str], lineage: Mapping[str, Any]) -> Any:
    """The azure-ai-ml ``Model`` for a step output (``custom_model``, path on the job's output)."""
    from .backends.azureml_v2 import _sdk

    _sdk()  # a classed error naming the package when azure-ai-ml is missing
    from azure.ai.ml.entities import Model

    properties = {
        "amlr.run": str(lineage.get("run")), "amlr.step": str(lineage.get("step")),
        "amlr.output": output, "amlr.data_assets": json.dumps(lineage.get("data_assets") or []),
    }
    if lineage.get("fingerprint"):
        properties["amlr.fingerprint"] = str(lineage["fingerprint"])
    return Model(name=name, version=version, type="custom_model", path=job_output_uri(job_name, output),
                 description=description, tags=dict(tags), properties=properties)


def v2_data_entity(path: str, name: str, version: Optional[str], description: Optional[str]) -> Any:
    from .backends.azureml_v2 import _sdk

    _sdk()
    from azure.ai.ml.entities import Data

    return Data(name=name, version=version, path=path, description=description,
                type="uri_folder" if os.path.isdir(path) else "uri_file")


def register_model_v2(store: Store, run: Mapping[str, Any], row: Mapping[str, Any], output: str, name: str,
                      version: Optional[str], description: Optional[str], tags: Mapping[str, str],
                      lineage: Mapping[str, Any], client: Any = None) -> Asset:
    from .backends import azureml_v2 as v2

    job_name = v2.children_map(run).get(row["name"])
    if not job_name:
        raise StepNotCompleted(f"amlr has not seen the Azure ML job of step `{row['name']}` yet; call run_steps() "
                               "or run_wait() first, then register the model.")
    entity = v2_model_entity(name, version, job_name, output, description, tags, lineage)
    client = client or v2.client_for(run)
    with v2.azure_call(f"registering model `{name}`"):
        created = client.models.create_or_update(entity)
    return store.add_record(Asset(
        kind="model", name=name, version=str(created.version), type="custom_model", content_hash=None, path=None,
        created=_now(), description=description, tags=dict(tags), source=job_output_uri(job_name, output),
        backend="azureml_v2", azure_id=azure_id(name, str(created.version)), lineage=dict(lineage)))


def register_data_azure(store: Store, workspace: Any, path: str, name: str, version: Optional[str],
                        description: Optional[str], backend: str, client: Any = None) -> Asset:
    from .backends import azureml_v2 as v2
    from .workspace import resolve

    entity = v2_data_entity(path, name, version, description)
    if client is None:
        client = v2.connect(resolve(workspace if isinstance(workspace, dict) else None))
    with v2.azure_call(f"registering data asset `{name}`"):
        created = client.data.create_or_update(entity)
    return store.add_record(Asset(
        kind="data", name=name, version=str(created.version), type=entity.type, content_hash=None, path=None,
        created=_now(), description=description, source=path, backend=backend,
        azure_id=azure_id(name, str(created.version))))


def register_model_classic(store: Store, run: Mapping[str, Any], row: Mapping[str, Any], output: str, name: str,
                           version: Optional[str], description: Optional[str], tags: Mapping[str, str],
                           lineage: Mapping[str, Any]) -> Asset:
    """The classic SDK: download the step's output, then ``Model.register`` it with the lineage as properties."""
    if version is not None:
        raise BadRequest("The classic Azure ML SDK numbers model versions itself; leave `version` unset.")
    from azureml.core import Model

    from .backends import azureml as v1
    from .workspace import classic_workspace, from_json

    workspace = classic_workspace(from_json(run.get("workspace")))
    with tempfile.TemporaryDirectory(prefix="amlr-model-") as tmp:
        v1.download(Registry(store.home), dict(run), row["name"], output, tmp, True)
        folder = os.path.join(tmp, row["name"], output)
        model = Model.register(workspace, model_path=folder, model_name=name, tags=dict(tags),
                               properties={k: str(v) for k, v in lineage.items() if k != "data_assets"},
                               description=description)
    return store.add_record(Asset(
        kind="model", name=name, version=str(model.version), type="custom_model", content_hash=None, path=None,
        created=_now(), description=description, tags=dict(tags), source=f"run {run['id']}, step {row['name']}",
        backend="azureml", azure_id=azure_id(name, str(model.version)), lineage=dict(lineage)))


# -- download_data(): an Azure ML data asset into the local store -----------------------------


def plan_download(data: Any) -> dict[str, str]:
    """What to fetch for an azure-ai-ml ``Data`` (name, version, type, its storage URI)."""
    kind = str(getattr(data, "type", "") or "uri_folder")
    if kind not in ("uri_folder", "uri_file", "mltable"):
        raise BadRequest(f"Data asset `{data.name}` has type `{kind}`, which amlr cannot bring down.")
    return {"name": data.name, "version": str(data.version), "type": kind, "uri": str(data.path)}


def download_into_store(store: Store, data: Any, fetch: Callable[[str, str], None]) -> Asset:
    """Fetch ``data`` with ``fetch(uri, folder)`` into a temporary folder and register it locally.

    The local version is the Azure ML version, so ``aml_data(name, version)``
    means the same content on both sides.
    """
    plan = plan_download(data)
    with tempfile.TemporaryDirectory(prefix="amlr-download-", dir=_tmp_parent(store)) as tmp:
        target = os.path.join(tmp, "content")
        os.makedirs(target)
        fetch(plan["uri"], target)
        entries = os.listdir(target)
        source = os.path.join(target, entries[0]) if plan["type"] == "uri_file" and len(entries) == 1 else target
        asset = store.register("data", source, plan["name"], version=plan["version"],
                               description=getattr(data, "description", None),
                               source=azure_id(plan["name"], plan["version"]))
    return asset


def _tmp_parent(store: Store) -> str:
    os.makedirs(store.root, exist_ok=True)
    return store.root


def data_download(params: dict[str, Any]) -> dict[str, Any]:
    from .backends import azureml_v2 as v2
    from .workspace import resolve

    name = check_name(_scalar(params.get("name")))
    version = _scalar(params.get("version"))
    version = None if version in (None, "", "latest") else check_version(version)
    workspace = params.get("workspace")
    info = resolve(workspace if isinstance(workspace, dict) else None)
    client = v2.connect(info)
    with v2.azure_call(f"reading data asset `{name}`"):
        data = client.data.get(name=name, version=version) if version else client.data.get(name=name, label="latest")

    def fetch(uri: str, folder: str) -> None:
        from azure.ai.ml._artifacts._artifact_utilities import download_artifact_from_aml_uri

        with v2.azure_call(f"downloading data asset `{name}`"):
            download_artifact_from_aml_uri(uri=uri, destination=folder, datastore_operation=client.datastores)

    asset = download_into_store(store_for(params), data, fetch)
    dest = _text(params, "dest")
    if dest:
        dest = os.path.abspath(os.path.expanduser(dest))
        if os.path.exists(dest):
            raise BadRequest(f"`{dest}` already exists; the asset is in the local store, choose a new `dest`.")
        src = asset.path or ""
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dest)
    return asset.to_json()


def _now() -> float:
    import time

    return time.time()
