"""Endpoint inputs (names, models, score files) and the records kept under AMLR_HOME/endpoints."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import (BadRequest, EndpointError, EndpointNotFound, InvalidEndpointName, ModelNotFound, ScoreFileError)


SERVE_PORT = 8000
ROUTES = {"liveness_route": "/live", "readiness_route": "/ready", "scoring_route": "/score"}
MODEL_MOUNT_PATH = "/var/azureml-app/amlr-model"
APP_DIR_IN_IMAGE = "/opt/amlr-serve"
RECORD = "endpoint.json"
# Azure ML's rule for online endpoint names, applied to local ones too so a
# name that works locally also works on Azure.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
DEPLOYMENT_PREFIX = "amlr-"


# -- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model folder, or a registered model (``register_model()``): local path and/or Azure id."""

    path: Optional[str]
    azure_id: Optional[str] = None
    name: Optional[str] = None
    version: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "azure_id": self.azure_id, "name": self.name, "version": self.version}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidEndpointName(
            f"Endpoint name {name!r} is not allowed: use 3 to 32 letters, digits and `-`, starting with a letter "
            "and ending with a letter or digit (Azure ML's rule), e.g. \"cars-model\".", field="name")
    return name


def model_ref(value: Any, *, backend: str) -> ModelRef:
    """What R sends for ``model``: ``{"path": ...}`` or a registered model's fields."""
    if not isinstance(value, dict):
        raise BadRequest("`model` must be a folder path or a registered model (register_model()).", field="model")
    path = value.get("path")
    azure_id = value.get("azure_id")
    ref = ModelRef(
        path=os.path.abspath(os.path.expanduser(path)) if isinstance(path, str) and path else None,
        azure_id=azure_id if isinstance(azure_id, str) and azure_id else None,
        name=value.get("name") if isinstance(value.get("name"), str) else None,
        version=str(value["version"]) if value.get("version") is not None else None,
    )
    if backend == "azureml_v2" and ref.azure_id:
        return ref
    if ref.path is None:
        what = "an Azure ML id (`azure_id`) or a local folder" if backend == "azureml_v2" else "a local folder (`path`)"
        raise ModelNotFound(f"The model has no {what}; pass the model's folder, or a model registered with "
                            "register_model().", field="model")
    if not os.path.isdir(ref.path):
        hint = " It is a file: pass the folder that holds it." if os.path.isfile(ref.path) else ""
        raise ModelNotFound(f"The model folder `{ref.path}` does not exist.{hint} Pass the folder that holds the "
                            "model files (init(model_dir) receives it).", field="model")
    return ref


def check_score_file(path: Any) -> str:
    """Existence only: R parses the file and checks init() and score() before asking."""
    if not isinstance(path, str) or not path:
        raise ScoreFileError("`score` must be the path of an R file defining init(model_dir) and score(model, data).",
                             field="score")
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ScoreFileError(f"The score file `{full}` does not exist; pass an R file defining init(model_dir) and "
                             "score(model, data).", field="score")
    return full


# -- records ------------------------------------------------------------------------------------


def endpoints_dir(home: str) -> str:
    return os.path.join(home, "endpoints")


def endpoint_dir(home: str, name: str) -> str:
    return os.path.join(endpoints_dir(home), name)


def read_record(home: str, name: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise EndpointNotFound(f"There is no endpoint {name!r}; endpoint_list() shows the endpoints.")
    path = os.path.join(endpoint_dir(home, name), RECORD)
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        raise EndpointNotFound(
            f"There is no endpoint `{name}` (deleted, or never deployed here); endpoint_list() shows the endpoints, "
            "deploy_r_model() creates one.") from None
    except ValueError as exc:
        raise EndpointError(f"The record of endpoint `{name}` ({path}) is damaged ({exc}); delete it with "
                            f"endpoint_delete(\"{name}\") and deploy again.") from None
    if not isinstance(record, dict):
        raise EndpointError(f"The record of endpoint `{name}` ({path}) is damaged; delete it with "
                            f"endpoint_delete(\"{name}\") and deploy again.")
    return record


def write_record(home: str, record: dict[str, Any]) -> None:
    folder = endpoint_dir(home, record["name"])
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{RECORD}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(folder, RECORD))


def list_names(home: str) -> list[str]:
    folder = endpoints_dir(home)
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n, RECORD)))


def log_tail(path: Optional[str], n: int = 15) -> list[str]:
    if not path or not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return text.splitlines()[-n:]
