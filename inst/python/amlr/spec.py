"""The pipeline spec: one validator for every backend.

R builds plain lists and sends them as JSON; this module turns that JSON into
typed objects, checks everything a backend would otherwise trip over later
(names, references, cycles, paths) and orders the steps. Pure logic apart from
``os.path`` checks, so it tests without a backend.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from . import sweepspec
from .errors import InvalidSpec
from .stepcontract import OUTPUTS_DIR, placeholder_problem, placeholders

# Azure ML v2 pipeline node names and port names must be valid Python
# identifiers; lower case keeps them identical on the classic path, whose step
# names end up in folder names on case-insensitive file systems.
STEP_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")
PORT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
# Azure ML experiment / pipeline display names.
PIPELINE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
URI_RE = re.compile(r"^(azureml|https?|wasbs?|abfss?|adl)://", re.IGNORECASE)


@dataclass(frozen=True)
class Input:
    """A step input: a local path, a remote URI, another step's output, or a registered data asset."""

    kind: str  # "path" | "uri" | "step_output" | "data_asset"
    path: Optional[str] = None
    uri: Optional[str] = None
    step: Optional[str] = None
    output: Optional[str] = None
    asset: Optional[str] = None  # data_asset: name, version ("latest" or a version), mode
    version: Optional[str] = None
    mode: Optional[str] = None
    data_type: Optional[str] = None  # uri_folder | uri_file | mltable; None: look it up

    def to_json(self) -> dict[str, Any]:
        if self.kind == "data_asset":
            return {"type": "data_asset", "name": self.asset, "version": self.version, "mode": self.mode,
                    "data_type": self.data_type}
        if self.kind == "path":
            return {"type": "path", "path": self.path}
        if self.kind == "uri":
            return {"type": "uri", "uri": self.uri}
        return {"type": "step_output", "step": self.step, "output": self.output}


@dataclass
class Step:
    name: str
    script: str
    source_dir: str
    args: list[str] = field(default_factory=list)
    inputs: dict[str, Input] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    environment: Optional[dict[str, Any]] = None
    compute: Optional[str] = None
    allow_reuse: bool = True
    step_type: str = "command"
    env: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    register: dict[str, str] = field(default_factory=dict)  # output -> data asset name
    fanout: Optional[dict[str, Any]] = None  # r_sweep() / r_map(), or what amlr.sweep.expand() made of them

    def upstream(self) -> list[str]:
        ups = {i.step for i in self.inputs.values() if i.kind == "step_output" and i.step}
        if self.fanout and self.fanout.get("members"):  # a sweep's/map's collector waits for its trials
            ups |= {m["step"] for m in self.fanout["members"]}
        return sorted(ups)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "script": self.script,
            "source_dir": self.source_dir,
            "args": list(self.args),
            "inputs": {k: v.to_json() for k, v in sorted(self.inputs.items())},
            "outputs": list(self.outputs),
            "environment": self.environment,
            "compute": self.compute,
            "allow_reuse": self.allow_reuse,
            "step_type": self.step_type,
            "env": dict(self.env),
            "files": list(self.files),
            **({"register": dict(sorted(self.register.items()))} if self.register else {}),
            **({"fanout": self.fanout} if self.fanout else {}),
        }


@dataclass
class Pipeline:
    name: str
    description: Optional[str]
    steps: list[Step]  # in a valid run order (topological, stable)
    compute: Optional[str] = None
    environment: Optional[dict[str, Any]] = None

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def downstream(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {s.name: [] for s in self.steps}
        for s in self.steps:
            for up in s.upstream():
                out[up].append(s.name)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "compute": self.compute,
            "environment": self.environment,
            "steps": [s.to_json() for s in self.steps],
        }


def _fail(field_name: str, message: str) -> InvalidSpec:
    return InvalidSpec(message, field=field_name)


def _as_str(value: Any, field_name: str, *, required: bool = True) -> Optional[str]:
    if value is None or value == "":
        if required:
            raise _fail(field_name, f"`{field_name}` is missing; give it a non-empty string.")
        return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise _fail(field_name, f"`{field_name}` must be a string, not {type(value).__name__}.")
    return value


