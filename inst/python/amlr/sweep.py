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
(:mod:`amlr.backends.azureml_v2`); a trial receives its values as
``--param NAME VALUE`` words that Azure ML substitutes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import replace
from typing import Any, Callable, Mapping, Optional, Sequence

from .errors import InvalidSpec
from .stepcontract import OUTPUTS_DIR, fanout_placeholder, placeholders, substitute_fanout

MAX_RUNS = 1000
"""At most this many trials or items (Azure ML's limit on a sweep's total trials)."""
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
OVER_INPUT = "amlr_over"
"""The input that carries the folder of ``over = files_of(...)``; ``${{item}}`` is a path under it."""
GOALS = ("minimize", "maximize")
SAMPLINGS = ("grid", "random")
POLICIES = {
    "bandit": ("slack_factor", "slack_amount", "evaluation_interval", "delay_evaluation"),
    "median_stopping": ("evaluation_interval", "delay_evaluation"),
    "truncation_selection": ("truncation_percentage", "evaluation_interval", "delay_evaluation"),
}
USER_ROLES = ("sweep", "map")
RUN_ROLES = ("trial", "item")
COLLECTOR_ROLES = ("select", "gather")


def _fail(where: str, message: str) -> InvalidSpec:
    return InvalidSpec(message, field=where)


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _count(value: Any, where: str, what: str) -> Optional[int]:
    value = _one(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise _fail(where, f"`{what}` must be a whole number of at least 1, or NULL.")
    return int(value)


def _number(value: Any, where: str, what: str) -> float:
    value = _one(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f"`{what}` must be a finite number.")
    return float(value)


def format_value(value: Any) -> str:
    """A value as a script argument, written as R would print it (``1`` not ``1.0``, ``TRUE``)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


# -- parsing ----------------------------------------------------------------------


def _parse_param(name: str, raw: Any, where: str) -> dict[str, Any]:
    if not PARAM_NAME_RE.fullmatch(name):
        fixed = re.sub(r"[^A-Za-z0-9_]", "_", name) or "p"
        fixed = fixed if re.match(r"[A-Za-z_]", fixed) else "p_" + fixed
        raise _fail(where, f"Parameter name `{name}` is not allowed: letters, digits and `_`, starting with a "
                           f"letter or `_` (Azure ML's rule; it is a job input there). Try `{fixed}`.")
    if isinstance(raw, dict) and "type" in raw:
        kind = _one(raw.get("type"))
    else:
        raw, kind = {"values": raw}, "choice"
    if kind == "choice":
        values = raw.get("values")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise _fail(where, f"Parameter `{name}` has no values; give at least one, e.g. {name} = c(0.1, 1).")
        for v in values:
            if v is None or isinstance(v, (list, dict)) or (isinstance(v, float) and not math.isfinite(v)):
                raise _fail(where, f"Parameter `{name}`: each value must be one number, string or logical, not "
                                   f"{v!r} (NA, Inf and lists are not allowed).")
        seen: list[str] = []
        for v in values:
            if "${{" in format_value(v):
                raise _fail(where, f"Parameter `{name}`: value {format_value(v)!r} holds `${{{{`, which would be read "
                                   "as a placeholder in the trial's args; use another value.")
            if format_value(v) in seen:
                raise _fail(where, f"Parameter `{name}` lists the value {format_value(v)} twice; list each once.")
            seen.append(format_value(v))
        return {"type": "choice", "values": values}
    if kind in ("uniform", "loguniform"):
        lo = _number(raw.get("min_value"), where, f"{name}: min_value")
        hi = _number(raw.get("max_value"), where, f"{name}: max_value")
        if not lo < hi:
            raise _fail(where, f"Parameter `{name}`: {kind}() needs min_value < max_value (got {lo} and {hi}).")
        return {"type": kind, "min_value": lo, "max_value": hi}
    if kind == "randint":
        upper = _count(raw.get("upper"), where, f"{name}: upper")
        return {"type": "randint", "upper": upper}
    raise _fail(where, f"Parameter `{name}` has unknown type {kind!r}; use values, choice(), uniform(), "
                       "loguniform() or randint().")


def _parse_policy(raw: Any, where: str) -> Optional[dict[str, Any]]:
    if raw in (None, {}, []):
        return None
    if not isinstance(raw, dict) or _one(raw.get("type")) not in POLICIES:
        raise _fail(where, "`early_termination` must be NULL or made by early_termination(\"bandit\" | "
                           "\"median_stopping\" | \"truncation_selection\", ...).")
    kind = _one(raw["type"])
    out: dict[str, Any] = {"type": kind}
    for key, value in raw.items():
        if key == "type" or _one(value) is None:
            continue
        if key not in POLICIES[kind]:
            raise _fail(where, f"early_termination(\"{kind}\") takes {', '.join(POLICIES[kind])}, not `{key}`.")
        number = _number(value, where, key)
        out[key] = int(number) if key in ("evaluation_interval", "delay_evaluation", "truncation_percentage") else number
    if kind == "bandit" and ("slack_factor" in out) == ("slack_amount" in out):
        raise _fail(where, "early_termination(\"bandit\") needs exactly one of slack_factor and slack_amount.")
    return out


def parse_fanout(raw: Any, step_name: str, where: str) -> Optional[dict[str, Any]]:
    """Check and normalise a step's ``fanout`` (r_sweep()/r_map(), or an expanded trial/collector)."""
    if raw in (None, {}, []):
        return None
    if not isinstance(raw, dict):
        raise _fail(where, f"`fanout` of step `{step_name}` must come from r_sweep() or r_map().")
    role = _one(raw.get("role"))
    if role in RUN_ROLES or role in COLLECTOR_ROLES:
        return dict(raw)  # made by expand(): already checked
    if role == "sweep":
        return _parse_sweep(raw, step_name, where)
    if role == "map":
        return _parse_map(raw, step_name, where)
    raise _fail(where, f"`fanout` of step `{step_name}` has unknown role {role!r}.")


def _parse_sweep(raw: dict, step: str, where: str) -> dict[str, Any]:
    params_raw = raw.get("params")
    if not isinstance(params_raw, dict) or not params_raw:
        raise _fail(where + ".params", f"r_sweep() of `{step}` needs `params`: a named list such as "
                                       "list(alpha = c(0.1, 1), depth = 2:6).")
    params = {name: _parse_param(name, value, f"{where}.params.{name}") for name, value in params_raw.items()}
    objective = _one(raw.get("objective"))
    if not isinstance(objective, str) or not objective:
        raise _fail(where + ".objective", f"r_sweep() of `{step}` needs `objective`: the name of a metric the "
                                          "script logs with log_metric().")
    goal = _one(raw.get("goal")) or "minimize"
    sampling = _one(raw.get("sampling")) or "grid"
    if goal not in GOALS:
        raise _fail(where + ".goal", "`goal` must be \"minimize\" or \"maximize\".")
    if sampling not in SAMPLINGS:
        raise _fail(where + ".sampling", "`sampling` must be \"grid\" or \"random\".")
    max_trials = _count(raw.get("max_trials"), where + ".max_trials", "max_trials")
    seed = _one(raw.get("seed"))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, float)) or seed != int(seed)):
        raise _fail(where + ".seed", "`seed` must be a whole number or NULL.")
    out = {
        "role": "sweep", "params": params, "order": list(params), "objective": objective, "goal": goal, "sampling": sampling,
        "max_trials": max_trials, "max_concurrent": _count(raw.get("max_concurrent"), where, "max_concurrent"),
        "early_termination": _parse_policy(raw.get("early_termination"), where + ".early_termination"),
        "seed": None if seed is None else int(seed),
    }
    if sampling == "grid":
        continuous = [n for n, p in params.items() if p["type"] != "choice"]
        if continuous:
            raise _fail(where + ".params", f"Parameter `{continuous[0]}` is a {params[continuous[0]]['type']}() "
                                           "distribution, which a grid cannot enumerate; use sampling = \"random\" "
                                           "with max_trials, or give a vector of values.")
        size = math.prod(len(p["values"]) for p in params.values())
        limit = max_trials or MAX_RUNS
        if size > limit:
            what = f"max_trials = {max_trials}" if max_trials else f"amlr's limit of {MAX_RUNS} trials"
            raise _fail(where + ".max_trials", f"The grid of `{step}` has {size} combinations, more than {what}; "
                                               "use sampling = \"random\" (it draws max_trials of them), or give "
                                               "fewer values.")
    else:
        if max_trials is None:
            raise _fail(where + ".max_trials", f"r_sweep(sampling = \"random\") of `{step}` needs `max_trials`, "
                                               "the number of trials to draw.")
        if max_trials > MAX_RUNS:
            raise _fail(where + ".max_trials", f"max_trials = {max_trials} is over amlr's limit of {MAX_RUNS}.")
        if out["seed"] is None:  # recorded with the run, so the same draws can be made again
            out["seed"] = random.SystemRandom().randrange(1, 2**31 - 1)
    return out


