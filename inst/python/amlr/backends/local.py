"""The local backend: every step a process on this machine, in DAG order.

``submit`` packages the snapshots, records the run and starts a detached
runner (``python -m amlr runner``); the runner schedules the steps, runs each
through the bootstrapper, and writes status, logs and metrics to the run
folder and the registry. Readers never trust a "Running" row blindly: if the
runner is gone, the run is marked Failed with the reason.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Optional

from .. import packaging, procs, snapshot, stepcontract, sweep
from ..errors import AmlrError, DestinationUnusable, FileExists, OutputNotFound, RunFolderMissing, RunNotActive
from ..registry import ACTIVE, TERMINAL, Registry, read_metrics_file
from ..spec import Pipeline, Step, validate

BOOTSTRAPPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bootstrapper.py")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CANCEL_GRACE = 5.0
POLL_SECONDS = 0.1  # how often a waiting reader looks at the run folder (the run's end wakes it at once)


# -- submit -------------------------------------------------------------------

# What a local step sees of the R session's environment: what an Azure ML job
# would have too (a PATH, a home, a locale, a time zone, a temp folder, R's
# library paths, a proxy), plus the step's own r_step(env =) and amlr's
# AMLR_* contract. Nothing else -- in particular no credential -- reaches a
# step, and every variable that does is part of the step's fingerprint.
PASSTHROUGH_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "R_LIBS", "R_LIBS_USER", "R_LIBS_SITE", "AMLR_RSCRIPT",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
)


def step_base_env(environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The session variables a local step inherits (see PASSTHROUGH_ENV), locale categories included."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in sorted(environ.items()) if k in PASSTHROUGH_ENV or k.startswith("LC_")}


def _fingerprint(step: Step, snapshot_hash: str, upstream: dict[str, str], input_hashes: dict[str, str],
                 base_env: dict[str, str]) -> str:
    inputs: dict[str, str] = {}
    for name, inp in sorted(step.inputs.items()):
        if inp.kind == "step_output":
            inputs[name] = f"step:{upstream[inp.step or '']}:{inp.output}"
        elif inp.kind == "path":
            inputs[name] = f"path:{input_hashes[inp.path or '']}"
        elif inp.kind == "data_asset":  # the resolved version's content: "latest" re-runs only when it changes
            inputs[name] = f"data:{input_hashes[data_key(inp)]}:{inp.mode}"
        else:
            inputs[name] = f"uri:{inp.uri}"
    payload = {
        # The snapshot is the step's code, its contract (script, args, env) and the bootstrapper.
        "snapshot": snapshot_hash,
        "inputs": inputs,
        "outputs": sorted(step.outputs),
        "environment": step.environment,
        "step_type": step.step_type,
        "session_env": base_env,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def prepare(reg: Registry, pipeline: Pipeline, run_id: str, warn=None) -> dict[str, Any]:
    """Per-step snapshots and fingerprints for every step, written to ``spec.json``."""
    data_assets = resolve_data_assets(reg, pipeline)  # an unknown asset fails before anything is written
    run_dir = reg.run_dir(run_id)
    os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
    staged = packaging.stage_steps(pipeline, os.path.join(run_dir, "snapshots"), metrics_sink="none",
                                   values=_fixed_values, exclude=[reg.home], warn=warn,
                                   store=os.path.join(reg.home, "objects"))
    input_hashes: dict[str, str] = {}
    for step in pipeline.steps:
        for inp in step.inputs.values():
            if inp.kind == "path" and inp.path not in input_hashes:
                input_hashes[inp.path or ""] = snapshot.hash_path(inp.path or "")
            if inp.kind == "uri" and warn is not None and (inp.uri or "").lower().startswith(("http://", "https://")):
                warn(f"Input `{next(n for n, i in step.inputs.items() if i is inp)}` of step `{step.name}` is a web "
                     "URL: a local step gets the URL itself and reads it, while on azureml_v2 Azure ML downloads "
                     "it and the step gets a file path.")
    for step_assets in data_assets.values():
        for info in step_assets.values():
            input_hashes[info["key"]] = info["content_hash"]
    base_env = step_base_env()
    fingerprints: dict[str, str] = {}
    for step in pipeline.steps:  # run order: upstream fingerprints exist already
        fingerprints[step.name] = _fingerprint(step, staged[step.name].snapshot.hash, fingerprints, input_hashes,
                                               base_env)
    plan = {
        "pipeline": pipeline.to_json(),
        "steps": {
            s.name: {
                "snapshot": staged[s.name].snapshot.path,
                "snapshot_hash": staged[s.name].snapshot.hash,
                "code_files": staged[s.name].code.files,
                "code_conservative": staged[s.name].code.reason,
                "fingerprint": fingerprints[s.name],
                "log": os.path.join(run_dir, "logs", f"{s.name}.log"),
                "outputs": {o: os.path.join(run_dir, "outputs", s.name, o) for o in s.outputs},
                "metrics": os.path.join(run_dir, "metrics", f"{s.name}.jsonl"),
                "data_assets": data_assets[s.name],
            }
            for s in pipeline.steps
        },
    }
    with open(os.path.join(run_dir, "spec.json"), "w", encoding="utf-8") as fh:
        json.dump(plan, fh, indent=2, sort_keys=True)
    return plan


def _fixed_values(step: Step) -> dict[str, str]:
    """Inputs whose value is known when the job is built: URIs the script reads itself."""
    return {name: inp.uri or "" for name, inp in step.inputs.items() if inp.kind == "uri"}


def data_key(inp: Any) -> str:
    return f"asset:{inp.asset}:{inp.version}"


def resolve_data_assets(reg: Registry, pipeline: Pipeline) -> dict[str, dict[str, dict[str, Any]]]:
    """Step -> input -> the store version that ``aml_data(name, version)`` means now (before anything runs)."""
    out: dict[str, dict[str, dict[str, Any]]] = {s.name: {} for s in pipeline.steps}
    if not any(i.kind == "data_asset" for s in pipeline.steps for i in s.inputs.values()):
        return out  # no asset: the store is not even imported
    from ..store import Store

    store = Store(reg.home)
    for step in pipeline.steps:
        out[step.name] = {}
        for name, inp in sorted(step.inputs.items()):
            if inp.kind != "data_asset":
                continue
            asset = store.get("data", inp.asset or "", inp.version)
            out[step.name][name] = {
                "name": asset.name, "version": asset.version, "requested": inp.version, "mode": inp.mode,
                "content_hash": asset.content_hash, "path": asset.path, "key": data_key(inp),
            }
    return out


def _scalar(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _remove_run_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _input_folder(reg: Registry, step: Step, name: str) -> str:
    """The local folder an input names now: a path, or a data asset's copy in the store (for files_of())."""
    inp = step.inputs[name]
    if inp.kind == "data_asset":
        from ..store import Store

        return Store(reg.home).get("data", inp.asset or "", inp.version).path or ""
    return inp.path or ""