def suggest_name(raw: str) -> str:
    """A valid step name close to ``raw`` (used in error messages and by R)."""
    base = re.sub(r"\.[Rr]$", "", os.path.basename(raw))
    name = re.sub(r"[^a-z0-9_]", "_", base.lower())
    if not name or not re.match(r"[a-z_]", name[0]):
        name = "step_" + name
    return name[:255]


def _parse_input(step: str, name: str, value: Any) -> Input:
    where = f"steps[{step}].inputs.{name}"
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        if URI_RE.match(value):
            return Input("uri", uri=value)
        return Input("path", path=os.path.abspath(os.path.expanduser(value)))
    if not isinstance(value, dict):
        raise _fail(where, f"Input `{name}` of step `{step}` must be a path, a URI or output_of(step, output).")
    kind = value.get("type")
    if kind == "step_output":
        return Input(
            "step_output",
            step=_as_str(value.get("step"), where + ".step"),
            output=_as_str(value.get("output"), where + ".output"),
        )
    if kind == "uri":
        return Input("uri", uri=_as_str(value.get("uri"), where + ".uri"))
    if kind == "path":
        path = _as_str(value.get("path"), where + ".path") or ""
        return Input("path", path=os.path.abspath(os.path.expanduser(path)))
    if kind == "data_asset":
        return _parse_data_asset(where, value)
    raise _fail(where, f"Input `{name}` of step `{step}` has unknown type {kind!r}; use a path, a URI or output_of().")


DATA_MODES = ("ro_mount", "download")


def _parse_data_asset(where: str, value: dict) -> Input:
    from .store import InvalidAssetName, check_name, check_version

    try:
        name = check_name(_as_str(value.get("name"), where + ".name"))
        version = value.get("version")
        version = "latest" if version in (None, "", "latest", ["latest"]) else check_version(version)
    except InvalidAssetName as exc:
        raise _fail(where, exc.message) from exc
    mode = _as_str(value.get("mode"), where + ".mode", required=False) or "ro_mount"
    if mode not in DATA_MODES:
        raise _fail(where + ".mode", f"`mode` of aml_data(\"{name}\") must be one of: {', '.join(DATA_MODES)}.")
    data_type = _as_str(value.get("data_type"), where + ".data_type", required=False)
    if data_type not in (None, "uri_folder", "uri_file", "mltable"):
        raise _fail(where + ".data_type", f"`type` of aml_data(\"{name}\") must be uri_folder, uri_file or mltable.")
    return Input("data_asset", asset=name, version=version, mode=mode, data_type=data_type)


def _parse_register(where: str, raw: Any, outputs: list[str]) -> dict[str, str]:
    """``r_step(register = c(output = "asset-name"))``: outputs registered as data assets on completion."""
    if raw in (None, [], {}):
        return {}
    from .store import InvalidAssetName, check_name

    if not isinstance(raw, dict):
        raise _fail(where, "`register` must be a named character vector: c(output = \"asset-name\").")
    out: dict[str, str] = {}
    for output, asset in raw.items():
        if output not in outputs:
            raise _fail(where, f"`register` names output `{output}`, which the step does not declare "
                               f"(its outputs: {', '.join(outputs) or 'none'}); add it to `outputs`.")
        try:
            out[output] = check_name(asset)
        except InvalidAssetName as exc:
            raise _fail(where, f"register = c({output} = ...): {exc.message}") from exc
    return out


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, float, bool)):
        return [value]
    if isinstance(value, dict) and not value:
        return []
    return list(value)


