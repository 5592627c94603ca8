"""One step inside the local runner: reuse, inputs, R, outputs.

:class:`StepRunner` is the part of the runner (:mod:`.runner`) that runs a
single step: it completes the step from an earlier run with the same
fingerprint when it may (reuse), hands it its inputs (a data asset as the
store's read-only copy or a private writable one), starts its R directly with
the bootstrapper's own checks and environment (no Python process in
between), ends what R left running, keeps what the script wrote under
``./outputs``, registers outputs as data assets (``r_step(register =)``) and
records the step's end. A sweep's or map's collector step runs here too
(:func:`amlr.sweep.collect`), without an R process.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from typing import Any, Optional

from ... import procs, stepcontract, sweep
from ...errors import AmlrError
from ...registry import Registry
from ...runrecord import read_metrics_file
from ...spec import Pipeline, Step
from .env import step_base_env, step_environment


class StepRunner:
    """Runs one step of the run; :class:`.runner.Runner` sets the state below and schedules the steps."""

    reg: Registry
    run_id: str
    run_dir: str
    plan: dict[str, Any]
    pipeline: Pipeline
    regenerate: bool
    subreaper: bool
    cancelled: threading.Event
    lock: threading.Lock
    children: dict[str, subprocess.Popen]
    outputs: dict[str, dict[str, str]]

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
        from ... import bootstrapper as boot

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
        from ...store import Store

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
        from ... import bootstrapper as boot

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
