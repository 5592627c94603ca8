"""The step contract: what one step runs, written once and read by every backend.

Every backend starts a step the same way::

    python _amlr/bootstrapper.py --step _amlr/steps/<step>.json \
        [--input NAME PATH]... [--output NAME PATH]...

The contract file (in the step's snapshot) holds everything a shell could
mangle: the R script, its arguments (byte for byte, with ``${{inputs.x}}`` /
``${{outputs.x}}`` placeholders that the bootstrapper resolves), the step's
environment variables, its input and output names and the metrics sink. The
command line itself holds only words that mean the same whether Azure ML keeps
its arguments apart, or joins them with spaces and hands them to ``sh -c`` /
``bash -c``: fixed option names, the contract's path, port names, and one
binding per port that the service substitutes (the SDK's data-binding object on
the classic path, ``${{inputs.x}}`` on v2, a real path locally). When a
binding reaches the bootstrapper unsubstituted it falls back to the variables
the service sets (``AZUREML_DATAREFERENCE_<name>``, ``AZURE_ML_INPUT_<name>``,
``AZURE_ML_OUTPUT_<name>``).

The placeholder grammar and its checks live here too, so the validator
(:mod:`amlr.spec`), the local runner and both Azure ML builders share them.
The bootstrapper, which must stay standard-library-only and self-contained,
carries its own copy of the resolver; a test keeps the two in step.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Mapping, Optional, Sequence

BOOTSTRAPPER_IN_SNAPSHOT = "_amlr/bootstrapper.py"
CONTRACT_DIR = "_amlr/steps"
FORMAT = "amlr-step/1"
OUTPUTS_DIR = "outputs"
"""Files a script writes under ./outputs are kept as the step's output of this name (Azure ML's convention)."""

PLACEHOLDER_RE = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
PORT_PLACEHOLDER_RE = re.compile(r"^(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)$")
# Many runs of one step (amlr.sweep): a trial's parameter value and a map's item.
PARAM_PLACEHOLDER_RE = re.compile(r"^search_space\.([A-Za-z_][A-Za-z0-9_]*)$")
ITEM_PLACEHOLDER = "item"
# Words that survive being joined with spaces and parsed again by a POSIX shell
# unchanged, apart from the bindings the service substitutes first.
SAFE_WORD_RE = re.compile(r"^[A-Za-z0-9_./:=@%+,-]+$")
BINDING_WORD_RE = re.compile(r"^(\$\{\{(inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*\}\}|\$AZUREML_DATAREFERENCE_[A-Za-z0-9_]+)$")


def contract_path(step_name: str) -> str:
    """Where a step's contract lives inside its snapshot (POSIX, relative)."""
    return f"{CONTRACT_DIR}/{step_name}.json"


def placeholders(text: str) -> list[str]:
    """The expressions inside ``${{ ... }}`` in ``text``."""
    return [m.group(1) for m in PLACEHOLDER_RE.finditer(text)]


def placeholder_problem(expr: str, inputs: Sequence[str], outputs: Sequence[str],
                        params: Optional[Sequence[str]] = None, item: bool = False,
                        pending: bool = False) -> Optional[str]:
    """Why ``${{expr}}`` cannot be resolved for a step with these ports, or None.

    ``params``: the parameter names of the r_sweep() the step is in (None: not
    in a sweep); ``item``: whether the step is in an r_map(); ``pending``: a
    step checked on its own (r_step()), which r_sweep()/r_map() may still wrap.
    """
    fan = fanout_placeholder(expr)
    if fan is not None and pending:
        return None
    if fan is not None:
        kind, name = fan
        if kind == "param":
            if params is None:
                return (f"`${{{{{expr}}}}}` is a sweep parameter, but step is not in an r_sweep(); "
                        f"wrap it: r_sweep(step, params = list({name} = ...), objective = ...)")
            if name not in params:
                have = ", ".join(params) if params else "none"
                return (f"`${{{{{expr}}}}}` names no parameter of the sweep (its params: {have}); "
                        f"add `{name}` to `params` or fix the name")
            return None
        if not item:
            return "`${{item}}` is a map item, but the step is not in an r_map(); wrap it: r_map(step, over = ...)"
        return None
    m = PORT_PLACEHOLDER_RE.match(expr)
    if not m:
        return (f"`${{{{{expr}}}}}` is not a placeholder amlr knows; use ${{{{inputs.NAME}}}} or "
                "${{outputs.NAME}} with a name of the step's inputs or outputs (in r_sweep(): "
                "${{search_space.NAME}}; in r_map(): ${{item}})")
    kind, name = m.groups()
    known = list(inputs if kind == "inputs" else outputs)
    if kind == "outputs" and name == OUTPUTS_DIR:
        return None
    if name not in known:
        have = ", ".join(known) if known else "none"
        return f"`${{{{{expr}}}}}` names no {kind[:-1]} of the step (its {kind}: {have})"
    return None


