"""Many runs of one step: ``r_sweep()`` (parameter sweeps) and ``r_map()`` (fan-out).

A sweep or map is one step of the spec, carrying a ``fanout`` object. Before a
local run it is *expanded* (:func:`expand`) into ordinary steps -- one per
trial or item, the values substituted into their contract args -- plus one
cheap *collector* step under the sweep's own name that runs inside the local
runner (no R process):

* ``select`` (sweep): the best trial by the last logged value of the
  objective (as Azure ML does); the sweep's outputs are that trial's outputs.
* ``gather`` (map): each output of the map holds one folder per completed item.

So the local runner, reuse (a trial's name, contract and fingerprint depend
only on its values: a rerun with one more value runs one trial) and per-step
snapshots work unchanged. On ``azureml_v2`` a sweep is a sweep job node
(:mod:`amlr.sweepazure`); a trial receives its values as
``--param NAME VALUE`` words that Azure ML substitutes. What a sweep or map
step may say is checked, and its trials drawn, by :mod:`amlr.sweepspec`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import replace
from typing import Any, Callable, Mapping, Optional, Sequence

from .stepcontract import OUTPUTS_DIR, substitute_fanout
from .sweepspec import (COLLECTOR_ROLES, MAX_RUNS, OVER_INPUT, RUN_ROLES, USER_ROLES, _fail, format_value,
                        trial_values)

# -- trials and items ---------------------------------------------------------------


def _key(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:10]


def member_name(base: str, payload: Any) -> str:
    """A trial's or item's step name: the sweep's name and a hash of its values (stable across reruns)."""
    return f"{base[:240]}__{_key(payload)}"


