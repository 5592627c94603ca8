"""The ``azureml_v2`` backend: an amlr pipeline as an Azure ML v2 pipeline job.

One plan, two renderings. :func:`stage` packages every step (snapshot, build
context) and :func:`plan_node` turns a step into what a v2 command job needs:
its command line (from :mod:`amlr.stepcontract`, like every backend), inputs,
outputs, environment and compute. :mod:`amlr.export` writes that plan as the
YAML ``az ml job create --file`` reads; :func:`to_azure_job` builds the same
job from azure-ai-ml objects, which :func:`submit` sends through
``MLClient.jobs.create_or_update``. Nothing about a step is decided twice.

Following a run. Azure ML is the source of truth: :func:`refresh` reads the
pipeline job and its child jobs (``jobs.get``, ``jobs.list(parent_job_name=)``)
and mirrors their states into the registry, so ``steps`` and ``follow`` read
what the last refresh saw. Child jobs carry no start/end times, so a step's
``started``/``ended`` are when amlr first saw it running/ended (accurate to a
poll). Log text comes from the same run-history log files that
``jobs.stream`` reads (``user_logs/std_log.txt``, or the legacy
``azureml-logs/70_driver_log.txt``): ``stream`` blocks until the job ends and
refuses child jobs, which does not fit R's polling ``run_wait()``. The
``follow`` cursor holds, per step, how many bytes of that file were shown and
whether the step's log is complete; the file is fetched whole per poll.

Metrics are MLflow metrics of each child job (the bootstrapper logs them with
``--metrics-sink mlflow``); reading them needs ``mlflow`` and
``azureml-mlflow`` in amlr's Python.

azure-ai-ml is imported only inside the functions that need it: it takes
seconds to import, and this module is also imported by ``export``.
"""
# The backend is split along the sections above: common (constants), plan (the plan
# and its azure-ai-ml objects), client (MLClient, errors), launch (submit) and runs
# (refresh and the readers). Every name stays importable from amlr.backends.azureml_v2.
from __future__ import annotations

from ...errors import AzureRequestFailed, StepNotFinished
from .common import (BACKEND, METRICS_SINK, SERVERLESS, CHILDREN_FILE, CANCEL_WAIT, LOG_FETCH_TIMEOUT, REUSED_FLAG,
                     REUSED_FROM, STATUS_NOTES, POLL_SECONDS, map_status, _write_json, _read_json)
from .plan import (NodeInput, NodeEnvironment, CommandNode, JobPlan, input_binding, output_binding, parent_output,
                   compute_ref, uri_type, asset_reference, plan_input, plan_node, _stage_environment, registry_note,
                   stage, _sdk, _sdk_environment, sdk_compute, to_azure_job, gather_node, _map_folder,
                   _sweep_job)
from .client import (connect, DEV_URL_ENV, LOOPBACK_HOSTS, _is_loopback_http, loopback_options,
                     SECRET_NAME_SUFFIXES, _secret_values, redact, _detail, translate_error, azure_call,
                     _workspace_info, client_for)
from .launch import _check_options, submit, with_asset_types
from .runs import (children_map, _child_sort_key, _sync_steps, refresh, steps, pick_log, log_text, _chosen_steps,
                   logs, follow, cancel, _step_outputs, download, mlflow_tracker, SYSTEM_TAG_PREFIXES, _iso,
                   step_metrics, metrics)

__all__ = [
                     'BACKEND',
                     'CANCEL_WAIT',
                     'CHILDREN_FILE',
                     'DEV_URL_ENV',
                     'LOG_FETCH_TIMEOUT',
                     'LOOPBACK_HOSTS',
                     'METRICS_SINK',
                     'POLL_SECONDS',
                     'REUSED_FLAG',
                     'REUSED_FROM',
                     'SECRET_NAME_SUFFIXES',
                     'SERVERLESS',
                     'STATUS_NOTES',
                     'SYSTEM_TAG_PREFIXES',
                     "AzureRequestFailed",
                     'CommandNode',
                     'JobPlan',
                     'NodeEnvironment',
                     'NodeInput',
                     "StepNotFinished",
                     '_check_options',
                     '_child_sort_key',
                     '_chosen_steps',
                     '_detail',
                     '_is_loopback_http',
                     '_iso',
                     '_map_folder',
                     '_read_json',
                     '_sdk',
                     '_sdk_environment',
                     '_secret_values',
                     '_stage_environment',
                     '_step_outputs',
                     '_sweep_job',
                     '_sync_steps',
                     '_workspace_info',
                     '_write_json',
                     'asset_reference',
                     'azure_call',
                     'cancel',
                     'children_map',
                     'client_for',
                     'compute_ref',
                     'connect',
                     'download',
                     'follow',
                     'gather_node',
                     'input_binding',
                     'log_text',
                     'logs',
                     'loopback_options',
                     'map_status',
                     'metrics',
                     'mlflow_tracker',
                     'output_binding',
                     'parent_output',
                     'pick_log',
                     'plan_input',
                     'plan_node',
                     'redact',
                     'refresh',
                     'registry_note',
                     'sdk_compute',
                     'stage',
                     'step_metrics',
                     'steps',
                     'submit',
                     'to_azure_job',
                     'translate_error',
                     'uri_type',
                     'with_asset_types'
]
