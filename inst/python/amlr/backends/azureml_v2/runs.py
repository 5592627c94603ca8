"""Following v2 runs: refresh from Azure ML, steps, logs, follow, cancel, download, metrics."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Mapping, Optional

from ...errors import (AmlrError, BackendUnavailable, FileExists, RunNotActive,
                      StepNotFinished)
from ... import stepcontract
from ...registry import TERMINAL, Registry
from .common import (CHILDREN_FILE, CANCEL_WAIT, LOG_FETCH_TIMEOUT, REUSED_FLAG, REUSED_FROM, STATUS_NOTES,
                     map_status, _write_json, _read_json)
from .client import azure_call, _workspace_info, client_for


# -- refresh: Azure ML -> registry -------------------------------------------------------------


def children_map(run: Mapping[str, Any]) -> dict[str, str]:
    """Step name -> child job name, as the last refresh saw them."""
    found = _read_json(os.path.join(run.get("run_dir") or "", CHILDREN_FILE))
    return found if isinstance(found, dict) else {}


def _child_sort_key(child: Any) -> float:
    created = getattr(getattr(child, "creation_context", None), "created_at", None)
    try:
        return created.timestamp() if created is not None else 0.0
    except AttributeError:
        return 0.0


def _sync_steps(reg: Registry, run: dict[str, Any], client: Any, run_status: str) -> None:
    """Mirror the child jobs' states into the registry's step rows."""
    with azure_call(f"listing the steps of job `{run['remote_id']}`"):
        children = [c for c in client.jobs.list(parent_job_name=run["remote_id"]) if c is not None]
    by_step: dict[str, Any] = {}
    for child in sorted(children, key=_child_sort_key):  # a retried node: the newest child wins
        by_step[getattr(child, "display_name", None) or ""] = child
    known = children_map(run)
    now = time.time()
    for row in reg.get_steps(run["id"]):
        name = row["name"]
        child = by_step.get(name)
        fields: dict[str, Any] = {}
        if child is None:
            if run_status in TERMINAL and row["status"] not in TERMINAL:
                fields.update(status="Canceled", error=f"not run: the pipeline job ended {run_status}")
        else:
            known[name] = child.name
            raw = getattr(child, "status", None)
            status = map_status(raw, row["status"])
            props = getattr(child, "properties", None) or {}
            fields["status"] = status
            if str(props.get(REUSED_FLAG, "")).lower() == "true":
                fields.update(reused=1, reused_from=props.get(REUSED_FROM))
            if status == "Running" and row.get("started") is None:
                fields["started"] = now
            if status in TERMINAL and row.get("ended") is None:
                fields["ended"] = now
                if row.get("started") is None:
                    fields["started"] = now
            if status == "Failed":
                fields["error"] = f"Azure ML job `{child.name}` failed; run_logs() shows its log"
            elif raw in STATUS_NOTES:
                fields["error"] = STATUS_NOTES[raw]
        changed = {k: v for k, v in fields.items() if row.get(k) != v}
        if changed:
            reg.update_step(run["id"], name, **changed)
    if known != children_map(run):
        _write_json(os.path.join(run["run_dir"], CHILDREN_FILE), known)


def refresh(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    """Update the run and its steps from Azure ML (nothing to do once the run has ended)."""
    if run["status"] in TERMINAL:
        return run
    client = client_for(run)
    with azure_call(f"reading job `{run['remote_id']}`"):
        job = client.jobs.get(run["remote_id"])
    raw = getattr(job, "status", None)
    status = map_status(raw, run["status"])
    fields: dict[str, Any] = {}
    if status != run["status"]:
        fields["status"] = status
    if status in ("Running", *TERMINAL) and run.get("started") is None:
        fields["started"] = time.time()
    if status in TERMINAL and run.get("ended") is None:
        fields["ended"] = time.time()
    error = None
    if status == "Failed":
        error = f"the Azure ML pipeline job `{run['remote_id']}` failed"
    elif status == "Canceled":
        error = "canceled on Azure ML"
    elif raw in STATUS_NOTES:
        error = STATUS_NOTES[raw]
    if error != run.get("error"):
        fields["error"] = error
    if fields:
        reg.update_run(run["id"], **fields)
    _sync_steps(reg, run, client, status)
    return reg.get_run(run["id"])


def steps(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    return reg.get_steps(run["id"])


# -- logs --------------------------------------------------------------------------------------


def pick_log(names: Any) -> Optional[str]:
    """The log file that holds R's output: the common runtime's std_log, else the legacy driver log."""
    names = sorted(names or ())
    for preferred in ("user_logs/std_log.txt", "azureml-logs/70_driver_log.txt"):
        if preferred in names:
            return preferred
    for prefix in ("user_logs/std_log", "azureml-logs/70_driver_log"):
        matches = [n for n in names if n.startswith(prefix) and n.endswith(".txt")]
        if matches:
            return matches[0]  # e.g. std_log_process_0.txt: the first process
    return None


def log_text(client: Any, job_name: str) -> Optional[str]:
    """The current text of a child job's log, or None before Azure ML has one.

    Uses the run-history log-file links that ``jobs.stream`` reads (the SDK has
    no public call for one file of a running child job).
    """
    from azure.ai.ml._utils.utils import download_text_from_url

    jobs = client.jobs
    with azure_call(f"reading the log of job `{job_name}`"):
        files = jobs._runs_operations.get_run_details(job_name).log_files or {}
        chosen = pick_log(files)
        if chosen is None:
            return None
        return download_text_from_url(files[chosen], jobs._requests_pipeline, timeout=LOG_FETCH_TIMEOUT)


def _chosen_steps(reg: Registry, run: dict[str, Any], step: Optional[str]) -> list[dict[str, Any]]:
    return [reg.get_step(run["id"], step)] if step else reg.get_steps(run["id"])


def logs(reg: Registry, run: dict[str, Any], step: Optional[str]) -> dict[str, list[str]]:
    chosen = _chosen_steps(reg, run, step)
    children = children_map(run)
    client = client_for(run) if any(s["name"] in children for s in chosen) else None
    out: dict[str, list[str]] = {}
    for s in chosen:
        text = log_text(client, children[s["name"]]) if s["name"] in children else None
        out[s["name"]] = (text or "").splitlines()
    return out


def follow(reg: Registry, run: dict[str, Any], cursor: dict[str, Any]) -> dict[str, Any]:
    """New complete log lines since ``cursor`` (step -> {"offset": bytes shown, "done": log complete})."""
    children = children_map(run)
    new_cursor = dict(cursor)
    out: list[dict[str, str]] = []
    client = None
    for s in reg.get_steps(run["id"]):
        name = s["name"]
        state: dict[str, Any] = cursor[name] if isinstance(cursor.get(name), dict) else {}
        if state.get("done") or name not in children or s["status"] in ("NotStarted", "Queued"):
            continue
        client = client or client_for(run)
        data = (log_text(client, children[name]) or "").encode("utf-8")
        offset = int(state.get("offset") or 0)
        chunk = data[offset:]
        step_done = s["status"] in TERMINAL or run["status"] in TERMINAL
        if not step_done:
            cut = chunk.rfind(b"\n")
            chunk = chunk[: cut + 1] if cut >= 0 else b""
        new_cursor[name] = {"offset": offset + len(chunk), "done": step_done}
        out.extend({"step": name, "line": line} for line in chunk.decode("utf-8", "replace").splitlines())
    return {"lines": out, "cursor": new_cursor}


# -- cancel, download ----------------------------------------------------------------------------


def cancel(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    if run["status"] in TERMINAL:
        raise RunNotActive(f"Run `{run['id']}` has already ended ({run['status']}); there is nothing to cancel.")
    client = client_for(run)
    with azure_call(f"canceling job `{run['remote_id']}`"):
        poller = client.jobs.begin_cancel(run["remote_id"])
        poller.result(timeout=CANCEL_WAIT)
    reg.update_run(run["id"], cancel_requested=1)
    return refresh(reg, reg.get_run(run["id"]))


def _step_outputs(row: dict[str, Any]) -> list[str]:
    """Declared outputs, and ``outputs``: what the job kept from ./outputs (its artifacts)."""
    return sorted({*(row.get("outputs") or {}).keys(), stepcontract.OUTPUTS_DIR})


def download(reg: Registry, run: dict[str, Any], step: Optional[str], output: Optional[str], dest: str,
             overwrite: bool) -> list[str]:
    """Outputs to ``dest/<step>/<output>/`` and, when no output is named, logs to ``dest/<step>/logs/``."""
    children = children_map(run)
    plan: list[tuple[str, str, Optional[str], str]] = []  # (step, child job, output or None for logs, target)
    for s in _chosen_steps(reg, run, step):
        outs = _step_outputs(s)
        if output is not None:
            if output not in outs:
                raise AmlrError(f"Step `{s['name']}` has no output `{output}` (its outputs: {', '.join(outs) or 'none'}).")
            outs = [output]
        if s["status"] not in TERMINAL:
            if step is None and output is None:
                continue  # whole-run download: take what has ended
            raise StepNotFinished(
                f"Step `{s['name']}` is {s['status']}; Azure ML lets amlr download its outputs once it has ended "
                "(run_wait() first)."
            )
        if s["name"] not in children:
            continue  # never ran (canceled before it started)
        child = children[s["name"]]
        plan.extend((s["name"], child, o, os.path.join(dest, s["name"], o)) for o in outs)
        if output is None:
            plan.append((s["name"], child, None, os.path.join(dest, s["name"], "logs")))
    clashes = [target for *_, target in plan if os.path.exists(target)]
    if clashes and not overwrite:
        raise FileExists(
            f"{len(clashes)} target(s) already exist, first `{clashes[0]}`; nothing was downloaded. "
            "Choose another `dest` or pass overwrite = TRUE."
        )
    if not plan:
        return []
    os.makedirs(dest, exist_ok=True)
    client = client_for(run)
    written = []
    for step_name, child, out_name, target in plan:
        staging = tempfile.mkdtemp(prefix=".amlr-download-", dir=dest)
        try:
            what = f"downloading {'output `' + out_name + '`' if out_name else 'the logs'} of step `{step_name}`"
            with azure_call(what):
                if out_name is None:
                    client.jobs.download(child, download_path=staging)
                    got = os.path.join(staging, "artifacts")
                elif out_name == stepcontract.OUTPUTS_DIR:
                    client.jobs.download(child, download_path=staging)
                    got = os.path.join(staging, "artifacts", stepcontract.OUTPUTS_DIR)
                else:
                    client.jobs.download(child, output_name=out_name, download_path=staging)
                    got = os.path.join(staging, "named-outputs", out_name)
            if not os.path.exists(got):
                continue
            if os.path.exists(target):
                shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(got, target)
            written.append(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return written


# -- metrics -------------------------------------------------------------------------------------


def mlflow_tracker(tracking_uri: str) -> Any:
    """An ``MlflowClient`` on the workspace's tracking URI; the packages are optional extras."""
    try:
        from mlflow.tracking import MlflowClient
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            "run_metrics() on azureml_v2 runs reads the jobs' MLflow metrics and needs the Python packages "
            "`mlflow` and `azureml-mlflow`: install them into amlr's Python (pip install azureml-mlflow)."
        ) from exc
    try:
        import azureml.mlflow  # noqa: F401  registers the azureml:// tracking scheme and its sign-in
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            "run_metrics() on azureml_v2 runs needs the Python package `azureml-mlflow` (it lets MLflow talk "
            "to Azure ML): install it into amlr's Python (pip install azureml-mlflow)."
        ) from exc
    return MlflowClient(tracking_uri=tracking_uri)


