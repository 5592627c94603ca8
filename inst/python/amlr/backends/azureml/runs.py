"""Reading classic runs back: status, steps, logs, follow, cancel, download, metrics."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime
from typing import Any, Mapping, Optional

from ... import workspace as workspaces
from ...errors import AmlrError, AzureMLError, FileExists, RunNotActive, StepNotFound
from ...stepcontract import OUTPUTS_DIR
from ...registry import TERMINAL, Registry
from .common import LOG_PREFERENCE, map_status, _REMOTE_RUNS, _read_json
from .launch import _remote_failure


def remote_run(run: Mapping[str, Any]) -> Any:
    """The ``PipelineRun`` behind an amlr run (the one place readers reach Azure ML)."""
    cached = _REMOTE_RUNS.get(run["id"])
    if cached is not None:
        return cached
    if not run.get("remote_id") or not run.get("workspace"):
        raise AzureMLError(f"Run `{run['id']}` has no Azure ML run id recorded; it was never submitted.")
    from azureml.core import Experiment
    from azureml.pipeline.core import PipelineRun

    info = workspaces.from_json(run["workspace"])
    try:
        remote = PipelineRun(Experiment(workspaces.classic_workspace(info), run["experiment"]), run["remote_id"])
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"find run {run['remote_id']}", exc) from None
    _REMOTE_RUNS[run["id"]] = remote
    return remote


def _time(value: Any) -> Optional[float]:
    if not value:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _error_message(details: Mapping[str, Any]) -> Optional[str]:
    err = details.get("error")
    if isinstance(err, dict):
        inner: dict[str, Any] = err["error"] if isinstance(err.get("error"), dict) else err
        return inner.get("message") or None
    return str(err) if err else None


def refresh(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    """Status, start and end from Azure ML (a finished run is not asked again)."""
    if run["status"] in TERMINAL:
        return run
    try:
        details = remote_run(run).get_details()
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the status of run {run.get('remote_id')}", exc) from None
    status = map_status(details.get("status"))
    fields: dict[str, Any] = {"status": status}
    started, ended = _time(details.get("startTimeUtc")), _time(details.get("endTimeUtc"))
    if started:
        fields["started"] = started
    if ended or status in TERMINAL:
        fields["ended"] = ended or time.time()
    if status in ("Failed", "Canceled"):
        fields["error"] = _error_message(details) or run.get("error")
    reg.update_run(run["id"], **fields)
    return reg.get_run(run["id"])


def reused_from(step_run: Any) -> Optional[str]:
    """The earlier run a reused step run stands for.

    azureml-pipeline-core rehydrates a reused child in one of two ways:
    ``StepRun._from_dto`` (run type ``azureml.StepRun`` whose properties name
    the reused run: ``_reused_run_id`` is set) or ``StepRun._from_reused_dto``
    (run type ``azureml.ReusedStepRun``: the object *is* the earlier run, so
    its ``id`` is the answer and ``_reused_run_id`` stays None).
    """
    return getattr(step_run, "_reused_run_id", None) or getattr(step_run, "id", None)


def _step_runs(remote: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for step_run in remote.get_steps():
        name = getattr(step_run, "name", None) or getattr(step_run, "display_name", None)
        if name:
            out.setdefault(name, step_run)
    return out


def steps(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = reg.get_steps(run["id"])
    if all(r["status"] in TERMINAL for r in rows):
        return rows
    try:
        step_runs = _step_runs(remote_run(run))
        for row in rows:
            if row["status"] in TERMINAL or row["name"] not in step_runs:
                continue
            step_run = step_runs[row["name"]]
            details = step_run.get_details()
            status = map_status(details.get("status"))
            fields: dict[str, Any] = {"status": status}
            if _time(details.get("startTimeUtc")):
                fields["started"] = _time(details.get("startTimeUtc"))
            if status in TERMINAL:
                fields["ended"] = _time(details.get("endTimeUtc")) or time.time()
            if getattr(step_run, "_is_reused", False):
                fields["reused"] = 1
                fields["reused_from"] = reused_from(step_run)
            if status == "Failed":
                fields["error"] = _error_message(details)
            reg.update_step(run["id"], row["name"], **fields)
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the steps of run {run.get('remote_id')}", exc) from None
    if run["status"] in TERMINAL:
        # Steps that never started in an ended run will not start any more.
        for row in reg.get_steps(run["id"]):
            if row["status"] not in TERMINAL:
                reg.update_step(run["id"], row["name"], status="Canceled",
                                error=f"did not run: the run ended {run['status']}")
    return reg.get_steps(run["id"])


def user_log(step_run: Any) -> str:
    """The step's own output (what R printed), from the run's log files."""
    files = (step_run.get_details_with_logs() or {}).get("logFiles") or {}
    for name in LOG_PREFERENCE:
        if name in files:
            return files[name] or ""
    for name in sorted(files):
        if "std_log" in name or "70_driver_log" in name:
            return files[name] or ""
    return "".join(files[name] or "" for name in sorted(files))


def _chosen(reg: Registry, run: Mapping[str, Any], step: Optional[str]) -> list[str]:
    names = [s["name"] for s in reg.get_steps(run["id"])]
    if step is None:
        return names
    if step not in names:
        raise StepNotFound(f"Run `{run['id']}` has no step `{step}` (its steps: {', '.join(names)}).")
    return [step]


class _StepRuns:
    """The run's StepRuns, fetched on first use (a finished step's cached log needs none)."""

    def __init__(self, run: Mapping[str, Any]):
        self.run = run
        self._by_name: Optional[dict[str, Any]] = None

    def get(self, name: str) -> Any:
        if self._by_name is None:
            self._by_name = _step_runs(remote_run(self.run))
        return self._by_name.get(name)


def _step_log(reg: Registry, run: Mapping[str, Any], row: Mapping[str, Any], step_runs: _StepRuns) -> Optional[str]:
    """A step's log text, or None before it has a step run.

    A finished step's log cannot change: it is kept under the run folder (and
    the step's ``log_path``), so reading it again needs no request.
    """
    path = row.get("log_path")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    step_run = step_runs.get(row["name"])
    if step_run is None:
        return None
    text = user_log(step_run)
    if row["status"] in TERMINAL and run.get("run_dir"):
        path = os.path.join(run["run_dir"], "logs", f"{row['name']}.log")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        reg.update_step(run["id"], row["name"], log_path=path)
    return text


def logs(reg: Registry, run: dict[str, Any], step: Optional[str]) -> dict[str, list[str]]:
    names = _chosen(reg, run, step)
    rows = {r["name"]: r for r in reg.get_steps(run["id"])}
    step_runs = _StepRuns(run)
    try:
        return {n: (_step_log(reg, run, rows[n], step_runs) or "").splitlines() for n in names}
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the logs of run {run.get('remote_id')}", exc) from None


def follow(reg: Registry, run: dict[str, Any], cursor: dict[str, int]) -> dict[str, Any]:
    """New complete log lines since ``cursor`` (step -> characters already sent).

    A step whose whole log was sent is marked ``"<step>#done"`` in the cursor
    and not read again.
    """
    rows = {r["name"]: r for r in reg.get_steps(run["id"])}
    out: list[dict[str, str]] = []
    new_cursor = {k: int(v) for k, v in cursor.items()}
    step_runs = _StepRuns(run)
    try:
        for name, row in rows.items():
            if new_cursor.get(f"{name}#done"):
                continue
            text = _step_log(reg, run, row, step_runs)
            if text is None:
                continue
            offset = new_cursor.get(name, 0)
            chunk = text[offset:]
            done = run["status"] in TERMINAL or row["status"] in TERMINAL
            if not done:
                cut = chunk.rfind("\n")
                chunk = chunk[: cut + 1] if cut >= 0 else ""
            new_cursor[name] = offset + len(chunk)
            if done:
                new_cursor[f"{name}#done"] = 1
            out.extend({"step": name, "line": line} for line in chunk.splitlines())
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the logs of run {run.get('remote_id')}", exc) from None
    return {"lines": out, "cursor": new_cursor}


def cancel(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    if run["status"] in TERMINAL:
        raise RunNotActive(f"Run `{run['id']}` has already ended ({run['status']}); there is nothing to cancel.")
    try:
        remote_run(run).cancel()
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"cancel run {run.get('remote_id')}", exc) from None
    reg.update_run(run["id"], cancel_requested=1)
    return refresh(reg, reg.get_run(run["id"]))


def download(reg: Registry, run: dict[str, Any], step: Optional[str], output: Optional[str], dest: str,
             overwrite: bool) -> list[str]:
    """Step outputs (from the datastore) and, for whole steps, their log files, to ``dest/<step>/``."""
    names = _chosen(reg, run, step)
    spec = _built_outputs(run)
    wanted: list[tuple[str, str]] = []
    for name in names:
        outs = [*spec.get(name, []), OUTPUTS_DIR]  # ./outputs, which AML keeps with the step's run
        if output is not None:
            if output not in outs:
                raise AmlrError(f"Step `{name}` has no output `{output}` (its outputs: {', '.join(outs) or 'none'}).")
            outs = [output]
        wanted.extend((name, o) for o in outs)
    targets = [os.path.join(dest, s, o) for s, o in wanted]
    if output is None:
        targets += [os.path.join(dest, s, "logs") for s in names]
    clashes = [t for t in targets if os.path.exists(t)]
    if clashes and not overwrite:
        raise FileExists(f"{len(clashes)} target(s) already exist, first `{clashes[0]}`; nothing was copied. "
                         "Choose another `dest` or pass overwrite = TRUE.")
    written: list[str] = []
    try:
        step_runs = _step_runs(remote_run(run))
        for step_name, out_name in wanted:
            if step_name not in step_runs:
                continue
            target = os.path.join(dest, step_name, out_name)
            if out_name == OUTPUTS_DIR:
                if _download_run_folder(step_runs[step_name], OUTPUTS_DIR, target):
                    written.append(target)
                continue
            _download_output(step_runs[step_name].get_output_data(out_name), target)
            written.append(target)
        if output is None:
            for step_name in names:
                if step_name in step_runs:
                    written.extend(_download_logs(step_runs[step_name], os.path.join(dest, step_name, "logs")))
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"download from run {run.get('remote_id')}", exc) from None
    return written


def _built_outputs(run: Mapping[str, Any]) -> dict[str, list[str]]:
    """Output names per step, from what was built (the registry keeps no remote paths)."""
    path = os.path.join(run.get("run_dir") or "", "azureml.json")
    described = _read_json(path)
    out: dict[str, list[str]] = {}
    for name, info in (described.get("steps") or {}).items():
        out[name] = list(info.get("outputs") or [])
    return out


def _download_output(port: Any, target: str) -> None:
    """PortDataReference.download keeps the datastore path; move its content to ``target``."""
    staging = tempfile.mkdtemp(prefix="amlr-download-")
    try:
        port.download(local_path=staging, overwrite=True, show_progress=False)
        source = os.path.join(staging, *str(port.path_on_datastore).strip("/").split("/"))
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        if os.path.exists(source):
            shutil.move(source, target)
        else:  # an output the step left empty
            os.makedirs(target, exist_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download_run_folder(step_run: Any, prefix: str, target: str) -> bool:
    """The files a step's run kept under ``prefix/`` (AML uploads ./outputs there), to ``target``."""
    names = [n for n in step_run.get_file_names() if n.startswith(prefix + "/")]
    for name in names:
        path = os.path.join(target, *name[len(prefix) + 1:].split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        step_run.download_file(name, output_file_path=path)
    return bool(names)


def _download_logs(step_run: Any, target: str) -> list[str]:
    written = []
    for name in step_run.get_file_names():
        if not name.startswith(("azureml-logs/", "user_logs/", "logs/")):
            continue
        path = os.path.join(target, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        step_run.download_file(name, output_file_path=path)
        written.append(path)
    return written


def metrics(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Run-history metrics of every step run (what log_metric() sent through the bootstrapper)."""
    out: list[dict[str, Any]] = []
    try:
        step_runs = _step_runs(remote_run(run))
        for row in reg.get_steps(run["id"]):
            if row["name"] not in step_runs:
                continue
            for name, value in sorted((step_runs[row["name"]].get_metrics() or {}).items()):
                values = value if isinstance(value, list) else [value]
                for idx, v in enumerate(values):
                    num = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                    out.append({"step": row["name"], "name": name, "value_num": num,
                                "value_str": None if num is not None else (None if v is None else str(v)),
                                "idx": idx, "time": None})
    except AmlrError:
        raise
    except Exception as exc:
        raise _remote_failure(f"read the metrics of run {run.get('remote_id')}", exc) from None
    return out
