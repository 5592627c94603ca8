"""Step 4 of the classic backend: submit and publish, and the registry rows they write."""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Optional

from .. import option_text
from ... import workspace as workspaces
from ...environment import (
    registry_password,
)
from ...errors import AmlrError, AzureMLError
from ...registry import Registry
from ...spec import Pipeline
from .common import BACKEND, UPLOAD_CACHE, _REMOTE_RUNS, _write_json
from .plan import Plan, plan_pipeline, upload_inputs, upload_build_contexts
from .build import Built, build_pipeline, get_registered_dataset


# -- 4. submit and publish ---------------------------------------------------------------------


def _secrets(plan: Optional[Plan] = None) -> list[str]:
    values = [os.environ.get(workspaces.SECRET_ENV, "")]
    if plan is not None:
        values += [registry_password(env) or "" for env in plan.environments.values()]
    return [v for v in values if len(v) >= 4]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _remote_failure(what: str, exc: Exception, secrets: Iterable[str] = ()) -> AzureMLError:
    detail = _scrub(f"{type(exc).__name__}: {exc}", list(secrets) + _secrets())
    return AzureMLError(f"Azure ML could not {what}: {detail}")


def _compute_types(workspace: Any, plan: Plan) -> dict[str, str]:
    """Compute name -> type, checking that every compute the plan names exists."""
    targets = workspace.compute_targets
    wanted = sorted({p.compute for p in plan.steps})
    missing = [c for c in wanted if c not in targets]
    if missing:
        raise AzureMLError(
            f"Compute target(s) {', '.join(missing)} not found in workspace {workspace.name} "
            f"(it has: {', '.join(sorted(targets)) or 'none'}). Create a compute cluster in the studio, or "
            "give an existing one to r_step(compute = ...)."
        )
    return {c: targets[c].type for c in wanted}


def publish_pipeline(workspace: Any, built: Built, plan: Plan, name: str) -> dict[str, Any]:
    """Publish under a PipelineEndpoint ``name``: an identical pipeline is reused, not published again.

    Identity is :meth:`Plan.content_hash`, stored as the published pipeline's
    ``version``; a changed pipeline becomes the endpoint's new default.
    """
    from azureml.pipeline.core import PipelineEndpoint

    version = plan.content_hash()[:16]
    description = plan.pipeline.description or f"amlr pipeline {plan.pipeline.name}"
    endpoint = _find_endpoint(workspace, name)
    if endpoint is not None:
        for published in endpoint.list_pipelines():
            if getattr(published, "version", None) == version:
                endpoint.set_default(published)
                return _published_info(endpoint, published, version, reused=True)
        published = built.pipeline.publish(name=name, description=description, version=version)
        endpoint.add_default(published)
    else:
        published = built.pipeline.publish(name=name, description=description, version=version)
        endpoint = PipelineEndpoint.publish(workspace=workspace, name=name, description=description,
                                            pipeline=published)
    return _published_info(endpoint, published, version, reused=False)


def _find_endpoint(workspace: Any, name: str) -> Any:
    from azureml.pipeline.core import PipelineEndpoint

    try:
        return PipelineEndpoint.get(workspace=workspace, name=name)
    except Exception as exc:  # the SDK signals "no such endpoint" as an HTTP 404 error
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            return None
        raise


def _published_info(endpoint: Any, published: Any, version: str, *, reused: bool) -> dict[str, Any]:
    return {
        "endpoint": endpoint.name,
        "endpoint_id": endpoint.id,
        "endpoint_url": getattr(endpoint, "endpoint", None),
        "pipeline_id": published.id,
        "version": version,
        "reused": reused,
    }


def _default_datastore(workspace: Any, name: Optional[str]) -> Any:
    if name:
        from azureml.core import Datastore

        return Datastore.get(workspace, name)
    return workspace.get_default_datastore()


@dataclass
class Prepared:
    """A pipeline built against a live workspace, its uploads done: ready to submit or publish."""

    info: workspaces.WorkspaceInfo
    workspace: Any
    plan: Plan
    built: Built
    warnings: list[str]
    secrets: list[str]