def item_label(text: str) -> str:
    """A folder name for an item's outputs: readable, safe on every file system."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("\\", "/").strip("/").replace("/", "__")).strip("._")
    return (label or "item")[:100]


def list_files(folder: str) -> list[str]:
    """Regular files under ``folder`` (relative, POSIX, sorted), hidden names left out; a file is itself."""
    if os.path.isfile(folder):
        return [""]
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and os.path.isfile(os.path.join(root, name)):
                out.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return sorted(out)


# -- expansion ------------------------------------------------------------------------


def has_fanout(pipeline: Any) -> bool:
    return any(s.fanout and s.fanout["role"] in USER_ROLES for s in pipeline.steps)


def expand(pipeline: Any, folder_of: Callable[[Any, str], str]) -> Any:
    """The pipeline with every sweep/map replaced by its trials/items and a collector step of its name.

    ``folder_of(step, input_name)``: the local folder an input names now (a
    path, or a data asset's store copy), to list ``files_of()`` items.
    """
    if not has_fanout(pipeline):
        return pipeline
    from .spec import topological_order

    names = {s.name for s in pipeline.steps}
    steps = []
    for step in pipeline.steps:
        f = step.fanout
        if not f or f["role"] not in USER_ROLES:
            steps.append(step)
            continue
        members = []
        for payload, values, item, label in _members(step, f, folder_of):
            name = member_name(step.name, payload)
            if name in names:
                raise _fail(f"steps[{step.name}]", f"Step `{name}` clashes with a trial of `{step.name}`; rename it.")
            args = [substitute_fanout(a, {k: format_value(v) for k, v in values.items()}, item) for a in step.args]
            role = "trial" if f["role"] == "sweep" else "item"
            steps.append(replace(step, name=name, args=args, register={},
                                 fanout={"role": role, "of": step.name, "values": values, "item": item, "label": label}))
            members.append({"step": name, "values": values, "item": item, "label": label})
        if not members:
            raise _fail(f"steps[{step.name}]", f"r_map() of `{step.name}` has nothing to map over: "
                                               f"the folder `{folder_of(step, OVER_INPUT)}` holds no files.")
        collector = {**f, "role": "select" if f["role"] == "sweep" else "gather", "members": members}
        steps.append(replace(step, allow_reuse=False, fanout=collector))
    return replace(pipeline, steps=topological_order(steps))


def _members(step: Any, f: Mapping[str, Any], folder_of: Callable[[Any, str], str]):
    if f["role"] == "sweep":
        for values in trial_values(f):
            yield {k: format_value(v) for k, v in values.items()}, values, None, None
        return
    if f["over"]["type"] == "values":
        labels: set[str] = set()
        for text in f["over"]["values"]:
            label = _unique(item_label(text), labels)
            yield {"item": text}, {}, text, label
        return
    files = list_files(folder_of(step, OVER_INPUT))
    if len(files) > MAX_RUNS:
        raise _fail(f"steps[{step.name}].over", f"files_of() of r_map() `{step.name}` lists {len(files)} files, "
                                                f"over amlr's limit of {MAX_RUNS}; group them into folders and map "
                                                "over the folders' files in batches.")
    labels = set()
    for rel in files:
        item = "${{inputs.%s}}" % OVER_INPUT + ("/" + rel if rel else "")
        yield {"file": rel}, {}, item, _unique(item_label(rel or "file"), labels)


def _unique(label: str, taken: set[str]) -> str:
    out, n = label, 1
    while out.lower() in taken:
        n += 1
        out = f"{label}_{n}"
    taken.add(out.lower())
    return out


# -- the local runner's side ----------------------------------------------------------------


def is_collector(step: Any) -> bool:
    return bool(step.fanout) and step.fanout["role"] in COLLECTOR_ROLES


def collector_after(step: Any) -> list[str]:
    """The member steps a collector waits for (its upstream beyond its inputs)."""
    return [m["step"] for m in step.fanout["members"]] if is_collector(step) else []


def readiness(step: Any, state: Mapping[str, str]) -> tuple[list[str], bool]:
    """(upstream steps that ended badly and doom ``step``, whether ``step`` may start now)."""
    ups = step.upstream()
    members = set(collector_after(step))
    bad = [u for u in ups if u not in members and state.get(u) in ("Failed", "Canceled")]
    if members:  # a collector runs once every trial has ended, however it ended
        ready = all(state.get(u) == "Completed" for u in ups if u not in members) and \
            all(state.get(u) in ("Completed", "Failed", "Canceled") for u in members)
        return bad, ready
    return bad, all(state.get(u) == "Completed" for u in ups)


def slot_free(step: Any, running: Sequence[str], steps: Mapping[str, Any]) -> bool:
    """Whether one more trial/item of ``step``'s sweep or map may start (its max_concurrent)."""
    f = step.fanout
    if not f or f["role"] not in RUN_ROLES:
        return True
    limit = steps[f["of"]].fanout.get("max_concurrent")
    if not limit:
        return True
    busy = sum(1 for n in running if (steps[n].fanout or {}).get("of") == f["of"])
    return busy < limit


def failures(pipeline: Any, state: Mapping[str, str]) -> list[str]:
    """Steps whose failure fails the run: a failed trial/item does not when its collector completed."""
    by_name = {s.name: s for s in pipeline.steps}
    out = []
    for name, st in state.items():
        if st != "Failed":
            continue
        f = by_name[name].fanout
        if f and f["role"] in RUN_ROLES and state.get(f["of"]) == "Completed":
            continue
        out.append(name)
    return out


def last_values(metrics: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    """Step -> the last value of metric ``name`` (metrics in logging order)."""
    out: dict[str, Any] = {}
    for m in sorted((m for m in metrics if m["name"] == name), key=lambda m: (m["step"], m["idx"])):
        out[m["step"]] = m["value_num"] if m["value_num"] is not None else m["value_str"]
    return out


def choose(f: Mapping[str, Any], status: Mapping[str, str], objective: Mapping[str, Any]) -> tuple[Optional[str], str]:
    """(best trial or None, a message): the rule, separate from the runner so it tests alone."""
    members = [m["step"] for m in f["members"]]
    done = [m for m in members if status.get(m) == "Completed"]
    if not done:
        return None, f"all {len(members)} trials failed; see their logs (run_trials() lists them)"
    numeric = {m: v for m, v in objective.items() if m in done and isinstance(v, (int, float)) and math.isfinite(v)}
    missing = [m for m in done if m not in numeric]
    if not numeric:
        return None, (f"no trial logged the objective `{f['objective']}` as a number (trials without it: "
                      f"{', '.join(missing)}); call log_metric(\"{f['objective']}\", value) in the script, "
                      "or fix `objective`")
    pick = min if f["goal"] == "minimize" else max
    best = pick(numeric, key=lambda m: (numeric[m], members.index(m)) if f["goal"] == "minimize"
                else (numeric[m], -members.index(m)))
    note = f"best trial {best}: {f['objective']} = {format_value(numeric[best])} ({f['goal']})"
    if missing:
        note += f"; trials that did not log `{f['objective']}`: {', '.join(missing)}"
    return best, note


def _link_tree(src: str, dst: str) -> None:
    """``dst`` as a copy of ``src`` made of hard links where the file system allows (no data copied)."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if os.path.isdir(src):
        shutil.copytree(src, dst, copy_function=link, symlinks=True)
    elif os.path.exists(src):
        os.makedirs(dst, exist_ok=True)
        link(src, os.path.join(dst, os.path.basename(src)))


def collect(runner: Any, step: Any) -> str:
    """Run a collector step inside the local runner: select the best trial, or gather the items."""
    reg, run_id = runner.reg, runner.run_id
    info = runner.plan["steps"][step.name]
    log = info["log"]
    started = time.time()
    reg.update_step(run_id, step.name, status="Running", started=started)
    f = step.fanout
    rows = {s["name"]: s for s in reg.get_steps(run_id)}
    status = {m["step"]: rows[m["step"]]["status"] for m in f["members"]}
    with runner.lock:
        member_outputs = {m["step"]: runner.outputs.get(m["step"]) for m in f["members"]}
    for name, outs in member_outputs.items():
        if outs is None and status[name] == "Completed":
            member_outputs[name] = rows[name]["outputs"] or {}
    if f["role"] == "select":
        best, note = choose(f, status, last_values(reg.get_metrics(run_id), f["objective"]))
        runner._log(log, f"amlr: sweep `{step.name}`: {sum(s == 'Completed' for s in status.values())} of "
                         f"{len(status)} trials completed; {note}.")
        if best is None:
            reg.update_step(run_id, step.name, status="Failed", error=note, ended=time.time())
            return "Failed"
        outputs = dict(member_outputs[best] or {})
        objective = last_values(reg.get_metrics(run_id), f["objective"])[best]
        reg.add_metrics(run_id, step.name, [{"name": f["objective"], "value": objective},
                                            {"name": "best_trial", "value": best}])
    else:
        outputs = {}
        names = sorted(set(step.outputs) | {OUTPUTS_DIR})
        failed = [m for m in f["members"] if status[m["step"]] != "Completed"]
        if len(failed) == len(f["members"]):
            error = f"all {len(failed)} items failed; see their logs (run_trials() lists them)"
            runner._log(log, f"amlr: map `{step.name}`: {error}.")
            reg.update_step(run_id, step.name, status="Failed", error=error, ended=time.time())
            return "Failed"
        for out in names:
            target = os.path.join(runner.run_dir, "outputs", step.name, out)
            if os.path.exists(target):
                shutil.rmtree(target)
            if out not in step.outputs and not any((member_outputs[m["step"]] or {}).get(out) for m in f["members"]):
                continue
            os.makedirs(target, exist_ok=True)
            for m in f["members"]:
                src = (member_outputs[m["step"]] or {}).get(out)
                if status[m["step"]] == "Completed" and src:
                    _link_tree(src, os.path.join(target, m["label"]))
            outputs[out] = target
        line = f"amlr: map `{step.name}`: {len(f['members']) - len(failed)} of {len(f['members'])} items completed"
        if failed:
            line += "; failed: " + ", ".join(f"{m['label']} ({m['step']})" for m in failed)
        runner._log(log, line + ".")
    failure = runner._register_outputs(step, outputs, log)
    state = "Failed" if failure else "Completed"
    with runner.lock:
        runner.outputs[step.name] = outputs
    reg.update_step(run_id, step.name, status=state, error=failure, ended=time.time(), outputs=outputs, exit_code=0)
    return state


# -- reading a run ----------------------------------------------------------------------


def trials_table(reg: Any, run: Mapping[str, Any], step: Optional[str]) -> dict[str, Any]:
    """One row per trial/item of a local run's sweep or map (``step``: which one; None: the only one)."""
    from .errors import StepNotFound

    path = os.path.join(run.get("run_dir") or "", "spec.json")
    if run.get("backend") != "local" or not os.path.isfile(path):
        raise StepNotFound(f"run_trials() reads local runs; run `{run['id']}` ran on `{run.get('backend')}`. "
                           "Open it in Azure ML studio to see its trials.")
    with open(path, encoding="utf-8") as fh:
        plan = json.load(fh)
    collectors = [s for s in plan["pipeline"]["steps"] if (s.get("fanout") or {}).get("role") in COLLECTOR_ROLES]
    if not collectors:
        raise StepNotFound(f"Run `{run['id']}` has no r_sweep() or r_map() step.")
    if step is None:
        if len(collectors) > 1:
            raise StepNotFound(f"Run `{run['id']}` has several sweeps/maps ({', '.join(c['name'] for c in collectors)}); "
                               "name one with `step`.")
        chosen = collectors[0]
    else:
        chosen = next((c for c in collectors if c["name"] == step), None)
        if chosen is None:
            raise StepNotFound(f"Run `{run['id']}` has no sweep or map `{step}` "
                               f"(it has: {', '.join(c['name'] for c in collectors)}).")
    f = chosen["fanout"]
    rows = {s["name"]: s for s in reg.get_steps(run["id"])}
    objective = last_values(reg.get_metrics(run["id"]), f["objective"]) if f["role"] == "select" else {}
    best = None
    if f["role"] == "select" and rows.get(chosen["name"], {}).get("status") == "Completed":
        best = next((m["value_str"] for m in reg.get_metrics(run["id"])
                     if m["step"] == chosen["name"] and m["name"] == "best_trial"), None)
    out = []
    for m in f["members"]:
        row = rows.get(m["step"], {})
        started, ended = row.get("started"), row.get("ended")
        out.append({
            "trial": m["step"], "values": m["values"], "item": m.get("label"), "status": row.get("status"),
            "objective": objective.get(m["step"]), "duration": (ended - started) if started and ended else None,
            "reused": bool(row.get("reused")), "best": m["step"] == best, "error": row.get("error"),
        })
    return {"step": chosen["name"], "kind": "sweep" if f["role"] == "select" else "map",
            "objective": f.get("objective"), "goal": f.get("goal"), "seed": f.get("seed"),
            "params": f.get("order") or list(f.get("params") or {}), "trials": out}
