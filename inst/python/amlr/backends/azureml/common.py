"""The classic backend's constants, status mapping and small shared helpers."""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

from .. import AML_STATUS_MAP as STATUS_MAP

BOOTSTRAPPER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "bootstrapper.py")
BACKEND = "azureml"
# ``auto``: AML run history when azureml-core is importable in the image, else
# the values stay in the step log; an R image without Python packages still runs.
METRICS_SINK = "auto"
INPUTS_PREFIX = "amlr/inputs"
DEFAULT_COMPUTE_TYPE = "AmlCompute"
UPLOAD_CACHE = "azureml-uploads.json"
LOG_PREFERENCE = ("user_logs/std_log.txt", "azureml-logs/70_driver_log.txt")


POLL_SECONDS = 5.0  # how often a waiting reader asks Azure ML for news


def map_status(status: Optional[str]) -> str:
    """amlr's status for an AML run/step status (unknown non-terminal states count as Running)."""
    return STATUS_MAP.get(status or "NotStarted", "Running")


def binding(port: str) -> str:
    """How a step's command names the mounted path of its input/output port."""
    return f"$AZUREML_DATAREFERENCE_{port}"


# PipelineRun objects by amlr run id: one bridge call (follow) refreshes, reads
# logs and steps; the workspace look-up behind a PipelineRun is done once.
_REMOTE_RUNS: dict[str, Any] = {}


# -- small files -------------------------------------------------------------------------------


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: str, data: Mapping[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)
