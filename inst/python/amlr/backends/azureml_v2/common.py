"""The v2 backend's constants, status mapping and small JSON files."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from .. import AML_STATUS_MAP as STATUS_MAP


BACKEND = "azureml_v2"
METRICS_SINK = "mlflow"  # Azure ML v2 jobs log to MLflow
SERVERLESS = "serverless"
"""Azure ML's serverless compute: the pipeline default when no compute is named."""
CHILDREN_FILE = "children.json"
CANCEL_WAIT = 60.0
LOG_FETCH_TIMEOUT = 30.0
REUSED_FLAG = "azureml.isreused"
REUSED_FROM = "azureml.reusedrunid"

STATUS_NOTES = {
    "NotResponding": "Azure ML reports the job NotResponding (no heartbeat from the compute); it may recover.",
    "Paused": "Azure ML reports the job Paused.",
    "CancelRequested": "Cancel requested; Azure ML is stopping the job.",
}

POLL_SECONDS = 5.0  # how often a waiting reader asks Azure ML for news


def map_status(v2_status: Optional[str], previous: str = "NotStarted") -> str:
    """amlr's status for an Azure ML job state; an unknown state keeps ``previous``."""
    return STATUS_MAP.get(v2_status or "", previous)

def _write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