def _parse_step(raw: Any, index: int, *, check_paths: bool, pending: bool = False) -> Step:
    if not isinstance(raw, dict):
        raise _fail(f"steps[{index}]", "Each step must be an object built by r_step().")
    name = _as_str(raw.get("name"), f"steps[{index}].name")
    assert name is not None
    if not STEP_NAME_RE.fullmatch(name):
        raise _fail(
            f"steps[{index}].name",
            f"Step name `{name}` is not allowed: Azure ML wants lower-case letters, digits and `_`, "
            f"starting with a letter or `_` (at most 255). Try name = \"{suggest_name(name)}\".",
        )
    where = f"steps[{name}]"
    script = _as_str(raw.get("script"), where + ".script")
    source_dir = _as_str(raw.get("source_dir"), where + ".source_dir")
    assert script is not None and source_dir is not None
    source_dir = os.path.abspath(os.path.expanduser(source_dir))
    args = _parse_args(raw.get("args"), where, name)
    inputs_raw = raw.get("inputs") or {}
    if isinstance(inputs_raw, list) and not inputs_raw:
        inputs_raw = {}
    if not isinstance(inputs_raw, dict):
        raise _fail(where + ".inputs", f"`inputs` of step `{name}` must be a named list.")
    inputs: dict[str, Input] = {}
    for in_name, value in inputs_raw.items():
        if not PORT_NAME_RE.fullmatch(in_name):
            raise _fail(
                f"{where}.inputs.{in_name}",
                f"Input name `{in_name}` of step `{name}` must be letters, digits and `_`, starting with a letter or `_`.",
            )
        inputs[in_name] = _parse_input(name, in_name, value)
    fanout = sweepspec.parse_fanout(raw.get("fanout"), name, where + ".fanout")
    over = (raw.get("fanout") or {}).get("over") if isinstance(raw.get("fanout"), dict) else None
    if fanout and fanout["role"] == "map" and isinstance(over, dict) and over.get("input") is not None:
        inputs[sweepspec.OVER_INPUT] = _parse_input(name, sweepspec.OVER_INPUT, over["input"])
    outputs = [str(o) for o in _as_list(raw.get("outputs"))]
    seen_out: set[str] = set()
    for out in outputs:
        if not PORT_NAME_RE.fullmatch(out):
            raise _fail(
                f"{where}.outputs",
                f"Output name `{out}` of step `{name}` must be letters, digits and `_`, starting with a letter or `_`.",
            )
        if out.lower() in seen_out:
            raise _fail(f"{where}.outputs", f"Step `{name}` declares output `{out}` twice.")
        if out == OUTPUTS_DIR:
            raise _fail(
                f"{where}.outputs",
                f"Output name `{OUTPUTS_DIR}` of step `{name}` is reserved: files the script writes under ./outputs "
                "are kept as that output already. Write there, or give this output another name.",
            )
        if out.lower() in {i.lower() for i in inputs}:
            raise _fail(f"{where}.outputs", f"Step `{name}` uses `{out}` both as an input and an output name; rename one.")
        seen_out.add(out.lower())
    allow_reuse = raw.get("allow_reuse", True)
    if isinstance(allow_reuse, list) and len(allow_reuse) == 1:
        allow_reuse = allow_reuse[0]
    if not isinstance(allow_reuse, bool):
        raise _fail(where + ".allow_reuse", f"`allow_reuse` of step `{name}` must be TRUE or FALSE.")
    step_type = _as_str(raw.get("step_type"), where + ".step_type", required=False) or "command"
    if step_type not in ("command", "estimator", "python_script"):
        raise _fail(where + ".step_type", f"`step_type` of step `{name}` must be \"command\", \"estimator\" or \"python_script\".")
    env = raw.get("environment")
    if env is not None and not isinstance(env, dict):
        raise _fail(where + ".environment", f"`environment` of step `{name}` must come from r_environment().")
    step = Step(
        name=name,
        script=script,
        source_dir=source_dir,
        args=args,
        inputs=inputs,
        outputs=outputs,
        environment=env or None,
        compute=_as_str(raw.get("compute"), where + ".compute", required=False),
        allow_reuse=allow_reuse,
        step_type=step_type,
        env=_parse_env(raw.get("env"), where, name),
        files=_parse_files(raw.get("files"), where, name, source_dir, check_paths=check_paths),
        register=_parse_register(where + ".register", raw.get("register"), outputs),
        fanout=fanout,
    )
    _check_script(step, check_paths=check_paths)
    _check_placeholders(step, pending=pending)
    sweepspec.check_step(step, where)
    return step


