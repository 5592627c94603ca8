"""Submitting a v2 pipeline job and recording the run."""
from __future__ import annotations

import os
import shutil
from typing import Any, Mapping

from .. import option_text
from ...registry import Registry
from ...spec import Pipeline
from .common import BACKEND, map_status, _write_json
from .plan import stage, to_azure_job
from .client import connect, azure_call


# -- submit ----------------------------------------------------------------------------------


def _check_options(options: Mapping[str, Any]) -> None:
    from .. import check_options

    check_options(BACKEND, options)


def submit(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """Package, build the v2 pipeline job, create it on Azure ML and record the run."""
    from ...workspace import resolve

    _check_options(options)
    workspace = options.get("workspace")
    info = resolve(workspace if isinstance(workspace, dict) else None)
    run_dir = reg.run_dir(run_id)
    try:
        client = connect(info)
        pipeline = with_asset_types(pipeline, client)
        plan = stage(
            pipeline,
            snapshots_dir=os.path.join(run_dir, "snapshots"),
            environments_dir=os.path.join(run_dir, "environments"),
            experiment_name=experiment,
            default_compute=option_text(options, "compute"),
            force_rerun=bool(options.get("regenerate_outputs")),
        )
        job = to_azure_job(plan)
        with azure_call(f"submitting pipeline `{pipeline.name}` to workspace `{info.workspace_name}`"):
            created = client.jobs.create_or_update(job, experiment_name=experiment)
    except BaseException:
        # Nothing was recorded: leave no half-made run folder behind.
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    from ...workspace import portal_url

    _write_json(os.path.join(run_dir, "job.json"), {
        "pipeline": pipeline.to_json(),
        "remote_id": created.name,
        "default_compute": plan.default_compute,
    })
    reg.insert_run(
        {
            "id": run_id,
            "experiment": experiment,
            "pipeline": pipeline.name,
            "backend": BACKEND,
            "status": map_status(getattr(created, "status", None)),
            "run_dir": run_dir,
            "remote_id": created.name,
            "portal_url": getattr(created, "studio_url", None) or portal_url(info, created.name),
            "workspace": info.to_json(),
        },
        [{"name": s.name, "allow_reuse": s.allow_reuse, "outputs": dict.fromkeys(s.outputs)}
         for s in pipeline.steps],
    )
    out = reg.get_run(run_id)
    out["warnings"] = list(plan.warnings)
    return out


def with_asset_types(pipeline: Pipeline, client: Any) -> Pipeline:
    """The pipeline with each ``aml_data()`` input's type (uri_folder/uri_file/mltable) read from the workspace."""
    import dataclasses

    steps = []
    for step in pipeline.steps:
        inputs = dict(step.inputs)
        for name, inp in step.inputs.items():
            if inp.kind != "data_asset" or inp.data_type:
                continue
            what = f"reading data asset `{inp.asset}` (input `{name}` of step `{step.name}`)"
            with azure_call(what):
                if inp.version in (None, "latest"):
                    found = client.data.get(name=inp.asset, label="latest")
                else:
                    found = client.data.get(name=inp.asset, version=inp.version)
            inputs[name] = dataclasses.replace(inp, data_type=str(getattr(found, "type", None) or "uri_folder"))
        steps.append(dataclasses.replace(step, inputs=inputs))
    return dataclasses.replace(pipeline, steps=steps)