def submit(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any]) -> dict[str, Any]:
    warnings: list[str] = []
    # r_sweep()/r_map(): ordinary steps per trial/item plus a collector step (amlr.sweep).
    pipeline = sweep.expand(pipeline, lambda step, name: _input_folder(reg, step, name))
    run_dir = reg.run_dir(run_id)
    try:
        plan = prepare(reg, pipeline, run_id, warn=warnings.append)
    except BaseException:
        _remove_run_dir(run_dir)  # a failed submit leaves nothing behind
        raise
    try:
        return _record_and_start(reg, pipeline, experiment, run_id, options, plan, warnings)
    except BaseException:
        try:
            reg.delete_run(run_id)
        except Exception:  # noqa: BLE001, S110 - the original error is the one to report
            pass
        _remove_run_dir(run_dir)
        raise


def _start_runner(home: str, run_id: str, max_parallel: int, run_dir: str, regenerate: bool, log_path: str) -> int:
    """Start the run's detached runner; its pid.

    Forked from a standalone ``python -m amlr`` (no interpreter start-up); under
    an embedded Python, the bridge's warm spare runner (``procs.SPARE_RUNNER``);
    else a new interpreter.
    """
    if procs.FORK_RUNNER and os.name == "posix":
        return procs.fork_detached(lambda: run_runner(home, run_id, max_parallel, cwd=run_dir,
                                                      regenerate=regenerate), log_path=log_path)
    if procs.USE_SPARE_RUNNER:
        pid = procs.SPARE_RUNNER.take({"home": home, "run_id": run_id, "max_parallel": max_parallel,
                                       "cwd": run_dir, "regenerate": regenerate, "log_path": log_path,
                                       "env": dict(os.environ)})
        if pid is not None:
            return pid
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    proc = procs.spawn_detached(
        [procs.python_executable(), "-S", "-m", "amlr", "runner", "--home", home, "--max-parallel",
         str(max_parallel), *(["--regenerate-outputs"] if regenerate else []), run_id],
        cwd=run_dir, log_path=log_path, env=env,
    )
    proc.returncode = 0  # it outlives us: no warning about an unreaped child
    return proc.pid