SYSTEM_TAG_PREFIXES = ("mlflow.", "azureml.", "_aml")


def _iso(ms: Optional[int]) -> Optional[str]:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000.0)) + ".%03dZ" % (int(ms) % 1000)


def step_metrics(tracker: Any, step: str, job_name: str) -> list[dict[str, Any]]:
    """One step's metrics: numeric series from MLflow metrics, text values from its tags."""
    run = tracker.get_run(job_name)
    rows: list[dict[str, Any]] = []
    for key in sorted(run.data.metrics):
        history = sorted(tracker.get_metric_history(job_name, key), key=lambda m: (m.step, m.timestamp))
        rows.extend({"step": step, "name": key, "value_num": float(m.value), "value_str": None, "idx": i,
                     "time": _iso(m.timestamp)} for i, m in enumerate(history))
    for key in sorted(run.data.tags):
        if not key.startswith(SYSTEM_TAG_PREFIXES):
            rows.append({"step": step, "name": key, "value_num": None, "value_str": str(run.data.tags[key]),
                         "idx": 0, "time": None})
    return rows


def metrics(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Metrics of every step; kept in the registry once the run has ended."""
    if run["status"] in TERMINAL:
        cached = reg.get_metrics(run["id"])
        if cached:
            return cached
    children = children_map(run)
    if not children:
        return []
    client = client_for(run)
    info = _workspace_info(run)
    with azure_call(f"reading the MLflow tracking URI of workspace `{info.workspace_name}`"):
        uri = client.workspaces.get(info.workspace_name).mlflow_tracking_uri
    tracker = mlflow_tracker(uri)
    rows: list[dict[str, Any]] = []
    for s in reg.get_steps(run["id"]):
        if s["name"] in children:
            with azure_call(f"reading the metrics of step `{s['name']}`"):
                rows.extend(step_metrics(tracker, s["name"], children[s["name"]]))
    if run["status"] in TERMINAL and rows:
        for step_name in {r["step"] for r in rows}:
            reg.add_metrics(run["id"], step_name, [
                {"name": r["name"], "value": r["value_num"] if r["value_num"] is not None else r["value_str"],
                 "time": r["time"]}
                for r in rows if r["step"] == step_name
            ])
        return reg.get_metrics(run["id"])
    return rows
