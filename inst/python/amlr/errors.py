"""Every error kind amlr raises on purpose, in one place.

Every error amlr raises on purpose is an ``AmlrError``; its ``kind`` becomes the
R condition class ``amlr_error_<kind>`` so R code can catch one kind of failure
without parsing messages (errors cross the bridge as
``{"error": {"class": kind, "message": ...}}``). One failure has one kind on every
backend. Each class's docstring says what the kind means; the R help page
``?amlr_errors`` (the table in ``R/errors.R``) says the same and what to do, and
``tests/testthat/test-errors.R`` fails when a kind exists on one side only.

Modules import the classes they raise from here (``snapshot.SnapshotTooLarge``
and the like stay importable from where they are raised).
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple


class AmlrError(Exception):
    """Base class: an error amlr raises on purpose, with a message that says what to do."""

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


# -- requests and specs ----------------------------------------------------------------


class BadRequest(AmlrError):
    """A request with a missing or malformed argument."""

    kind = "bad_request"


class BadOption(AmlrError):
    """An option of submit_r_pipeline() (its ``...``) that the backend does not know, or with a bad value."""

    kind = "bad_option"


class InvalidSpec(AmlrError):
    """A pipeline spec that no backend can run; ``field`` names the culprit."""

    kind = "invalid_spec"


class ArgumentTooLong(AmlrError):
    """A step argument or environment value longer than a command line can carry."""

    kind = "argument_too_long"


# -- runs and steps ----------------------------------------------------------------------


class RunNotFound(AmlrError):
    """No run with that id (or name) in the registry of AMLR_HOME."""

    kind = "run_not_found"


class StepNotFound(AmlrError):
    """The run has no step of that name."""

    kind = "step_not_found"


class RunNotActive(AmlrError):
    """An operation that needs a running run (cancel, follow) on one that has ended."""

    kind = "run_not_active"


class StepNotCompleted(AmlrError):
    """The outputs of a step that has not completed (still running, failed, or not seen yet)."""

    kind = "step_not_completed"


class StepNotFinished(AmlrError):
    """Outputs and logs of a v2 step can be downloaded only once it has ended."""

    kind = "step_not_finished"


class OutputNotFound(AmlrError):
    """The step has no output of that name, or its folder is gone."""

    kind = "output_not_found"


class RunFolderMissing(AmlrError):
    """A local run's folder (logs, outputs, snapshot) is gone."""

    kind = "run_folder_missing"


# -- the local home --------------------------------------------------------------------------


class HomeUnusable(AmlrError):
    """AMLR_HOME cannot hold the registry and the run folders."""

    kind = "home_unusable"


class RegistryDamaged(AmlrError):
    """registry.sqlite is not a registry (damaged, emptied, not SQLite)."""

    kind = "registry_damaged"


class FileExists(AmlrError):
    """A file to be written exists already (and overwriting was not asked for)."""

    kind = "file_exists"


class DestinationUnusable(AmlrError):
    """A folder or file to write into that cannot be written."""

    kind = "destination_unusable"


# -- snapshots -----------------------------------------------------------------------------------


class SourceUnreadable(AmlrError):
    """A file of a step's source folder (or of an asset) cannot be read."""

    kind = "source_unreadable"


class ScriptExcluded(AmlrError):
    """A step's script is left out of its snapshot by the ignore rules."""

    kind = "script_excluded"


class SnapshotTooLarge(AmlrError):
    """A step's source folder is over the snapshot size limit (AMLR_SNAPSHOT_MAX_MB)."""

    kind = "snapshot_too_large"

    def __init__(self, message: str, *, total_bytes: int = 0, limit_bytes: int = 0,
                 largest: Optional[List[Tuple[str, int]]] = None):
        super().__init__(message)
        self.total_bytes = total_bytes
        self.limit_bytes = limit_bytes
        self.largest = list(largest or [])
        self.data = {"total_bytes": total_bytes, "limit_bytes": limit_bytes,
                     "largest": [list(x) for x in self.largest]}


class SnapshotReservedName(AmlrError):
    """The source folder has a file where amlr puts its own (``_amlr/``)."""

    kind = "snapshot_reserved_name"


class SnapshotSourceMissing(AmlrError):
    """The source folder of a step does not exist."""

    kind = "snapshot_source_missing"