def _record_and_start(reg: Registry, pipeline: Pipeline, experiment: str, run_id: str, options: dict[str, Any],
                      plan: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    run_dir = reg.run_dir(run_id)
    reg.insert_run(
        {
            "id": run_id,
            "experiment": experiment,
            "pipeline": pipeline.name,
            "backend": "local",
            "status": "Queued",
            "run_dir": run_dir,
        },
        [
            {
                "name": s.name,
                "fingerprint": plan["steps"][s.name]["fingerprint"],
                "allow_reuse": s.allow_reuse,
                "log_path": plan["steps"][s.name]["log"],
                "outputs": plan["steps"][s.name]["outputs"],
            }
            for s in pipeline.steps
        ],
    )
    reg.write_run_file(run_id)
    max_parallel = int(options.get("max_parallel") or os.cpu_count() or 1)
    regenerate = bool(options.get("regenerate_outputs"))
    log_path = os.path.join(run_dir, "runner.log")
    pid = _start_runner(reg.home, run_id, max_parallel, run_dir, regenerate, log_path)
    # Record the runner at once, so a reader can tell a dead runner from a slow start.
    reg.update_run(run_id, runner_pid=pid, runner_identity=procs.process_identity(pid))
    out = reg.get_run(run_id)
    out["warnings"] = warnings
    return out


# -- the runner -----------------------------------------------------------------


class Runner:
    """Runs one local run to its end; lives in its own detached process."""

    def __init__(self, reg: Registry, run_id: str, max_parallel: int, regenerate: bool = False):
        self.reg = reg
        self.regenerate = regenerate
        self.run_id = run_id
        self.max_parallel = max(1, max_parallel)
        self.run_dir = reg.run_dir(run_id)
        with open(os.path.join(self.run_dir, "spec.json"), encoding="utf-8") as fh:
            self.plan = json.load(fh)
        self.pipeline = validate(self.plan["pipeline"], check_paths=False)
        self.cancelled = threading.Event()
        self.stopped_by: Optional[int] = None  # a signal from outside, not run_cancel()
        self.subreaper = False
        self.lock = threading.Lock()
        self.children: dict[str, subprocess.Popen] = {}
        self.outputs: dict[str, dict[str, str]] = {}

    def on_signal(self, signum: int, frame: Any) -> None:
        if frame is not None and self.stopped_by is None:
            self.stopped_by = signum
        self.cancelled.set()
        with self.lock:
            children = list(self.children.values())
        for child in children:
            procs.signal_group(child.pid, signal.SIGTERM)

    def run(self) -> str:
        for sig in procs.TERMINATING_SIGNALS:
            signal.signal(sig, self.on_signal)
        # Orphans of a step (a `setsid` escapee) become our children, so they can be found and ended.
        self.subreaper = procs.become_subreaper()
        self.reg.update_run(
            self.run_id,
            status="Running",
            started=time.time(),
            runner_pid=os.getpid(),
            runner_identity=procs.process_identity(os.getpid()),
        )
        status = "Failed"
        error: Optional[str] = None
        try:
            status, error = self._schedule()
            if self.subreaper:
                procs.reap_orphans(grace=1.0)
        except Exception as exc:  # the run must end in a terminal state whatever happens
            error = f"amlr runner crashed: {type(exc).__name__}: {exc}"
            for s in self.reg.get_steps(self.run_id):
                if s["status"] in ACTIVE:
                    self.reg.update_step(self.run_id, s["name"], status="Failed", error=error, ended=time.time())
            raise
        finally:
            self.reg.update_run(self.run_id, status=status, ended=time.time(), error=error)
            try:
                self.reg.write_run_file(self.run_id)
            except (OSError, AmlrError):
                pass
        return status

    def _schedule(self) -> tuple[str, Optional[str]]:
        steps = {s.name: s for s in self.pipeline.steps}
        pending = [s.name for s in self.pipeline.steps]
        state: dict[str, str] = {}
        # Only the runner schedules: readers and submitters skip this import.
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            while pending or running:
                if self.cancelled.is_set() or self.reg.get_run(self.run_id)["cancel_requested"]:
                    self.cancelled.set()
                    self.on_signal(signal.SIGTERM, None)
                for name in list(pending):
                    bad, ready = sweep.readiness(steps[name], state)
                    if self.cancelled.is_set() or bad:
                        reason = (
                            "the run was canceled" if self.cancelled.is_set()
                            else f"upstream step `{bad[0]}` ended {state[bad[0]]}"
                        )
                        state[name] = "Canceled"
                        self.reg.update_step(self.run_id, name, status="Canceled", error=reason)
                        pending.remove(name)
                    elif ready and len(running) < self.max_parallel and \
                            sweep.slot_free(steps[name], list(running.values()), steps):
                        pending.remove(name)
                        self.reg.update_step(self.run_id, name, status="Queued")
                        running[pool.submit(self._run_step, steps[name])] = name
                if not running:
                    continue
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    state[name] = fut.result()
        failed = sweep.failures(self.pipeline, state)
        if self.cancelled.is_set():
            if self.stopped_by is not None and not self.reg.get_run(self.run_id)["cancel_requested"]:
                name = signal.Signals(self.stopped_by).name
                return "Canceled", (f"the amlr runner (pid {os.getpid()}) was stopped by {name} from outside amlr "
                                    "(not run_cancel())")
            return "Canceled", "canceled by run_cancel()"
        if failed:
            return "Failed", f"step `{failed[0]}` failed"
        return "Completed", None

    def _log(self, path: str, text: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text.rstrip("\n") + "\n")

    def _inputs(self, step: Step) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, inp in step.inputs.items():
            if inp.kind == "step_output":
                out[name] = self.outputs[inp.step or ""][inp.output or ""]
            elif inp.kind == "path":
                out[name] = os.path.abspath(inp.path or "")
            elif inp.kind == "data_asset":
                out[name] = self._data_input(step, name)
            else:
                out[name] = inp.uri or ""
        return out

    def _reuse(self, step: Step, info: dict[str, Any]) -> Optional[str]:
        """Complete ``step`` from an earlier identical one, if there is one; its status, else None."""
        if not step.allow_reuse or self.regenerate:
            return None
        prior = self.reg.find_reusable(info["fingerprint"], self.run_id)
        if prior is None:
            return None
        # Always name the run that actually executed, never another reuse of it.
        origin = prior.get("reused_from") or prior["run_id"]
        with self.lock:
            self.outputs[step.name] = prior["outputs"]
        now = time.time()
        self._log(info["log"], f"amlr: reused step `{step.name}` of run {origin} (same fingerprint "
                               f"{info['fingerprint'][:12]}); outputs not copied.")
        metrics = [
            {"name": m["name"], "value": m["value_num"] if m["value_num"] is not None else m["value_str"], "time": m["time"]}
            for m in self.reg.get_metrics(prior["run_id"], prior["name"])
        ]
        self.reg.finish_step(self.run_id, step.name, metrics, status="Completed", reused=1, reused_from=origin,
                             exit_code=prior["exit_code"], started=now, ended=now, outputs=prior["outputs"])
        failure = self._register_outputs(step, prior["outputs"], info["log"])
        if failure:
            self.reg.update_step(self.run_id, step.name, status="Failed", error=failure)
            return "Failed"
        return "Completed"

    def _start_r(self, step: Step, info: dict[str, Any], env: dict[str, str], log: Any) -> Any:
        """Start the step's R directly: the bootstrapper's own checks and environment, no Python in between.

        Returns the child, or the BootstrapError that kept R from starting
        (the same one-line errors and exit codes as the bootstrapper's).
        """
        from .. import bootstrapper as boot

        paths = self._inputs(step)
        options = boot.Options(
            "", [], {n: p for n, p in paths.items() if step.inputs[n].kind != "uri"}, dict(info["outputs"]), "none",
            step=stepcontract.contract_path(step.name),
        )
        try:
            options, rscript = boot.resolve_step(options, env, workdir=info["snapshot"])
        except boot.BootstrapError as exc:
            return exc
        child_env = boot.build_env(env, options.inputs, options.outputs, info["metrics"], options.env)
        argv = [rscript, *boot.RSCRIPT_FLAGS, options.script, *options.args]
        try:
            return procs.spawn_step(argv, cwd=info["snapshot"], stdout=log, env=child_env)
        except OSError as exc:
            code = boot.EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else boot.EXIT_NOT_EXECUTABLE
            return boot.BootstrapError(f"cannot run {rscript}: {exc.strerror or exc}", code)

    def _keep_outputs_dir(self, step: Step, info: dict[str, Any]) -> dict[str, str]:
        """Move what the script wrote under ./outputs out of its snapshot, as the output `outputs`."""
        written = os.path.join(info["snapshot"], stepcontract.OUTPUTS_DIR)
        outputs = dict(info["outputs"])
        if os.path.isdir(written) and os.listdir(written):
            target = os.path.join(self.run_dir, "outputs", step.name, stepcontract.OUTPUTS_DIR)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(written, target)
            outputs[stepcontract.OUTPUTS_DIR] = target
        elif os.path.isdir(written):
            os.rmdir(written)
        return outputs

    def _data_input(self, step: Step, name: str) -> str:
        """The store's read-only copy (ro_mount), or a private writable copy (download), as on Azure ML."""
        info = self.plan["steps"][step.name]["data_assets"][name]
        if info["mode"] != "download":
            return info["path"]
        target = os.path.join(self.run_dir, "inputs", step.name, name)
        if os.path.exists(target):
            shutil.rmtree(target)
        if os.path.isdir(info["path"]):
            shutil.copytree(info["path"], target, copy_function=shutil.copyfile)  # writable: no modes copied
        else:
            os.makedirs(target)
            target = os.path.join(target, os.path.basename(info["path"]))
            shutil.copyfile(info["path"], target)
        return target

    def _register_outputs(self, step: Step, outputs: dict[str, str], log_path: str) -> Optional[str]:
        """``r_step(register = ...)``: each named output becomes a data asset version; an error text or None."""
        if not step.register:
            return None
        from ..store import Store

        info = self.plan["steps"][step.name]
        lineage = {
            "run": self.run_id, "step": step.name, "fingerprint": info["fingerprint"],
            "data_assets": [{"name": d["name"], "version": d["version"]} for _, d in sorted(info["data_assets"].items())],
        }
        for output, asset_name in sorted(step.register.items()):
            try:
                asset = Store(self.reg.home).register(
                    "data", outputs[output], asset_name, source=f"run {self.run_id}, step {step.name}, output {output}",
                    lineage={**lineage, "output": output},
                )
            except AmlrError as exc:
                self._log(log_path, f"amlr: registering output `{output}` as `{asset_name}` failed: {exc.message}")
                return f"registering output `{output}` as data asset `{asset_name}` failed: {exc.message}"
            what = "is already" if asset.existing else "registered as"
            self._log(log_path, f"amlr: output `{output}` {what} data asset `{asset.name}` version {asset.version}.")
        return None

    def _run_step(self, step: Step) -> str:
        if sweep.is_collector(step):  # a sweep's/map's own step: no R process
            return sweep.collect(self, step)
        info = self.plan["steps"][step.name]
        log_path = info["log"]
        reused = self._reuse(step, info)
        if reused is not None:
            return reused
        for path in info["outputs"].values():
            os.makedirs(path, exist_ok=True)
        os.makedirs(os.path.dirname(info["metrics"]), exist_ok=True)
        env = step_environment(step_base_env(), self.pipeline)
        env.update({
            "AMLR_RUN_ID": self.run_id,
            "AMLR_STEP_NAME": step.name,
        })
        from .. import bootstrapper as boot

        with self.lock:
            if self.cancelled.is_set():
                self.reg.update_step(self.run_id, step.name, status="Canceled", error="the run was canceled")
                return "Canceled"
            with open(log_path, "ab") as log:
                child = self._start_r(step, info, env, log)
            if not isinstance(child, boot.BootstrapError):
                self.children[step.name] = child
        left: list[str] = []
        if isinstance(child, boot.BootstrapError):
            self._log(log_path, boot.PREFIX + str(child))
            returncode = child.exit_code
        else:
            self.reg.update_step(self.run_id, step.name, status="Running", started=time.time(), pid=child.pid)
            returncode = child.wait()
            with self.lock:
                self.children.pop(step.name, None)
            # R may have left children of its own (system(), parallel): the step owns its group;
            # what escaped the group (setsid) was re-parented to us and is ended too.
            left = procs.terminate_group(child.pid, grace=1.0)
            if self.subreaper:
                with self.lock:
                    running = [c.pid for c in self.children.values()]
                # Other steps still running keep what lives in their own process groups.
                left += procs.reap_orphans(exclude=running, spare_groups=running, grace=1.0)
        final, code = boot.final_line(returncode)
        if left:
            self._log(log_path, "amlr: the step left processes running after it ended; amlr ended them: "
                      + ", ".join(left))
        self._log(log_path, final)  # the bootstrapper's marker line, as on every backend
        metrics = read_metrics_file(info["metrics"])
        outputs = self._keep_outputs_dir(step, info)
        if self.cancelled.is_set():
            status, error = "Canceled", "the run was canceled"
        elif code == 0:
            status, error = "Completed", None
            failure = self._register_outputs(step, info["outputs"], log_path)
            if failure:
                status, error = "Failed", failure
            with self.lock:
                self.outputs[step.name] = outputs
        else:
            status, error = "Failed", f"exit code {code}"
        self.reg.finish_step(self.run_id, step.name, metrics, status=status, exit_code=code, ended=time.time(),
                             error=error, outputs=outputs)
        return status


def run_runner(home: str, run_id: str, max_parallel: int, cwd: Optional[str] = None,
               regenerate: bool = False) -> int:
    if cwd:
        os.chdir(cwd)
    status = Runner(Registry(home), run_id, max_parallel, regenerate).run()
    return 0 if status == "Completed" else 1


# -- readers --------------------------------------------------------------------


# amlr's own secrets: a step never needs them, and a step's log must never show them.
SECRET_ENV_VARS = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_PASSWORD",
                   "AMLR_REGISTRY_PASSWORD")