def _parse_args(value: Any, where: str, step: str) -> list[str]:
    """Script arguments: strings (numbers are written as R would print them), never NA or nested."""
    if isinstance(value, dict):
        if value:
            raise _fail(where + ".args", f"`args` of step `{step}` must be an unnamed character vector; named "
                        "arguments have no meaning to Rscript. Write c(\"--alpha\", \"0.1\") instead of "
                        "c(alpha = \"0.1\").")
        return []
    out: list[str] = []
    for i, a in enumerate(_as_list(value), start=1):
        if a is None:
            raise _fail(f"{where}.args[{i}]", f"Argument {i} of step `{step}` is NA; give a string, or leave it out.")
        if isinstance(a, (list, dict)):
            raise _fail(f"{where}.args[{i}]", f"Argument {i} of step `{step}` is a list; `args` must be a character "
                        "vector (use unlist() or paste() first).")
        if isinstance(a, bool):
            a = "TRUE" if a else "FALSE"
        out.append(str(a))
    return out


ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV_PREFIXES = ("AMLR_", "AZUREML_", "AZURE_ML_")


def _parse_env(value: Any, where: str, step: str) -> dict[str, str]:
    if value is None or value == [] or value == {}:
        return {}
    if not isinstance(value, dict):
        raise _fail(where + ".env", f"`env` of step `{step}` must be a named character vector, "
                    "e.g. env = c(N_TREES = \"500\").")
    out: dict[str, str] = {}
    for key, val in value.items():
        if isinstance(val, list) and len(val) == 1:
            val = val[0]
        if not ENV_NAME_RE.fullmatch(key):
            raise _fail(f"{where}.env.{key}", f"Environment variable name `{key}` of step `{step}` is not valid: "
                        "letters, digits and `_`, not starting with a digit.")
        if key.upper().startswith(RESERVED_ENV_PREFIXES):
            raise _fail(f"{where}.env.{key}", f"Environment variable `{key}` of step `{step}` uses a prefix that "
                        "amlr and Azure ML set themselves (AMLR_, AZUREML_, AZURE_ML_); choose another name.")
        if val is None or isinstance(val, (list, dict)):
            raise _fail(f"{where}.env.{key}", f"Environment variable `{key}` of step `{step}` must be one string, "
                        "not NA or a vector.")
        out[key] = "TRUE" if val is True else "FALSE" if val is False else str(val)
    return out


def _parse_files(value: Any, where: str, step: str, source_dir: str, *, check_paths: bool) -> list[str]:
    """Extra files a step reads (relative to its source_dir), for its code identity."""
    out: list[str] = []
    for i, f in enumerate(_as_list(value), start=1):
        if not isinstance(f, str) or not f:
            raise _fail(f"{where}.files[{i}]", f"`files` of step `{step}` must be paths inside its source_dir.")
        rel = f.replace("\\", "/")
        if os.path.isabs(rel):
            rel = os.path.relpath(rel, source_dir).replace(os.sep, "/")
        if rel.startswith("../") or rel == "..":
            raise _fail(f"{where}.files[{i}]", f"File `{f}` of step `{step}` is outside its source_dir "
                        f"`{source_dir}`; only files of the snapshot can be read on Azure ML.")
        if check_paths and not os.path.exists(os.path.join(source_dir, rel)):
            raise _fail(f"{where}.files[{i}]", f"File `{f}` of step `{step}` does not exist in `{source_dir}`.")
        out.append(rel)
    return sorted(set(out))


def _check_placeholders(step: Step, *, pending: bool = False) -> None:
    f = step.fanout or {}
    params = list(f["params"]) if f.get("params") else None
    item = f.get("role") in ("map", "gather", "item")
    for i, arg in enumerate(step.args, start=1):
        for expr in placeholders(arg):
            problem = placeholder_problem(expr, list(step.inputs), step.outputs, params=params, item=item,
                                          pending=pending)
            if problem:
                raise _fail(f"steps[{step.name}].args[{i}]", f"Argument {i} of step `{step.name}`: {problem}.")


def _check_script(step: Step, *, check_paths: bool) -> None:
    where = f"steps[{step.name}]"
    if os.path.isabs(step.script) or step.script.replace("\\", "/").startswith("../") or "/../" in step.script.replace("\\", "/"):
        raise _fail(
            where + ".script",
            f"Script `{step.script}` of step `{step.name}` must be a path inside its source_dir "
            f"(`{step.source_dir}`); move the script there or widen source_dir.",
        )
    if not check_paths:
        return
    if not os.path.isdir(step.source_dir):
        raise _fail(where + ".source_dir", f"source_dir `{step.source_dir}` of step `{step.name}` is not a folder.")
    full = os.path.realpath(os.path.join(step.source_dir, step.script))
    root = os.path.realpath(step.source_dir)
    if os.path.commonpath([full, root]) != root:
        raise _fail(
            where + ".script",
            f"Script `{step.script}` of step `{step.name}` is outside its source_dir `{step.source_dir}`.",
        )
    if not os.path.isfile(full):
        raise _fail(where + ".script", f"Script `{step.script}` of step `{step.name}` does not exist in `{step.source_dir}`.")