class SnapshotLimitInvalid(AmlrError):
    """AMLR_SNAPSHOT_MAX_MB or AMLR_SNAPSHOT_WARN_MB is not a positive number."""

    kind = "snapshot_limit_invalid"


class SnapshotDestinationNotEmpty(AmlrError):
    """A snapshot would be written into a folder that has files already."""

    kind = "snapshot_destination_not_empty"


# -- backends and Azure ML -----------------------------------------------------------------------


class BackendUnavailable(AmlrError):
    """The backend's SDK is not installed in this interpreter."""

    kind = "backend_unavailable"


class Unsupported(AmlrError):
    """Something the chosen backend cannot do; the message names one that can."""

    kind = "unsupported"


class WorkspaceConfig(AmlrError):
    """No usable Azure ML workspace: config.json missing or incomplete."""

    kind = "workspace_config"


class Credentials(AmlrError):
    """Azure credentials missing or incomplete (service principal variables, az login)."""

    kind = "credentials"


class AzureRequestFailed(AmlrError):
    """A call to Azure ML failed (network, permission, a job Azure ML rejected), on either Azure backend."""

    kind = "azure_request"


# The classic backend's name for the same failure.
AzureMLError = AzureRequestFailed


# -- environments -----------------------------------------------------------------------------


class InvalidEnvironment(AmlrError):
    """An environment spec no backend can use; ``field`` names the culprit."""

    kind = "invalid_environment"


class BuildContextError(AmlrError):
    """A Docker build context cannot be assembled (a missing file, no amlr sources)."""

    kind = "build_context"


# -- data and models (the asset store) ----------------------------------------------------------


class InvalidAssetName(AmlrError):
    """A data asset or model name or version Azure ML would not accept."""

    kind = "invalid_asset_name"


class AssetNotFound(AmlrError):
    """No data asset or model of that name (and version)."""

    kind = "asset_not_found"


class AssetVersionExists(AmlrError):
    """A data asset or model version that is registered already, with other content."""

    kind = "asset_version_exists"


class StoreDamaged(AmlrError):
    """The asset store (assets.sqlite) is damaged."""

    kind = "store_damaged"


# -- endpoints -------------------------------------------------------------------------------


class EndpointError(AmlrError):
    """An endpoint record that is damaged, or an endpoint operation that failed."""

    kind = "endpoint"


class InvalidEndpointName(AmlrError):
    """An endpoint name Azure ML would not accept (3-32 letters, digits and `-`)."""

    kind = "endpoint_name"


class ModelNotFound(AmlrError):
    """The model to deploy is not in the store (or its folder is gone)."""

    kind = "model_not_found"


class ScoreFileError(AmlrError):
    """A score file that does not define init(model_dir) and score(model, data)."""

    kind = "score_file"


class PortInUse(AmlrError):
    """The port for a local endpoint is taken by another server."""

    kind = "port_in_use"


class EndpointNotFound(AmlrError):
    """No endpoint of that name."""

    kind = "endpoint_not_found"


class EndpointExists(AmlrError):
    """An endpoint of that name exists already."""

    kind = "endpoint_exists"


class EndpointFailed(AmlrError):
    """The server did not come up (init() failed, R could not start, timeout)."""

    kind = "endpoint_failed"


class EndpointDown(AmlrError):
    """A recorded endpoint whose server is gone or does not answer."""

    kind = "endpoint_down"


class EndpointTimeout(AmlrError):
    """A scoring request that took longer than its timeout."""

    kind = "endpoint_timeout"


class BadInput(AmlrError):
    """Data the endpoint rejected (HTTP 400): not what score() expects."""

    kind = "bad_input"


class ScoreFailed(AmlrError):
    """score() raised an error on the server (HTTP 500)."""

    kind = "score_failed"


#: Kinds the bridge itself reports without an AmlrError: an unexpected Python
#: exception (always a bug in amlr).
BRIDGE_KINDS = ("python",)


def kinds() -> dict[str, str]:
    """Every kind, with the first line of its class's docstring (for ``?amlr_errors``' test)."""
    out = dict.fromkeys(BRIDGE_KINDS, "An unexpected Python error: a bug in amlr.")
    todo: list[type[AmlrError]] = [AmlrError]
    while todo:
        cls = todo.pop()
        out[cls.kind] = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        todo.extend(cls.__subclasses__())
    return out


BUG_REPORT = (
    "This is a bug in amlr: please report it to amlr's maintainers with the traceback "
    "(in R: rlang::last_error()$python_traceback)."
)