def fanout_placeholder(expr: str) -> Optional[tuple[str, str]]:
    """``("param", NAME)`` for ``search_space.NAME``, ``("item", "")`` for ``item``, else None."""
    if expr == ITEM_PLACEHOLDER:
        return ("item", "")
    m = PARAM_PLACEHOLDER_RE.match(expr)
    return ("param", m.group(1)) if m else None


def resolve_placeholders(text: str, paths: Mapping[str, Mapping[str, str]]) -> str:
    """Replace placeholders with values; ``paths`` is {"inputs": {...}, "outputs": {...}, "search_space": {...}}.

    ``search_space`` holds a sweep trial's parameter values (given to the
    bootstrapper as ``--param NAME VALUE`` where the service substitutes them).
    """

    def sub(m: "re.Match[str]") -> str:
        pm = PORT_PLACEHOLDER_RE.match(m.group(1))
        fan = fanout_placeholder(m.group(1))
        if fan is not None and fan[0] == "param" and fan[1] in paths.get("search_space", {}):
            return paths["search_space"][fan[1]]
        if not pm or pm.group(2) not in paths.get(pm.group(1), {}):
            raise KeyError(m.group(1))
        return paths[pm.group(1)][pm.group(2)]

    return PLACEHOLDER_RE.sub(sub, text)


def substitute_fanout(text: str, values: Mapping[str, str], item: Optional[str] = None) -> str:
    """A trial's or item's own values put into an argument; port placeholders are left for the bootstrapper."""

    def sub(m: "re.Match[str]") -> str:
        fan = fanout_placeholder(m.group(1))
        if fan is None:
            return m.group(0)
        if fan[0] == "item":
            if item is None:
                raise KeyError(m.group(1))
            return item
        if fan[1] not in values:
            raise KeyError(m.group(1))
        return values[fan[1]]

    return PLACEHOLDER_RE.sub(sub, text)


def document(*, step: str, script: str, args: Sequence[str], env: Mapping[str, str], inputs: Sequence[str],
             outputs: Sequence[str], values: Optional[Mapping[str, str]] = None,
             metrics_sink: str = "auto") -> dict[str, Any]:
    """The contract of one step, as stored in ``_amlr/steps/<step>.json``.

    ``values``: inputs whose value is fixed when the job is built (a URI the
    script reads itself) rather than bound by the service.
    """
    return {
        "format": FORMAT,
        "step": step,
        "script": script,
        "args": list(args),
        "env": dict(sorted(env.items())),
        "inputs": sorted(inputs),
        "outputs": sorted(outputs),
        "values": dict(sorted((values or {}).items())),
        "metrics_sink": metrics_sink,
    }


def to_bytes(contract: Mapping[str, Any]) -> bytes:
    """Canonical bytes: the same contract always hashes the same."""
    return (json.dumps(contract, sort_keys=True, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def command(step_name: str, inputs: Sequence[str], outputs: Sequence[str], bind: Callable[[str, str], Any], *,
            python: str = "python", params: Sequence[str] = ()) -> list[Any]:
    """The step's command line; ``bind(kind, name)`` spells a port's path (a string or an SDK binding object).

    Ports whose ``bind`` returns None are left out: the bootstrapper then finds
    them in the contract (fixed values) or in the service's variables.
    """
    argv: list[Any] = [python, BOOTSTRAPPER_IN_SNAPSHOT, "--step", contract_path(step_name)]
    for kind, names in (("input", inputs), ("output", outputs)):
        for name in sorted(names):
            value = bind(kind, name)
            if value is not None:
                argv += [f"--{kind}", name, value]
    for name in sorted(params):  # a sweep trial's values, substituted by the service (``${{inputs.NAME}}``)
        argv += ["--param", name, "${{inputs.%s}}" % name]
    return argv


def check_shell_safe(argv: Sequence[Any]) -> None:
    """Every string word survives a join with spaces and a shell's re-split (bindings excepted)."""
    for word in argv:
        if isinstance(word, str) and not (SAFE_WORD_RE.match(word) or BINDING_WORD_RE.match(word)):
            raise ValueError(f"command word {word!r} would not survive a shell; this is an amlr bug")


def command_line(argv: Sequence[str]) -> str:
    """The command as one line (v2 jobs): the words joined, which :func:`check_shell_safe` makes safe."""
    check_shell_safe(argv)
    return " ".join(argv)