def secret_env_names(pipeline: Pipeline) -> set[str]:
    names = set(SECRET_ENV_VARS)
    for env in [pipeline.environment] + [s.environment for s in pipeline.steps]:
        reg = (env or {}).get("registry") if isinstance(env, dict) else None
        if isinstance(reg, dict):
            name = _scalar(reg.get("password_env"))
            if isinstance(name, str) and name:
                names.add(name)
    return names


def step_environment(base: Any, pipeline: Pipeline) -> dict[str, str]:
    """The runner's environment without amlr's secret variables."""
    drop = secret_env_names(pipeline)
    return {k: v for k, v in base.items() if k not in drop}


def _runner_accounted_for(run: dict[str, Any]) -> bool:
    """True unless the run is unfinished and nobody is running it."""
    if run["status"] in TERMINAL:
        return True
    if run.get("runner_pid"):
        return procs.same_process(run["runner_pid"], run.get("runner_identity"))
    # Submit records the runner right after starting it; give a slow start time.
    return time.time() - run["created"] < 30


def refresh(reg: Registry, run: dict[str, Any]) -> dict[str, Any]:
    """Mark a run whose runner died as Failed, and clean up after it."""
    if _runner_accounted_for(run):
        return run
    # Look again: the runner may have finished, or been recorded, since the first read.
    run = reg.get_run(run["id"])
    if _runner_accounted_for(run):
        return run
    reason = (
        f"the amlr runner process (pid {run.get('runner_pid')}) ended before the run did "
        "(killed, or the machine restarted)"
    )
    for s in reg.get_steps(run["id"]):
        if s["status"] in ACTIVE:
            if s.get("pid"):
                procs.terminate_group(s["pid"], grace=1.0)
            reg.update_step(run["id"], s["name"], status="Failed" if s["status"] == "Running" else "Canceled",
                            error=reason, ended=time.time())
    reg.update_run(run["id"], status="Failed", error=reason, ended=time.time())
    try:
        reg.write_run_file(run["id"])
    except OSError:
        pass
    return reg.get_run(run["id"])