def find_cycle(graph: dict[str, list[str]]) -> Optional[list[str]]:
    """A cycle in ``graph`` (node -> upstream nodes) as a closed path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> Optional[list[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def topological_order(steps: list[Step]) -> list[Step]:
    """Steps in run order; ties keep the order the user wrote them in."""
    by_name = {s.name: s for s in steps}
    done: set[str] = set()
    order: list[Step] = []
    while len(order) < len(steps):
        progressed = False
        for s in steps:
            if s.name not in done and all(u in done for u in s.upstream()):
                order.append(s)
                done.add(s.name)
                progressed = True
        if not progressed:  # validate() names the cycle first (find_cycle); this guards direct callers
            raise _fail("steps", "The steps form a cycle.")
    assert set(by_name) == done
    return order


def validate(raw: Any, *, check_paths: bool = True, pending: bool = False) -> Pipeline:
    """Parse and check a spec; raise ``InvalidSpec`` naming the offending field."""
    if not isinstance(raw, dict):
        raise _fail("pipeline", "A pipeline spec must be an object built by r_pipeline().")
    steps_raw = raw.get("steps")
    if not steps_raw:
        raise _fail("steps", "The pipeline has no steps; add at least one r_step().")
    if isinstance(steps_raw, dict):
        steps_raw = list(steps_raw.values())
    steps = [_parse_step(s, i, check_paths=check_paths, pending=pending) for i, s in enumerate(steps_raw)]
    # After the steps: a single step's pipeline is named after it, and its
    # own error says more than the pipeline's would.
    name = _as_str(raw.get("name"), "name")
    assert name is not None
    if not PIPELINE_NAME_RE.fullmatch(name):
        raise _fail(
            "name",
            f"Pipeline name `{name}` is not allowed: use letters, digits, `_`, `-` and `.`, starting with a letter or digit.",
        )
    seen: set[str] = set()
    for s in steps:
        if s.name in seen:
            raise _fail(
                f"steps[{s.name}].name",
                f"Two steps are named `{s.name}`; step names must be unique (give one a different `name`).",
            )
        seen.add(s.name)
    by_name = {s.name: s for s in steps}
    for s in steps:
        for in_name, inp in s.inputs.items():
            where = f"steps[{s.name}].inputs.{in_name}"
            if inp.kind == "step_output":
                if inp.step not in by_name:
                    raise _fail(
                        where,
                        f"Step `{s.name}` reads output_of(\"{inp.step}\", \"{inp.output}\") but there is no step "
                        f"`{inp.step}` in the pipeline (steps: {', '.join(sorted(by_name))}).",
                    )
                if inp.step == s.name:
                    raise _fail(where, f"Step `{s.name}` reads its own output `{inp.output}`; a step cannot depend on itself.")
                if inp.output not in by_name[inp.step].outputs:
                    known = ", ".join(by_name[inp.step].outputs) or "none"
                    raise _fail(
                        where,
                        f"Step `{s.name}` reads output `{inp.output}` of step `{inp.step}`, which declares no such "
                        f"output (its outputs: {known}); add it to `outputs` of `{inp.step}`.",
                    )
            elif inp.kind == "path" and check_paths and not os.path.exists(inp.path or ""):
                raise _fail(where, f"Input `{in_name}` of step `{s.name}`: path `{inp.path}` does not exist.")
    cycle = find_cycle({s.name: s.upstream() for s in steps})
    if cycle:
        raise _fail("steps", "The steps form a cycle: " + " -> ".join(cycle) + ". Remove one of these output_of() links.")
    description = _as_str(raw.get("description"), "description", required=False)
    env = raw.get("environment")
    return Pipeline(
        name=name,
        description=description,
        steps=topological_order(steps),
        compute=_as_str(raw.get("compute"), "compute", required=False),
        environment=env if isinstance(env, dict) and env else None,
    )
