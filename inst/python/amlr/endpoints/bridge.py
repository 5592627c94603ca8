"""The endpoint_* bridge methods (registered in amlr.api.LAZY_METHODS)."""
from __future__ import annotations

import os
import shutil
from typing import Any

from ..errors import (BadRequest, EndpointError, EndpointNotFound)
from .records import (check_name, model_ref, check_score_file, endpoint_dir, read_record, write_record, list_names,
                      log_tail)
from .local import (check_port, http_json, deploy_local, with_status, invoke_local, check_answer, delete_local)
from .azure import AzurePlan, plan_azure, export_endpoint, deploy_azure, _workspace_client


# -- bridge methods -----------------------------------------------------------------------------


def _home(params: dict[str, Any]) -> str:
    from ..registry import default_home

    return params.get("home") or default_home()


def _timeout(params: dict[str, Any], key: str = "timeout", default: float = 60.0) -> float:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise BadRequest(f"`{key}` must be a positive number of seconds, not {value!r}.", field=key)
    return float(value)

def _plan_from(params: dict[str, Any]) -> AzurePlan:
    name = check_name(params.get("name"))
    model = model_ref(params.get("model"), backend="azureml_v2")
    score = check_score_file(params.get("score"))
    return plan_azure(name, model, score, serve_script=check_score_file(params.get("serve_script")),
                      environment=params.get("environment"), instance_type=params.get("instance_type"),
                      instance_count=params.get("instance_count", 1))


def endpoint_deploy(params: dict[str, Any]) -> dict[str, Any]:
    home = _home(params)
    backend = params.get("backend") or "local"
    if backend == "local":
        name = check_name(params.get("name"))
        model = model_ref(params.get("model"), backend="local")
        score = check_score_file(params.get("score"))
        port = check_port(params.get("port"))
        rscript = params.get("rscript")
        serve = params.get("serve_script")
        if not isinstance(rscript, str) or not isinstance(serve, str):
            raise BadRequest("`rscript` and `serve_script` are set by R's deploy_r_model(); call it from R.")
        libs = params.get("r_libs") or []
        return deploy_local(home, name, model, score, rscript=rscript, serve_script=os.path.abspath(serve),
                            r_libs=[libs] if isinstance(libs, str) else list(libs), port=port,
                            timeout=_timeout(params))
    if backend == "azureml_v2":
        plan = _plan_from(params)
        info, client = _workspace_client(params)
        staging = os.path.join(home, "endpoints", ".staging")
        record = deploy_azure(client, plan, staging)
        record["workspace"] = info.to_json()
        write_record(home, record)
        out = dict(record)
        out["status"], out["reason"] = "Healthy", None  # created, and its traffic moved: Azure ML said so
        return out
    raise BadRequest(f"Unknown backend {backend!r} for endpoints; use \"local\" or \"azureml_v2\".",
                     field="backend")


def endpoint_export(params: dict[str, Any]) -> dict[str, Any]:
    path = params.get("path")
    if not isinstance(path, str) or not path:
        raise BadRequest("`path` (the folder to write endpoint.yml, deployment.yml and the build context to) "
                         "is missing.", field="path")
    return export_endpoint(_plan_from(params), path, overwrite=bool(params.get("overwrite")))


def endpoint_get(params: dict[str, Any]) -> dict[str, Any]:
    home = _home(params)
    return with_status(home, read_record(home, params.get("name")))


def endpoint_list(params: dict[str, Any]) -> list[dict[str, Any]]:
    home = _home(params)
    out = []
    for name in list_names(home):
        try:
            out.append(with_status(home, read_record(home, name), remote=False))
        except EndpointNotFound:
            continue  # deleted while we looked
        except EndpointError as exc:
            out.append({"name": name, "backend": None, "status": "Damaged", "reason": exc.message})
    return out


def endpoint_logs(params: dict[str, Any]) -> list[str]:
    home = _home(params)
    record = read_record(home, params.get("name"))
    if record.get("backend") != "local":
        _info, client = _workspace_client({"workspace": record.get("workspace")}, stored=True)
        from ..backends.azureml_v2 import azure_call

        with azure_call(f"reading the logs of `{record['name']}`"):
            text = client.online_deployments.get_logs(name=record["deployment"], endpoint_name=record["name"],
                                                      lines=int(params.get("n") or 100))
        return str(text).splitlines()
    n = params.get("n")
    if n is not None and (not isinstance(n, (int, float)) or isinstance(n, bool) or n < 1):
        raise BadRequest(f"`n` must be a positive number of lines (or NULL for all), not {n!r}.", field="n")
    if n is None:
        path = record.get("log")
        if not path or not os.path.exists(path):
            return []
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").splitlines()
    return log_tail(record.get("log"), n=int(n))


def endpoint_invoke(params: dict[str, Any]) -> Any:
    home = _home(params)
    record = read_record(home, params.get("name"))
    body = params.get("body")
    if not isinstance(body, str):
        raise BadRequest("`body` (the JSON request) is missing.")
    if record.get("backend") == "local":
        return invoke_local(record, body.encode("utf-8"), _timeout(params, default=300.0))
    _info, client = _workspace_client({"workspace": record.get("workspace")}, stored=True)
    from ..backends.azureml_v2 import azure_call

    with azure_call(f"reading the key of `{record['name']}`"):
        keys = client.online_endpoints.get_keys(record["name"])
        endpoint = client.online_endpoints.get(record["name"])
    status, answer = http_json(endpoint.scoring_uri, body=body.encode("utf-8"), timeout=_timeout(params, default=300.0),
                               headers={"Authorization": f"Bearer {keys.primary_key}"})
    return check_answer(record["name"], status, answer)


def endpoint_delete(params: dict[str, Any]) -> dict[str, Any]:
    home = _home(params)
    name = params.get("name")
    try:
        record = read_record(home, name)
    except EndpointError:
        # A damaged record: nothing to stop that we can identify; remove the folder.
        shutil.rmtree(endpoint_dir(home, str(name)), ignore_errors=True)
        return {"name": name, "deleted": True}
    if record.get("backend") == "local":
        delete_local(home, record)
    else:
        _info, client = _workspace_client({"workspace": record.get("workspace")}, stored=True)
        from ..backends.azureml_v2 import azure_call

        with azure_call(f"deleting online endpoint `{record['name']}`"):
            client.online_endpoints.begin_delete(name=record["name"]).result()
        shutil.rmtree(endpoint_dir(home, record["name"]), ignore_errors=True)
    return {"name": record["name"], "deleted": True}