def steps(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    return reg.get_steps(run["id"])


def _read_lines(path: Optional[str], n: Optional[int] = None, tail: bool = False) -> list[str]:
    """A log's lines; with ``n``, only the first (or, with ``tail``, the last) ``n``, reading no more than that."""
    if not path or not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        if n is None:
            return fh.read().decode("utf-8", "replace").splitlines()
        if not tail:
            out: list[str] = []
            for raw in fh:
                if len(out) >= n:
                    break
                out.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
            return out
        return _tail_lines(fh, n)


def _tail_lines(fh: Any, n: int, block: int = 64 * 1024) -> list[str]:
    """The last ``n`` lines, read backwards block by block (memory: those lines and one block)."""
    end = fh.seek(0, os.SEEK_END)
    data = b""
    pos = end
    while pos > 0 and data.count(b"\n") <= n:
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        data = fh.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:] if n else []


def _step_log(reg: Registry, s: dict[str, Any], n: Optional[int] = None, tail: bool = False) -> list[str]:
    """A step's log; for a reused step, the log of the run that executed it, headed by where it came from."""
    lines = _read_lines(s.get("log_path"), n, tail)
    if not s.get("reused") or not s.get("reused_from"):
        return lines
    try:
        origin = reg.get_step(s["reused_from"], s["name"])
    except AmlrError:
        lines = lines + [f"amlr: the log of run {s['reused_from']} is no longer available."]
    else:
        lines = lines + [f"amlr: ---- log of step `{s['name']}` in run {s['reused_from']} ----"] + \
            _read_lines(origin.get("log_path"), n, tail)
    if n is None:
        return lines
    return lines[-n:] if tail else lines[:n]


