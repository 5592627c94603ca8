"""Serving an R model over HTTP: local servers and Azure ML managed online endpoints.

``deploy_r_model()`` runs amlr's plumber app (``inst/serve/serve.R``) with the
user's score file (``init(model_dir)``, ``score(model, data)``):

* **local**: an ``Rscript`` process on 127.0.0.1, started detached with
  :func:`amlr.procs.spawn_detached` so it outlives the R session that asked.
  Each endpoint is one folder, ``AMLR_HOME/endpoints/<name>/``, holding
  ``endpoint.json`` (the record: port, pid and its identity, model), the copy of
  the score file the server runs, and ``server.log``. A JSON file per endpoint
  rather than a registry table: an endpoint has no steps or metrics to join,
  and deleting it is removing its folder. Status is never trusted from the
  record: the pid's identity and a ``GET /live`` decide.
* **azureml_v2**: a ``ManagedOnlineEndpoint`` and a ``ManagedOnlineDeployment``
  whose environment is amlr's R image plus plumber and the app, with Azure
  ML's ``inference_config`` routes. The deployment is named after a content
  hash of everything it runs, so a change makes a new deployment, and traffic
  moves to it once it is ready. ``export_endpoint()`` writes the same objects
  as ``endpoint.yml`` + ``deployment.yml`` + the Docker build context.

Stdlib only for the local path (``urllib``, ``socket``); azure-ai-ml is imported
when an Azure object is built.
"""
# Split along the sections above: records (inputs and records), local (local servers),
# azure (Azure ML: plan, export, deploy) and bridge (the endpoint_* methods). Every
# name stays importable from amlr.endpoints.
from __future__ import annotations

from ..errors import (BadInput, EndpointDown, EndpointError, EndpointExists, EndpointFailed, EndpointNotFound,
                      EndpointTimeout, InvalidEndpointName, ModelNotFound, PortInUse, ScoreFailed, ScoreFileError)
from .records import (SERVE_PORT, ROUTES, MODEL_MOUNT_PATH, APP_DIR_IN_IMAGE, RECORD, NAME_RE, DEPLOYMENT_PREFIX,
                      ModelRef, check_name, model_ref, check_score_file, endpoints_dir, endpoint_dir, read_record,
                      write_record, list_names, log_tail)
from .local import (port_free, free_port, check_port, http_json, _alive, _reap, _stop, wait_ready, _failure_message,
                    name_lock, SECRET_SUFFIXES, server_environ, deploy_local, _deploy_local, local_status,
                    AZURE_STATES, azure_status, with_status, invoke_local, check_answer, delete_local)
from .azure import (AzurePlan, DEFAULT_INSTANCE_TYPE, _file_hash, serving_environment, plan_azure, _folder_hash,
                    serving_layer, write_serving_context, inference_config, environment_name, environment_version,
                    sdk_objects, export_endpoint, deploy_azure, _workspace_client)
from .bridge import (_home, _timeout, _plan_from, endpoint_deploy, endpoint_export, endpoint_get, endpoint_list,
                     endpoint_logs, endpoint_invoke, endpoint_delete)

__all__ = [
                      'APP_DIR_IN_IMAGE',
                      'AZURE_STATES',
                      'DEFAULT_INSTANCE_TYPE',
                      'DEPLOYMENT_PREFIX',
                      'MODEL_MOUNT_PATH',
                      'NAME_RE',
                      'RECORD',
                      'ROUTES',
                      'SECRET_SUFFIXES',
                      'SERVE_PORT',
                      'AzurePlan',
                      "BadInput",
                      "EndpointDown",
                      "EndpointError",
                      "EndpointExists",
                      "EndpointFailed",
                      "EndpointNotFound",
                      "EndpointTimeout",
                      "InvalidEndpointName",
                      "ModelNotFound",
                      'ModelRef',
                      "PortInUse",
                      "ScoreFailed",
                      "ScoreFileError",
                      '_alive',
                      '_deploy_local',
                      '_failure_message',
                      '_file_hash',
                      '_folder_hash',
                      '_home',
                      '_plan_from',
                      '_reap',
                      '_stop',
                      '_timeout',
                      '_workspace_client',
                      'azure_status',
                      'check_answer',
                      'check_name',
                      'check_port',
                      'check_score_file',
                      'delete_local',
                      'deploy_azure',
                      'deploy_local',
                      'endpoint_delete',
                      'endpoint_deploy',
                      'endpoint_dir',
                      'endpoint_export',
                      'endpoint_get',
                      'endpoint_invoke',
                      'endpoint_list',
                      'endpoint_logs',
                      'endpoints_dir',
                      'environment_name',
                      'environment_version',
                      'export_endpoint',
                      'free_port',
                      'http_json',
                      'inference_config',
                      'invoke_local',
                      'list_names',
                      'local_status',
                      'log_tail',
                      'model_ref',
                      'name_lock',
                      'plan_azure',
                      'port_free',
                      'read_record',
                      'sdk_objects',
                      'server_environ',
                      'serving_environment',
                      'serving_layer',
                      'wait_ready',
                      'with_status',
                      'write_record',
                      'write_serving_context'
]