def _parse_map(raw: dict, step: str, where: str) -> dict[str, Any]:
    over = raw.get("over")
    if not isinstance(over, dict) or _one(over.get("type")) not in ("values", "files"):
        raise _fail(where + ".over", f"r_map() of `{step}` needs `over`: a vector of values or files_of(folder).")
    out: dict[str, Any] = {"role": "map", "max_concurrent": _count(raw.get("max_concurrent"), where, "max_concurrent")}
    if _one(over["type"]) == "values":
        values = over.get("values")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise _fail(where + ".over", f"`over` of r_map() `{step}` is empty: give at least one value.")
        if len(values) > MAX_RUNS:
            raise _fail(where + ".over", f"`over` of r_map() `{step}` has {len(values)} items, over amlr's limit "
                                         f"of {MAX_RUNS}; group them (e.g. a file per batch) and map over the groups.")
        for v in values:
            if v is None or isinstance(v, (list, dict)):
                raise _fail(where + ".over", f"`over` of r_map() `{step}`: each item must be one number or string, "
                                             f"not {v!r}.")
        texts = [format_value(v) for v in values]
        odd = [t for t in texts if "${{" in t]
        if odd:
            raise _fail(where + ".over", f"Item {odd[0]!r} of r_map() `{step}` holds `${{{{`, which would be read as a "
                                         "placeholder in the step's args; use another value.")
        if len(set(texts)) != len(texts):
            dup = next(t for t in texts if texts.count(t) > 1)
            raise _fail(where + ".over", f"`over` of r_map() `{step}` lists `{dup}` twice; list each item once.")
        out["over"] = {"type": "values", "values": texts}
    else:
        if over.get("input") is None:
            raise _fail(where + ".over", f"files_of() of r_map() `{step}` names no folder.")
        out["over"] = {"type": "files", "input": over["input"]}  # also the step's input OVER_INPUT
    return out


