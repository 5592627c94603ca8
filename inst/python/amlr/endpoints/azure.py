"""Azure ML managed online endpoints: the plan, its export as YAML, and the deployment."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import (BadRequest, EndpointError)
from .records import (SERVE_PORT, ROUTES, MODEL_MOUNT_PATH, APP_DIR_IN_IMAGE, DEPLOYMENT_PREFIX, ModelRef,
                      check_name)


# -- Azure ML: the plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class AzurePlan:
    name: str
    deployment: str
    model: ModelRef
    score_file: str
    serve_script: str
    environment: Any  # amlr.environment.ResolvedEnvironment
    instance_type: str
    instance_count: int
    identity: str


DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"


def _file_hash(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def serving_environment(spec: Optional[dict[str, Any]]) -> Any:
    """The step image, plus plumber: ``CRAN_PACKAGES`` for amlr's Dockerfile, an install for an own image."""
    from ..environment import resolve_environment

    spec = dict(spec or {})
    if not spec.get("image"):
        packages = spec.get("cran_packages") or []
        if isinstance(packages, str):
            packages = [packages]
        spec["cran_packages"] = sorted(set(packages) | {"plumber"})
    return resolve_environment(spec)


def plan_azure(name: str, model: ModelRef, score_file: str, *, serve_script: str, environment: Optional[dict],
               instance_type: Optional[str], instance_count: Any) -> AzurePlan:
    check_name(name)
    if isinstance(instance_count, float) and instance_count.is_integer():
        instance_count = int(instance_count)
    if not isinstance(instance_count, int) or isinstance(instance_count, bool) or instance_count < 1:
        raise BadRequest(f"`instance_count` must be a whole number of at least 1, not {instance_count!r}.",
                         field="instance_count")
    if instance_type is not None and (not isinstance(instance_type, str) or not re.match(r"^[A-Za-z0-9_]+$",
                                                                                         instance_type)):
        raise BadRequest(f"`instance_type` {instance_type!r} is not a VM size like \"Standard_DS3_v2\".",
                         field="instance_type")
    env = serving_environment(environment)
    model_identity = model.azure_id or ("folder:" + _folder_hash(model.path or ""))
    payload = {
        "environment": env.identity,
        "serve": _file_hash(serve_script),
        "score": _file_hash(score_file),
        "model": model_identity,
        "instance_type": instance_type or DEFAULT_INSTANCE_TYPE,
        "instance_count": instance_count,
    }
    identity = hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()
    return AzurePlan(name=name, deployment=DEPLOYMENT_PREFIX + identity[:12], model=model, score_file=score_file,
                     serve_script=serve_script, environment=env, instance_type=instance_type or DEFAULT_INSTANCE_TYPE,
                     instance_count=instance_count, identity=identity)


def _folder_hash(path: str) -> str:
    from ..snapshot import hash_path

    return hash_path(path)


def serving_layer() -> str:
    return (
        "\n# --- amlr: serve an R model with plumber (deploy_r_model()) ---\n"
        "RUN Rscript -e 'if (!requireNamespace(\"plumber\", quietly = TRUE)) install.packages(\"plumber\", "
        "repos = Sys.getenv(\"CRAN\", \"https://cloud.r-project.org\"))'\n"
        f"COPY amlr-serve/ {APP_DIR_IN_IMAGE}/\n"
        f"ENV AMLR_SERVE_SCORE={APP_DIR_IN_IMAGE}/score.R \\\n"
        f"    AMLR_MODEL_DIR={MODEL_MOUNT_PATH} \\\n"
        "    AMLR_SERVE_HOST=0.0.0.0 \\\n"
        f"    AMLR_SERVE_PORT={SERVE_PORT}\n"
        f"EXPOSE {SERVE_PORT}\n"
        f"WORKDIR {APP_DIR_IN_IMAGE}\n"
        f"CMD [\"Rscript\", \"{APP_DIR_IN_IMAGE}/serve.R\"]\n"
    )


