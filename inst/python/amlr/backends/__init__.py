"""Backends share one interface; each is imported only when asked for.

A backend module provides ``submit(reg, pipeline, experiment, run_id, options)``,
``refresh(reg, run)``, ``steps``, ``logs``, ``follow``, ``cancel``, ``download``
and ``metrics`` (see :mod:`amlr.backends.local` for the reference shapes).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping, Optional

from ..errors import BackendUnavailable, BadOption, BadRequest

BACKENDS = {
    "local": ("amlr.backends.local", None),
    "azureml": ("amlr.backends.azureml", "requirements-azureml.txt"),
    "azureml_v2": ("amlr.backends.azureml_v2", "requirements-azureml_v2.txt"),
}


# Azure ML run, step and job states (classic runs and v2 jobs share the
# vocabulary) -> amlr's six. NotResponding and Paused are not final (a run can
# come back), so they stay active; the backends say why in the run's `error`.
AML_STATUS_MAP = {
    "NotStarted": "NotStarted",
    "Unapproved": "NotStarted",
    "Queued": "Queued",
    "Preparing": "Queued",
    "Provisioning": "Queued",
    "Starting": "Queued",
    "Paused": "Queued",
    "Running": "Running",
    "Finalizing": "Running",
    "CancelRequested": "Running",
    "NotResponding": "Running",
    "Completed": "Completed",
    "Finished": "Completed",
    "Failed": "Failed",
    "Canceled": "Canceled",
    "Cancelled": "Canceled",
}


def get_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise BadRequest(f"Unknown backend `{name}`; use one of: {', '.join(BACKENDS)}.")
    module, requirements = BACKENDS[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise BackendUnavailable(f"The `{name}` backend is not part of this amlr build.") from exc
        raise BackendUnavailable(
            f"The `{name}` backend needs the Python package `{exc.name}`, which this interpreter lacks. "
            f"Run amlr::install_amlr_python(backends = \"{name}\") (it installs {requirements})."
        ) from exc


def option_text(options: Mapping[str, Any], key: str) -> Optional[str]:
    """A string option from R (where a scalar may arrive as a one-element list)."""
    value = options.get(key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadOption(f"Option `{key}` must be a string.", field=key)
    return value


# Every option a backend takes, with its type. An option a backend does not
# know is an error that names the known ones (and the closest to a misspelling).
COMMON_OPTIONS: dict[str, str] = {"regenerate_outputs": "bool"}
BACKEND_OPTIONS: dict[str, dict[str, str]] = {
    "local": {"max_parallel": "count"},
    "azureml": {"workspace": "object", "compute": "string", "datastore": "string", "publish": "bool",
                "publish_name": "string", "continue_on_step_failure": "bool"},
    "azureml_v2": {"workspace": "object", "compute": "string"},
}


def known_options(backend: str) -> dict[str, str]:
    return {**COMMON_OPTIONS, **BACKEND_OPTIONS.get(backend, {})}


def _scalar(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def check_options(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Options checked against the backend's known names and types; scalars unwrapped."""
    import difflib

    known = known_options(backend)
    out: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise BadOption(
                f"Unknown option `{key}` for backend \"{backend}\".{hint} It takes: {', '.join(sorted(known))}.",
                field=key,
            )
        value = _scalar(raw)
        kind = known[key]
        if value is None:
            continue
        if kind == "bool" and not isinstance(value, bool):
            raise BadOption(f"Option `{key}` must be TRUE or FALSE, not {value!r}.", field=key)
        if kind == "count" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or value != int(value) or value < 1):
            raise BadOption(f"Option `{key}` must be a whole number, 1 or more (e.g. {key} = 2), not {value!r}.", field=key)
        if kind == "string" and (not isinstance(value, str) or not value):
            raise BadOption(f"Option `{key}` must be a non-empty string, not {value!r}.", field=key)
        out[key] = int(value) if kind == "count" else value
    return out