def check_step(step: Any, where: str) -> None:
    """Placeholders of a sweep/map step name its parameters; a map's script gets ``${{item}}``."""
    f = step.fanout
    if not f or f["role"] not in USER_ROLES:
        return
    used = {fanout_placeholder(e) for a in step.args for e in placeholders(a)} - {None}
    if f["role"] == "sweep":
        ports = {p.lower(): p for p in [*step.inputs, *step.outputs]}
        clash = [n for n in f["params"] if n.lower() in ports]
        if clash:  # on Azure ML each parameter is an input of the trial, beside the step's ports
            raise _fail(where + ".params", f"Parameter `{clash[0]}` of r_sweep() `{step.name}` has the name of the "
                                           f"step's input or output `{ports[clash[0].lower()]}`; rename one.")
    if f["role"] == "map":
        if ("item", "") not in used:
            raise _fail(where + ".args", f"r_map() of `{step.name}`: the item reaches the script only as "
                                         "${{item}} in the step's args; add it, e.g. args = c(\"--file\", \"${{item}}\").")
        if f["over"]["type"] == "files" and OVER_INPUT not in step.inputs:
            raise _fail(where + ".over", f"r_map() of `{step.name}` maps over files but has no input `{OVER_INPUT}`.")


# -- trials and items ---------------------------------------------------------------