def write_serving_context(plan: AzurePlan, dest: str) -> str:
    """The Docker build context of the deployment: the step image + plumber + the app."""
    from ..environment import write_build_context

    env = plan.environment
    if env.builds_image:
        write_build_context(env, dest)
        dockerfile = os.path.join(dest, "Dockerfile")
        with open(dockerfile, encoding="utf-8") as fh:
            text = fh.read()
        # The base image's CMD is replaced by the server's.
        text = re.sub(r"(?m)^CMD .*\n?", "", text).rstrip("\n") + "\n"
    else:
        os.makedirs(dest, exist_ok=True)
        text = f"# amlr serving image on top of {env.image}\nFROM {env.image}\n"
    with open(os.path.join(dest, "Dockerfile"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text + serving_layer())
    app = os.path.join(dest, "amlr-serve")
    os.makedirs(app, exist_ok=True)
    shutil.copyfile(plan.serve_script, os.path.join(app, "serve.R"))
    shutil.copyfile(plan.score_file, os.path.join(app, "score.R"))
    return os.path.abspath(dest)


def inference_config() -> dict[str, Any]:
    return {key: {"port": SERVE_PORT, "path": path} for key, path in ROUTES.items()}


def environment_name(plan: AzurePlan) -> str:
    return f"amlr-serve-{plan.name}"


def environment_version(plan: AzurePlan) -> str:
    """The image's content: environment + app files (the model is mounted, not built in)."""
    h = hashlib.sha256(plan.environment.identity.encode())
    h.update(_file_hash(plan.serve_script).encode())
    h.update(_file_hash(plan.score_file).encode())
    return h.hexdigest()[:12]


def sdk_objects(plan: AzurePlan, context_dir: str, model_path: Optional[str] = None) -> tuple[Any, Any]:
    """(ManagedOnlineEndpoint, ManagedOnlineDeployment) of the plan, built with azure-ai-ml."""
    from ..backends.azureml_v2 import _sdk

    _sdk()
    from azure.ai.ml.entities import (BuildContext, Environment, ManagedOnlineDeployment, ManagedOnlineEndpoint,
                                      Model, OnlineRequestSettings, ProbeSettings)

    endpoint = ManagedOnlineEndpoint(name=plan.name, auth_mode="key",
                                     description="R model served by amlr (deploy_r_model())",
                                     tags={"amlr": "deploy_r_model"})
    environment = Environment(name=environment_name(plan), version=environment_version(plan),
                              build=BuildContext(path=context_dir), inference_config=inference_config())
    if plan.model.azure_id:
        model: Any = plan.model.azure_id
    else:
        model = Model(path=model_path or plan.model.path, type="custom_model",
                      name=f"{plan.name}-model", description="model folder deployed by amlr")
    # R takes a few seconds to start and init() may load a large model: generous probes.
    probe = ProbeSettings(initial_delay=20, period=10, timeout=5, failure_threshold=30)
    deployment = ManagedOnlineDeployment(
        name=plan.deployment,
        endpoint_name=plan.name,
        model=model,
        model_mount_path=MODEL_MOUNT_PATH,
        environment=environment,
        environment_variables={"AMLR_MODEL_DIR": MODEL_MOUNT_PATH},
        instance_type=plan.instance_type,
        instance_count=plan.instance_count,
        liveness_probe=probe,
        readiness_probe=probe,
        request_settings=OnlineRequestSettings(request_timeout_ms=60000, max_concurrent_requests_per_instance=1),
        tags={"amlr_identity": plan.identity},
    )
    return endpoint, deployment


# -- Azure ML: export ---------------------------------------------------------------------------


def export_endpoint(plan: AzurePlan, path: str, *, overwrite: bool = False) -> dict[str, Any]:
    from ..export import dump_yaml

    dest = os.path.abspath(path)
    targets = [os.path.join(dest, n) for n in ("endpoint.yml", "deployment.yml", "environment", "model")]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not overwrite:
        from ..errors import FileExists

        raise FileExists(f"`{existing[0]}` already exists; choose another `path` or pass overwrite = TRUE.")
    for t in existing:
        shutil.rmtree(t) if os.path.isdir(t) else os.remove(t)
    os.makedirs(dest, exist_ok=True)
    write_serving_context(plan, os.path.join(dest, "environment"))
    if plan.model.azure_id:
        model: Any = plan.model.azure_id
    else:
        shutil.copytree(plan.model.path or "", os.path.join(dest, "model"))
        model = {"name": f"{plan.name}-model", "type": "custom_model", "path": "model"}
    endpoint = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json",
        "name": plan.name,
        "auth_mode": "key",
        "description": "R model served by amlr (deploy_r_model())",
    }
    probe = {"initial_delay": 20, "period": 10, "timeout": 5, "failure_threshold": 30}
    deployment = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
        "name": plan.deployment,
        "endpoint_name": plan.name,
        "model": model,
        "model_mount_path": MODEL_MOUNT_PATH,
        "environment": {
            "name": environment_name(plan),
            "version": environment_version(plan),
            "build": {"path": "environment"},
            "inference_config": inference_config(),
        },
        "environment_variables": {"AMLR_MODEL_DIR": MODEL_MOUNT_PATH},
        "instance_type": plan.instance_type,
        "instance_count": plan.instance_count,
        "liveness_probe": probe,
        "readiness_probe": probe,
        "request_settings": {"request_timeout_ms": 60000, "max_concurrent_requests_per_instance": 1},
    }
    header = (f"# Written by amlr::export_endpoint() for endpoint `{plan.name}`.\n"
              "#   az ml online-endpoint create -f endpoint.yml\n"
              "#   az ml online-deployment create -f deployment.yml --all-traffic\n")
    for fname, doc in (("endpoint.yml", endpoint), ("deployment.yml", deployment)):
        with open(os.path.join(dest, fname), "w", encoding="utf-8", newline="\n") as fh:
            fh.write(header + dump_yaml(doc))
    return {"path": dest, "endpoint": os.path.join(dest, "endpoint.yml"),
            "deployment": os.path.join(dest, "deployment.yml"), "deployment_name": plan.deployment,
            "files": sorted(os.path.relpath(os.path.join(r, f), dest) for r, _, fs in os.walk(dest) for f in fs)}


