"""What ``r_sweep()`` and ``r_map()`` mean in a spec: the ``fanout`` field checked, the trials drawn.

:func:`parse_fanout` checks and normalises a step's ``fanout`` object (its
parameters and their distributions, objective, goal, sampling, limits and
early-termination policy, or a map's values or ``files_of()`` folder), and
:func:`check_step` checks it against the step (placeholders, port names);
the validator (:mod:`amlr.spec`) calls both. :func:`trial_values` samples the
search space -- the grid row by row, or seeded random draws -- the same way
every time, and :func:`format_value` writes a value as R would print it. What
happens to a checked sweep is :mod:`amlr.sweep` (locally) and
:mod:`amlr.sweepazure` (on Azure ML).
"""
from __future__ import annotations

import itertools
import json
import math
import re
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    import random

from .errors import InvalidSpec
from .stepcontract import fanout_placeholder, placeholders

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
            import random  # only for sweeps: a plain spec does not pay for it

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
    import random

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


def _draw(rng: "random.Random", p: Mapping[str, Any]) -> Any:
    if p["type"] == "choice":
        return rng.choice(p["values"])
    if p["type"] == "uniform":
        return rng.uniform(p["min_value"], p["max_value"])
    if p["type"] == "loguniform":  # Azure ML's LogUniform: exp() of a uniform draw between the bounds
        return math.exp(rng.uniform(p["min_value"], p["max_value"]))
    return rng.randrange(p["upper"])
