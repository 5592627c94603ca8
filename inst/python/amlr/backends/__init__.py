"""Backends share one interface (``Backend``); each is imported only when asked for.

A backend is a module (``local``, ``azureml``, ``azureml_v2``) with the
functions of the ``Backend`` protocol below; ``get_backend()`` imports it on
first use (the Azure SDKs take seconds to import). Runs cross the interface as
``RunRecord`` dicts, the rows of the registry's ``runs`` table.
tests/python/test_architecture.py checks that every backend module has every
member of the protocol with the same parameters.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping, Optional, Protocol

if TYPE_CHECKING:  # pragma: no cover - types only
    from typing import TypedDict

    from ..registry import Registry
    from ..spec import Pipeline

from ..errors import BackendUnavailable, BadOption, BadRequest

BACKENDS = {
    "local": ("amlr.backends.local", None),
    "azureml": ("amlr.backends.azureml", "requirements-azureml.txt"),
    "azureml_v2": ("amlr.backends.azureml_v2", "requirements-azureml_v2.txt"),
}



if TYPE_CHECKING:  # pragma: no cover - types only

    class RunRecord(TypedDict, total=False):
        """One run as the registry stores it (``Registry.get_run``); backends add nothing else."""

        id: str
        experiment: str
        pipeline: str  # the validated spec, as JSON
        backend: str  # a key of BACKENDS
        status: str  # NotStarted, Queued, Running, Completed, Failed, Canceled
        created: float
        started: Optional[float]
        ended: Optional[float]
        run_dir: Optional[str]  # local: logs, outputs, snapshots; Azure: the staged snapshots
        runner_pid: Optional[int]  # local only
        runner_identity: Optional[str]
        cancel_requested: int
        error: Optional[str]
        remote_id: Optional[str]  # Azure ML's pipeline run / job name
        portal_url: Optional[str]
        workspace: Optional[dict[str, Any]]
        n_steps: int
else:
    RunRecord = dict


class Backend(Protocol):
    """What every backend module provides; ``run`` is a ``RunRecord``, ``reg`` the registry it is in.

    Each function records what it learns in the registry; none prints. Errors are
    ``AmlrError`` kinds (see errors.py).
    """

    def submit(self, reg: Registry, pipeline: Pipeline, experiment: str, run_id: str,
               options: dict[str, Any]) -> dict[str, Any]:
        """Stage, start (locally or on Azure ML) and record a run; return its record."""

    def refresh(self, reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
        """The run's record after asking where it runs (a no-op for ended runs)."""

    def steps(self, reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
        """The run's steps, with their status, exit code and reuse."""

    def logs(self, reg: Registry, run: dict[str, Any], step: Optional[str]) -> dict[str, list[str]]:
        """Each step's log lines (or one step's)."""

    def follow(self, reg: Registry, run: dict[str, Any], cursor: dict[str, Any]) -> dict[str, Any]:
        """New log lines since ``cursor``, the next cursor and whether the run has ended."""

    def cancel(self, reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
        """Stop the run; return its record."""

    def download(self, reg: Registry, run: dict[str, Any], step: Optional[str], output: Optional[str], dest: str,
                 overwrite: bool) -> list[str]:
        """Copy step outputs (and logs) under ``dest``; return the paths written."""

    def metrics(self, reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
        """The metrics the run's steps logged with log_metric()."""


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
    """The backend module ``name`` (a ``Backend``), imported now."""
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
    known = known_options(backend)
    out: dict[str, Any] = {}
    for key, raw in options.items():
        if key not in known:
            import difflib  # only to word the error

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


if TYPE_CHECKING:  # pragma: no cover - mypy checks each backend module against the protocol
    from . import azureml, azureml_v2, local

    _BACKENDS_ARE_BACKENDS: tuple[Backend, ...] = (local, azureml, azureml_v2)