# -- Azure ML: deploy ---------------------------------------------------------------------------


def deploy_azure(client: Any, plan: AzurePlan, staging: str) -> dict[str, Any]:
    """Create or update the endpoint, add the deployment (if new), move all traffic to it when ready."""
    from ..backends.azureml_v2 import azure_call

    context = os.path.join(staging, environment_version(plan))
    if not os.path.isdir(context):
        write_serving_context(plan, context)
    endpoint, deployment = sdk_objects(plan, context)
    with azure_call(f"creating online endpoint `{plan.name}`"):
        try:
            existing = client.online_endpoints.get(plan.name)
        except Exception as exc:  # not found: create it
            from azure.core.exceptions import ResourceNotFoundError

            if not isinstance(exc, ResourceNotFoundError):
                raise
            existing = client.online_endpoints.begin_create_or_update(endpoint).result()
    names = {d.name for d in client.online_deployments.list(endpoint_name=plan.name)}
    with azure_call(f"creating deployment `{plan.deployment}` of `{plan.name}`"):
        if plan.deployment not in names:
            client.online_deployments.begin_create_or_update(deployment).result()
    with azure_call(f"moving the traffic of `{plan.name}` to `{plan.deployment}`"):
        existing.traffic = {plan.deployment: 100}
        existing = client.online_endpoints.begin_create_or_update(existing).result()
    return {
        "name": plan.name,
        "backend": "azureml_v2",
        "deployment": plan.deployment,
        "previous_deployments": sorted(names - {plan.deployment}),
        "url": getattr(existing, "scoring_uri", None),
        "model": plan.model.to_json(),
        "score_file": plan.score_file,
        "created": time.time(),
    }


def _workspace_client(params: dict[str, Any], *, stored: bool = False) -> tuple[Any, Any]:
    """An MLClient for the workspace R sent (``aml_workspace()``), or the one an endpoint record stored."""
    from ..backends.azureml_v2 import connect
    from ..workspace import from_json, resolve

    if stored:
        if not params.get("workspace"):
            raise EndpointError("This endpoint's record has no workspace; delete it and deploy again.")
        info = from_json(params["workspace"])
    else:
        info = resolve(params.get("workspace"))
    return info, connect(info)