def require_folder(run: dict[str, Any], what: str) -> None:
    """A run whose folder is gone says so, instead of answering with nothing."""
    folder = run.get("run_dir")
    if folder and not os.path.isdir(folder):
        raise RunFolderMissing(
            f"The folder of run `{run['id']}` (`{folder}`) is gone, so its {what} are lost; the registry only "
            "indexes it. Restore the folder from a backup, or submit the pipeline again.", field="run")


def folder_note(run: dict[str, Any]) -> dict[str, Any]:
    folder = run.get("run_dir")
    if folder and not os.path.isdir(folder):
        run = dict(run)
        run["folder_missing"] = True
    return run


def logs(reg: Registry, run: dict[str, Any], step: Optional[str], n: Optional[int] = None,
         tail: bool = False) -> dict[str, list[str]]:
    require_folder(run, "logs")
    chosen = [reg.get_step(run["id"], step)] if step else reg.get_steps(run["id"])
    out = {}
    for s in chosen:
        path = s.get("log_path")
        if path and not os.path.exists(path) and s["status"] in ("Completed", "Failed") and not s.get("reused"):
            out[s["name"]] = [f"amlr: the log file of step `{s['name']}` ({path}) is missing; it was deleted."]
        else:
            out[s["name"]] = _step_log(reg, s, n, tail)
    return out