def trial_values(f: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The values of every trial of a sweep, in a stable order (grid: row-major; random: seeded draws)."""
    params = f["params"]
    names = [n for n in f.get("order") or [] if n in params] or list(params)  # the user's order (JSON sorts keys)
    if f["sampling"] == "grid":
        combos = itertools.product(*(params[n]["values"] for n in names))
        out = [dict(zip(names, c)) for c in combos]
        return out[: f["max_trials"]] if f.get("max_trials") else out
    rng = random.Random(f["seed"])
    out, seen = [], set()
    attempts = 0
    while len(out) < f["max_trials"] and attempts < f["max_trials"] * 50:
        attempts += 1
        values = {n: _draw(rng, params[n]) for n in names}
        key = json.dumps({k: format_value(v) for k, v in values.items()}, sort_keys=True)
        if key not in seen:  # a small discrete space has fewer distinct trials than max_trials
            seen.add(key)
            out.append(values)
    return out


def _draw(rng: random.Random, p: Mapping[str, Any]) -> Any:
    if p["type"] == "choice":
        return rng.choice(p["values"])
    if p["type"] == "uniform":
        return rng.uniform(p["min_value"], p["max_value"])
    if p["type"] == "loguniform":  # Azure ML's LogUniform: exp() of a uniform draw between the bounds
        return math.exp(rng.uniform(p["min_value"], p["max_value"]))
    return rng.randrange(p["upper"])


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


# -- Azure ML ---------------------------------------------------------------------------------


def gather_code(snapshots_dir: str) -> str:
    """The code folder of a map's gather node on Azure ML: :mod:`amlr.gather`, named by its content."""
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gather.py")
    with open(source, "rb") as fh:
        data = fh.read()
    folder = os.path.join(snapshots_dir, "gather-" + hashlib.sha256(data).hexdigest()[:12])
    if not os.path.isfile(os.path.join(folder, "gather.py")):
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, "gather.py.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, os.path.join(folder, "gather.py"))
    return folder


def refuse_on_classic(pipeline: Any) -> None:
    """The classic SDK's HyperDrive cannot be a pipeline step that feeds others: say so, name azureml_v2."""
    from .errors import Unsupported

    for s in pipeline.steps:
        if s.fanout and s.fanout["role"] in USER_ROLES:
            what = "r_sweep()" if s.fanout["role"] == "sweep" else "r_map()"
            raise Unsupported(
                f"Step `{s.name}` is an {what}, which the classic `azureml` backend does not run (HyperDrive "
                "cannot feed the best trial's outputs to the next pipeline step). Submit with backend = "
                "\"azureml_v2\" (a sweep job node), or run it locally.")


def _azure_param_type(p: Mapping[str, Any]) -> str:
    return {"choice": "string", "randint": "integer"}.get(p["type"], "number")


def azure_sweep(step: Any) -> dict[str, Any]:
    """What an Azure ML sweep node needs, in the YAML's own shape (export and azure-ai-ml both read it).

    Choice values travel as strings written as amlr writes them locally
    (``1`` not ``1.0``, ``TRUE``), so a trial's script sees the same text on
    every backend; they must survive the shell that runs a v2 command.
    """
    from .stepcontract import SAFE_WORD_RE

    f = step.fanout
    space: dict[str, Any] = {}
    for name, p in f["params"].items():
        if p["type"] == "choice":
            values = [format_value(v) for v in p["values"]]
            bad = [v for v in values if not SAFE_WORD_RE.match(v)]
            if bad:
                raise _fail(f"steps[{step.name}].params.{name}",
                            f"Value {bad[0]!r} of parameter `{name}` would not survive the shell that runs an Azure "
                            "ML command (Azure ML puts it into the command line); use values of letters, digits "
                            "and ._-+,:=@%/ only, e.g. an index into a list the script holds.")
            space[name] = {"type": "choice", "values": values}
        elif p["type"] == "randint":
            space[name] = {"type": "randint", "upper": p["upper"]}
        else:
            space[name] = {"type": p["type"], "min_value": p["min_value"], "max_value": p["max_value"]}
    if f["sampling"] == "grid":
        total = len(trial_values(f))
        sampling: Any = "grid"
    else:
        total = f["max_trials"]
        sampling = {"type": "random", "seed": f["seed"]}
    limits: dict[str, Any] = {"max_total_trials": total}
    if f.get("max_concurrent"):
        limits["max_concurrent_trials"] = f["max_concurrent"]
    out = {
        "search_space": space,
        "param_types": {n: _azure_param_type(p) for n, p in f["params"].items()},
        "objective": {"goal": f["goal"], "primary_metric": f["objective"]},
        "sampling_algorithm": sampling,
        "limits": limits,
    }
    if f.get("early_termination"):
        policy = dict(f["early_termination"])
        policy.setdefault("evaluation_interval", 1)
        policy.setdefault("delay_evaluation", 0)
        out["early_termination"] = policy
    return out


def expand_maps_for_azure(pipeline: Any, folder_of: Callable[[Any, str], str]) -> Any:
    """Each r_map() as one node per item plus its gather step (a sweep stays one step: a sweep node)."""
    if not any(s.fanout and s.fanout["role"] == "map" for s in pipeline.steps):
        return pipeline
    only_maps = replace(pipeline, steps=[s for s in pipeline.steps if not (s.fanout and s.fanout["role"] == "sweep")])
    expanded = expand(only_maps, folder_of)
    sweeps = [s for s in pipeline.steps if s.fanout and s.fanout["role"] == "sweep"]
    from .spec import topological_order

    steps = list(expanded.steps) + sweeps
    return replace(pipeline, steps=topological_order(steps))
