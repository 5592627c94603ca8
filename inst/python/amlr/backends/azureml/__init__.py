"""The classic Azure ML backend: an R pipeline as an azureml-core pipeline.

Every step runs amlr's bootstrapper from the step's snapshot, on the step's
compute target, in an Environment made from the step's ``r_environment()``.
The work is split so that the objects can be built -- and tested -- offline:

1. :func:`plan_pipeline` (local only): snapshots, environments, compute names.
2. Side effects on the workspace: :func:`upload_inputs` (local-path inputs to
   the datastore, once per content hash), :func:`upload_build_contexts`
   (Docker build contexts), both through the SDK.
3. :func:`build_pipeline` (no network): the real ``azureml.pipeline.core``
   objects -- CommandStep / EstimatorStep / PythonScriptStep, PipelineData,
   DataReference, Environment -- and the ``Pipeline`` that holds them.
4. :func:`submit`: ``Experiment.submit``, then a registry row.

How data reaches the bootstrapper: step outputs are ``PipelineData`` and
local-path / datastore inputs are ``DataReference`` mounts. AML mounts both
itself and sets ``$AZUREML_DATAREFERENCE_<port>`` to the mounted path, so the
job image needs no azureml-dataprep / FUSE packages (which dataset mounts,
``OutputFileDatasetConfig`` included, would need inside a user-managed R
image). Every step type runs ``python _amlr/bootstrapper.py --step
_amlr/steps/<step>.json --input NAME <binding> --output NAME <binding>``, the
bindings being the SDK's own objects as arguments of their own (the SDK turns
them into structured input/output arguments that the service substitutes).
Nothing in it is shell text: joined with spaces and run by a shell it means the
same (the shell expands ``$AZUREML_DATAREFERENCE_<port>``), and a binding that
arrives unsubstituted is read from that variable by the bootstrapper. The R
script, its arguments and its variables are in the step's contract file.
Each step has its own snapshot (:mod:`amlr.packaging`), so Azure ML's reuse
re-runs only the steps whose code or contract changed.

The Azure SDKs are imported inside the functions that need them; importing
this module costs nothing, and ``azureml.train.estimator`` (about five
seconds to import) is imported only for ``step_type = "estimator"``.
"""
# The backend is split along the steps above: common (constants), plan (1, 2),
# build (3), launch (4: submit and publish) and runs (the readers). Every name stays importable from
# amlr.backends.azureml.
from __future__ import annotations

from ... import snapshot
from ...errors import AzureMLError, Credentials, InvalidSpec
from .common import (BOOTSTRAPPER, BACKEND, METRICS_SINK, INPUTS_PREFIX, DEFAULT_COMPUTE_TYPE, UPLOAD_CACHE,
                     LOG_PREFERENCE, POLL_SECONDS, map_status, binding, _REMOTE_RUNS, _read_json, _write_json)
from .plan import (StepPlan, Plan, _fixed_values, plan_pipeline, input_path_on_datastore, upload_inputs,
                   needs_build_context, upload_build_contexts, datastore_uri)
from .build import (classic_environment, Built, build_pipeline, _inputs, registered_output, get_registered_dataset,
                    _lookup_datastore, _runconfig, _command_step, _script_args, _python_script_step,
                    _estimator_step)
from .launch import (_secrets, _scrub, _remote_failure, _compute_types, publish_pipeline, _find_endpoint,
                     _published_info, _default_datastore, Prepared, prepare, _discarded_on_failure,
                     _as_remote_failure, submit, publish, _opt_bool)
from .runs import (remote_run, _time, _error_message, refresh, reused_from, _step_runs, steps, user_log, _chosen,
                   _StepRuns, _step_log, logs, follow, cancel, download, _built_outputs, _download_output,
                   _download_run_folder, _download_logs, metrics)

__all__ = [
    'BACKEND', 'BOOTSTRAPPER', 'DEFAULT_COMPUTE_TYPE', 'INPUTS_PREFIX', 'LOG_PREFERENCE', 'METRICS_SINK',
    'POLL_SECONDS', 'UPLOAD_CACHE', '_REMOTE_RUNS', 'AzureMLError', 'Built', 'Credentials', 'InvalidSpec',
    'Plan', 'Prepared', 'StepPlan', '_StepRuns', '_as_remote_failure', '_built_outputs', '_chosen',
    '_command_step', '_compute_types', '_default_datastore', '_discarded_on_failure', '_download_logs',
    '_download_output', '_download_run_folder', '_error_message', '_estimator_step', '_find_endpoint',
    '_fixed_values', '_inputs', '_lookup_datastore', '_opt_bool', '_published_info', '_python_script_step',
    '_read_json', '_remote_failure', '_runconfig', '_script_args', '_scrub', '_secrets', '_step_log',
    '_step_runs', '_time', '_write_json', 'binding', 'build_pipeline', 'cancel', 'classic_environment',
    'datastore_uri', 'download', 'follow', 'get_registered_dataset', 'input_path_on_datastore', 'logs',
    'map_status', 'metrics', 'needs_build_context', 'plan_pipeline', 'prepare', 'publish', 'publish_pipeline',
    'refresh', 'registered_output', 'remote_run', 'reused_from', 'snapshot', 'steps', 'submit',
    'upload_build_contexts', 'upload_inputs', 'user_log'
]