def follow(reg: Registry, run: dict[str, Any], cursor: dict[str, int]) -> dict[str, Any]:
    """New complete log lines since ``cursor`` (step -> byte offset)."""
    finished = run["status"] in TERMINAL
    out: list[dict[str, str]] = []
    new_cursor = dict(cursor)
    for s in reg.get_steps(run["id"]):
        path = s.get("log_path")
        if not path or not os.path.exists(path):
            continue
        offset = int(cursor.get(s["name"], 0))
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(4 * 1024 * 1024)
        step_done = finished or s["status"] in TERMINAL
        if not step_done:
            cut = chunk.rfind(b"\n")
            chunk = chunk[: cut + 1] if cut >= 0 else b""
        if not chunk:
            continue
        new_cursor[s["name"]] = offset + len(chunk)
        for line in chunk.decode("utf-8", "replace").splitlines():
            out.append({"step": s["name"], "line": line})
    return {"lines": out, "cursor": new_cursor}


DONE_KEY = ""  # cursor entry listing the steps whose whole log has been sent (no step has this name)


def follow_chunks(reg: Registry, run: dict[str, Any], cursor: dict[str, Any], steps: list[dict[str, Any]],
                  limit: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """New log text of each step since ``cursor`` (step -> byte offset), in chunks of at most ``limit`` bytes.

    Only steps that have started are looked at, and a step whose log was sent
    to its end after it finished is not looked at again. A chunk ends at a
    line end unless the step has finished (its last, unterminated line) or a
    single line is longer than ``limit``; nothing is ever dropped.
    """
    cursor = dict(cursor)
    done = set(cursor.get(DONE_KEY) or [])
    finished = run["status"] in TERMINAL
    chunks: list[dict[str, str]] = []
    for s in steps:
        name = s["name"]
        if name in done or (s["status"] in ("NotStarted", "Queued") and not finished):
            continue
        path = s.get("log_path")
        step_done = finished or s["status"] in TERMINAL
        offset = int(cursor.get(name, 0))
        try:
            size = os.stat(path).st_size if path else 0
        except OSError:
            size = 0
        if path and size > offset:
            with open(path, "rb") as fh:
                fh.seek(offset)
                while offset < size:
                    data = fh.read(min(limit, size - offset))
                    if not data:
                        break
                    if offset + len(data) < size or not step_done:
                        cut = data.rfind(b"\n")
                        if cut >= 0:
                            data = data[:cut + 1]
                        elif len(data) < limit:
                            break  # a partial line: wait for its end
                    offset += len(data)
                    chunks.append({"step": name, "text": data.decode("utf-8", "replace")})
                    fh.seek(offset)
            cursor[name] = offset
        if step_done and offset >= size:
            done.add(name)
    cursor[DONE_KEY] = sorted(done)
    return chunks, cursor


class RunnerWaiter:
    """Sleep until a timeout or until the local runner process ends, whichever is first (a pidfd)."""

    def __init__(self, fd: int):
        import select

        self.fd = fd
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def __call__(self, timeout: float) -> bool:
        return bool(self.poller.poll(max(0, int(timeout * 1000))))

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def end_waiter(reg: Registry, run: dict[str, Any]) -> Optional[RunnerWaiter]:
    """A waiter on the run's runner, where the OS can tell us when a process ends (Linux pidfds)."""
    pid = run.get("runner_pid")
    if run["status"] in TERMINAL or not pid or not hasattr(os, "pidfd_open"):
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not procs.same_process(pid, run.get("runner_identity")):  # the pid was reused: not our runner
        os.close(fd)
        return None
    return RunnerWaiter(fd)


def cancel(reg: Registry, run: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    if run["status"] in TERMINAL:
        raise RunNotActive(f"Run `{run['id']}` has already ended ({run['status']}); there is nothing to cancel.")
    reg.update_run(run["id"], cancel_requested=1)
    pid = run.get("runner_pid")
    if pid and procs.same_process(pid, run.get("runner_identity")):
        procs.signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and procs.pid_alive(pid):
            time.sleep(0.05)
    # Whatever the runner managed, no step process may survive a cancel.
    for s in reg.get_steps(run["id"]):
        if s.get("pid"):
            procs.terminate_group(s["pid"], grace=1.0)
        if s["status"] in ACTIVE:
            reg.update_step(run["id"], s["name"], status="Canceled", error="canceled by run_cancel()", ended=time.time())
    run = reg.get_run(run["id"])
    if run["status"] not in TERMINAL:
        reg.update_run(run["id"], status="Canceled", ended=time.time(), error="canceled by run_cancel()")
    return reg.get_run(run["id"])


def download(reg: Registry, run: dict[str, Any], step: Optional[str], output: Optional[str], dest: str,
             overwrite: bool) -> list[str]:
    require_folder(run, "outputs and logs")
    chosen = [reg.get_step(run["id"], step)] if step else reg.get_steps(run["id"])
    copies: list[tuple[str, str]] = []
    for s in chosen:
        outs = s["outputs"] or {}
        if output is not None:
            if output not in outs:
                raise OutputNotFound(
                    f"Step `{s['name']}` of run `{run['id']}` has no output `{output}` "
                    f"(its outputs: {', '.join(outs) or 'none'}); pass one of those as `output`, or NULL for all.",
                    field="output")
            outs = {output: outs[output]}
        for name, path in outs.items():
            if s["status"] == "Completed" and not os.path.isdir(path):
                raise RunFolderMissing(
                    f"Output `{name}` of step `{s['name']}` (`{path}`) is gone: it was deleted after the run"
                    + (f" `{s.get('reused_from')}` made it" if s.get("reused_from") else "")
                    + ". Nothing was copied. Submit the pipeline again to make it anew"
                    + (" (allow_reuse = FALSE for that step)." if s.get("reused") else "."), field="output")
            copies.append((path, os.path.join(dest, s["name"], name)))
        if output is None and s.get("log_path") and os.path.exists(s["log_path"]):
            copies.append((s["log_path"], os.path.join(dest, s["name"], "logs", os.path.basename(s["log_path"]))))
    clashes = [target for _, target in copies if os.path.exists(target)]
    if clashes and not overwrite:
        raise FileExists(
            f"{len(clashes)} target(s) already exist, first `{clashes[0]}`; nothing was copied. "
            "Choose another `dest` or pass overwrite = TRUE."
        )
    check_destination(dest)
    written = []
    for src, target in copies:
        if not os.path.exists(src):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(src):
            if os.path.exists(target):
                shutil.rmtree(target)
            shutil.copytree(src, target)
        else:
            shutil.copy2(src, target)
        written.append(target)
    return written


def check_destination(dest: str) -> None:
    """A folder to copy into: not a file, not below one, writable (checked before copying anything)."""
    probe = os.path.abspath(dest)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        where = "is a file" if probe == os.path.abspath(dest) else f"is below the file `{probe}`"
        raise DestinationUnusable(f"`dest` `{dest}` {where}, not a folder; give a folder to copy into.", field="dest")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DestinationUnusable(
            f"`dest` `{dest}` cannot be written (`{probe}` is read-only for you); give a folder you can write to.",
            field="dest")


def metrics(reg: Registry, run: dict[str, Any]) -> list[dict[str, Any]]:
    return reg.get_metrics(run["id"])