def prepare(reg: Registry, pipeline: Pipeline, run_dir: str, options: Mapping[str, Any]) -> Prepared:
    """Plan, connect, upload, build (with secrets, for the SDK only); a summary goes to ``run_dir``."""
    info = workspaces.resolve(options.get("workspace"))
    warnings: list[str] = []
    plan = plan_pipeline(pipeline, run_dir, default_compute=option_text(options, "compute"), warn=warnings.append)
    secrets = _secrets(plan)
    try:
        workspace = workspaces.classic_workspace(info)
        datastore = _default_datastore(workspace, option_text(options, "datastore"))
        compute_types = _compute_types(workspace, plan)
        input_paths = upload_inputs(plan, datastore, cache_path=os.path.join(reg.home, UPLOAD_CACHE),
                                    cache_key=info.arm_id)
        contexts = upload_build_contexts(workspace, plan)
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"prepare the pipeline in workspace {info.workspace_name}", exc, secrets) from None
    built = build_pipeline(
        workspace, plan, datastore=datastore, input_paths=input_paths, build_contexts=contexts,
        compute_types=compute_types, get_datastore=lambda name: _default_datastore(workspace, name),
        include_secrets=True, get_dataset=lambda name, version: get_registered_dataset(workspace, name, version),
    )
    _write_json(os.path.join(run_dir, "azureml.json"), built.describe(plan))
    return Prepared(info, workspace, plan, built, warnings, secrets)


@contextlib.contextmanager
def _discarded_on_failure(folder: str) -> Iterator[None]:
    """Create ``folder``; if what follows fails, nothing was recorded: remove it again."""
    os.makedirs(folder, exist_ok=True)
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


@contextlib.contextmanager
def _as_remote_failure(action: str, secrets: Iterable[str]) -> Iterator[None]:
    """An SDK exception becomes a classed amlr error with the secrets redacted."""
    try:
        yield
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(action, exc, secrets) from None


def submit(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """Build, upload, submit; the run is recorded with its PipelineRun id and portal link.

    Options: ``workspace`` (from aml_workspace()), ``compute`` (default compute
    target), ``datastore`` (for uploaded inputs; default: the workspace's),
    ``publish`` / ``publish_name``, ``continue_on_step_failure``,
    ``regenerate_outputs`` (run every step even when AML could reuse it).
    """
    run_dir = reg.run_dir(run_id)
    with _discarded_on_failure(run_dir):
        ready = prepare(reg, pipeline, run_dir, options)
        published = None
        with _as_remote_failure("submit the pipeline", ready.secrets):
            if _opt_bool(options, "publish"):
                published = publish_pipeline(ready.workspace, ready.built, ready.plan,
                                             option_text(options, "publish_name") or pipeline.name)
            from azureml.core import Experiment

            remote = Experiment(ready.workspace, experiment).submit(
                ready.built.pipeline,
                tags={"amlr_run_id": run_id, "amlr_pipeline": pipeline.name},
                continue_on_step_failure=_opt_bool(options, "continue_on_step_failure"),
                regenerate_outputs=_opt_bool(options, "regenerate_outputs"),
            )
            portal = remote.get_portal_url()
    reg.insert_run(
        {
            "id": run_id,
            "experiment": experiment,
            "pipeline": pipeline.name,
            "backend": BACKEND,
            "status": "Queued",
            "run_dir": run_dir,
            "remote_id": remote.id,
            "portal_url": portal,
            "workspace": ready.info.to_json(),
        },
        [{"name": p.step.name, "fingerprint": p.snapshot.hash, "allow_reuse": p.step.allow_reuse,
          "status": "NotStarted"} for p in ready.plan.steps],
    )
    _REMOTE_RUNS[run_id] = remote
    out = reg.get_run(run_id)
    out["warnings"] = ready.warnings
    if published is not None:
        out["published"] = published
    return out


def publish(reg: Registry, pipeline: Pipeline, name: Optional[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """Publish without running (R's publish_r_pipeline()); the build is kept under ``<home>/published``."""
    build_dir = os.path.join(reg.home, "published", f"{pipeline.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    with _discarded_on_failure(build_dir):
        ready = prepare(reg, pipeline, build_dir, options)
        with _as_remote_failure("publish the pipeline", ready.secrets):
            out = publish_pipeline(ready.workspace, ready.built, ready.plan, name or pipeline.name)
    out["warnings"] = ready.warnings
    out["workspace"] = ready.info.to_json()
    out["portal_url"] = workspaces.portal_url(ready.info)
    return out


def _opt_bool(options: Mapping[str, Any], key: str) -> bool:
    value = options.get(key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value is True
