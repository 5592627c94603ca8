"""The bridge: one JSON request in, one JSON response out.

Both transports call :func:`handle_json` -- ``python -m amlr call`` with the
request on stdin (system2), and reticulate calling it in-process -- so
behaviour and error classes are identical whichever R uses.

Request:  ``{"method": "status", "params": {...}}``
Response: ``{"result": ...}`` or ``{"error": {"class": ..., "message": ...}}``
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import Any, Callable, Optional

from . import __version__
from .backends import get_backend
from .errors import AmlrError, BadRequest
from .registry import Registry, default_home, new_run_id
from .spec import validate

Handler = Callable[[dict[str, Any]], Any]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = fn
        return fn

    return register


def registry(params: dict[str, Any]) -> Registry:
    return Registry(params.get("home") or default_home())


def _run_and_backend(params: dict[str, Any]) -> tuple[Registry, dict[str, Any], Any]:
    reg = registry(params)
    run = reg.get_run(reg.resolve(params.get("run", "latest")))
    backend = get_backend(run["backend"])
    run = backend.refresh(reg, run)
    return reg, run, backend


@method("ping")
def ping(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "amlr": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "home": registry(params).home,
    }


@method("validate")
def validate_spec(params: dict[str, Any]) -> dict[str, Any]:
    pipeline = validate(params.get("spec"), check_paths=bool(params.get("check_paths", True)))
    return pipeline.to_json()


@method("submit")
def submit(params: dict[str, Any]) -> dict[str, Any]:
    pipeline = validate(params.get("spec"))
    backend_name = params.get("backend") or "local"
    experiment = params.get("experiment") or pipeline.name
    from .spec import PIPELINE_NAME_RE

    if not PIPELINE_NAME_RE.match(experiment):
        raise BadRequest(
            f"Experiment name `{experiment}` is not allowed: use letters, digits, `_`, `-` and `.`, "
            "starting with a letter or digit."
        )
    backend = get_backend(backend_name)
    reg = registry(params)
    run_id = new_run_id()
    return backend.submit(reg, pipeline, experiment, run_id, params.get("options") or {})


@method("status")
def status(params: dict[str, Any]) -> dict[str, Any]:
    _, run, _ = _run_and_backend(params)
    return run


@method("steps")
def steps(params: dict[str, Any]) -> list[dict[str, Any]]:
    reg, run, backend = _run_and_backend(params)
    return backend.steps(reg, run)


@method("logs")
def logs(params: dict[str, Any]) -> dict[str, list[str]]:
    reg, run, backend = _run_and_backend(params)
    return backend.logs(reg, run, params.get("step"))


@method("follow")
def follow(params: dict[str, Any]) -> dict[str, Any]:
    """What a waiting R session needs per poll: new log lines, step states, run state."""
    reg, run, backend = _run_and_backend(params)
    chunk = backend.follow(reg, run, params.get("cursor") or {})
    chunk["run"] = run
    chunk["steps"] = backend.steps(reg, run)
    return chunk


@method("cancel")
def cancel(params: dict[str, Any]) -> dict[str, Any]:
    reg, run, backend = _run_and_backend(params)
    return backend.cancel(reg, run)


@method("list")
def list_runs(params: dict[str, Any]) -> list[dict[str, Any]]:
    reg = registry(params)
    runs = reg.list_runs(params.get("experiment"), int(params.get("limit") or 0))
    out = []
    for run in runs:
        try:
            run = get_backend(run["backend"]).refresh(reg, run) if run["backend"] == "local" else run
        except AmlrError:
            pass
        out.append(run)
    return out


@method("metrics")
def metrics(params: dict[str, Any]) -> list[dict[str, Any]]:
    reg, run, backend = _run_and_backend(params)
    return backend.metrics(reg, run)


@method("download")
def download(params: dict[str, Any]) -> list[str]:
    reg, run, backend = _run_and_backend(params)
    dest = params.get("dest") or "."
    return backend.download(reg, run, params.get("step"), params.get("output"), dest, bool(params.get("overwrite")))


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AmlrError):
        return {"error": exc.to_json()}
    # An unexpected failure: say where to look, keep the traceback out of R's face.
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return {
        "error": {
            "class": "python",
            "message": f"Unexpected Python error: {detail}",
            "traceback": traceback.format_exc(),
        }
    }


def handle(request: Any) -> dict[str, Any]:
    try:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise BadRequest('A request is a JSON object {"method": ..., "params": {...}}.')
        fn = find_method(request["method"])
        if fn is None:
            known = ", ".join(sorted(set(METHODS) | set(LAZY_METHODS)))
            raise BadRequest(f"Unknown method `{request['method']}`; known: {known}.")
        params = request.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("`params` must be a JSON object.")
        return {"result": fn(params)}
    except Exception as exc:  # every failure becomes a response, never a traceback on stderr
        return _error(exc)


def handle_json(text: str) -> str:
    try:
        request = json.loads(text)
    except ValueError as exc:
        return json.dumps({"error": {"class": "bad_request", "message": f"The request is not valid JSON: {exc}"}})
    return json.dumps(handle(request), default=str)


SYNCED_PREFIXES = ("AMLR_", "AZURE_", "MLFLOW_")


def sync_environ(values: dict[str, str]) -> None:
    """Mirror R's AMLR_/AZURE_/MLFLOW_ variables into an embedded Python (reticulate)."""
    for key in [k for k in os.environ if k.startswith(SYNCED_PREFIXES) and k not in values]:
        del os.environ[key]
    os.environ.update({str(k): str(v) for k, v in values.items()})


# Methods that live with the features that need them, imported on first use so
# that every bridge call does not pay for modules it does not touch.
LAZY_METHODS = {
    "export": "amlr.export",
    "doctor": "amlr.doctor",
    "environment_resolve": "amlr.environment",
    "environment_context": "amlr.environment",
    "environment_source_files": "amlr.environment",
    "workspace_resolve": "amlr.workspace",
    "publish": "amlr.workspace",
}


def find_method(name: str) -> Optional[Handler]:
    if name not in METHODS and name in LAZY_METHODS:
        importlib.import_module(LAZY_METHODS[name])
    return METHODS.get(name)
