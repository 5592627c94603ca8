"""Errors that cross the bridge.

Every error amlr raises on purpose is an ``AmlrError``; its ``kind`` becomes the
R condition class ``amlr_error_<kind>`` so R code can catch one kind of failure
without parsing messages.
"""
from __future__ import annotations

from typing import Any, Optional


class AmlrError(Exception):
    kind = "error"

    def __init__(self, message: str, *, field: Optional[str] = None, data: Optional[dict] = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.data = data or {}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"class": self.kind, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.data:
            out["data"] = self.data
        return out


class BadRequest(AmlrError):
    kind = "bad_request"


class BadOption(AmlrError):
    """An option of submit_r_pipeline() that the backend does not know, or of the wrong type."""

    kind = "bad_option"


class InvalidSpec(AmlrError):
    """A pipeline spec that no backend can run; ``field`` names the culprit."""

    kind = "invalid_spec"


class RunNotFound(AmlrError):
    kind = "run_not_found"


class StepNotFound(AmlrError):
    kind = "step_not_found"


class BackendUnavailable(AmlrError):
    """The backend's SDK is not installed in this interpreter."""

    kind = "backend_unavailable"


class WorkspaceConfig(AmlrError):
    kind = "workspace_config"


class Credentials(AmlrError):
    kind = "credentials"


class FileExists(AmlrError):
    kind = "file_exists"


class RunNotActive(AmlrError):
    kind = "run_not_active"


class HomeUnusable(AmlrError):
    """AMLR_HOME cannot hold the registry and the run folders."""

    kind = "home_unusable"


class RegistryDamaged(AmlrError):
    """registry.sqlite is not a registry (damaged, emptied, not SQLite)."""

    kind = "registry_damaged"


class RunFolderMissing(AmlrError):
    """A local run's folder (logs, outputs, snapshot) is gone."""

    kind = "run_folder_missing"


class OutputNotFound(AmlrError):
    kind = "output_not_found"


class SourceUnreadable(AmlrError):
    """A file of a step's source folder cannot be read."""

    kind = "source_unreadable"


class ScriptExcluded(AmlrError):
    """A step's script is left out of its snapshot by the ignore rules."""

    kind = "script_excluded"


class ArgumentTooLong(AmlrError):
    kind = "argument_too_long"


class DestinationUnusable(AmlrError):
    """A folder or file to write into that cannot be written."""

    kind = "destination_unusable"


BUG_REPORT = (
    "This is a bug in amlr: please report it to amlr's maintainers with the traceback "
    "(in R: rlang::last_error()$python_traceback)."
)
