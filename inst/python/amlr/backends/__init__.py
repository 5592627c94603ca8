"""Backends share one interface; each is imported only when asked for.

A backend module provides ``submit(reg, pipeline, experiment, run_id, options)``,
``refresh(reg, run)``, ``steps``, ``logs``, ``follow``, ``cancel``, ``download``
and ``metrics`` (see :mod:`amlr.backends.local` for the reference shapes).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping, Optional

from ..errors import BackendUnavailable, BadRequest

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
        raise BadRequest(f"Option `{key}` must be a string.", field=key)
    return value
