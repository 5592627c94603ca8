"""What every backend runs in a step: one command line, built in one place.

Local runs, classic AML steps and v2 command jobs all start the bootstrapper
from the step's snapshot; only the way paths are spelled differs (a real
path, an azureml-core data reference, a v2 ``${{inputs.x}}`` binding). The
caller passes those spellings in.
"""
from __future__ import annotations

import shlex
from typing import Mapping

from .spec import Step

BOOTSTRAPPER_IN_SNAPSHOT = "_amlr/bootstrapper.py"


def bootstrapper_args(
    step: Step,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    *,
    metrics_sink: str = "auto",
) -> list[str]:
    """Arguments for ``python _amlr/bootstrapper.py`` (without the interpreter and script)."""
    missing_in = sorted(set(step.inputs) - set(inputs))
    missing_out = sorted(set(step.outputs) - set(outputs))
    if missing_in or missing_out:
        raise ValueError(f"step {step.name}: no binding for inputs {missing_in} / outputs {missing_out}")
    args: list[str] = ["--metrics-sink", metrics_sink]
    for name in sorted(step.inputs):
        args += ["--input", f"{name}={inputs[name]}"]
    for name in sorted(step.outputs):
        args += ["--output", f"{name}={outputs[name]}"]
    args += ["--", step.script, *step.args]
    return args


def bootstrapper_argv(step: Step, inputs: Mapping[str, str], outputs: Mapping[str, str], *,
                      python: str = "python", metrics_sink: str = "auto") -> list[str]:
    return [python, BOOTSTRAPPER_IN_SNAPSHOT, *bootstrapper_args(step, inputs, outputs, metrics_sink=metrics_sink)]


def quote_command(argv: list[str], *, keep_bindings: bool = True) -> str:
    """A shell command line; ``${{...}}`` bindings stay readable for AML v2 to substitute."""
    parts = []
    for arg in argv:
        if keep_bindings and "${{" in arg and "'" not in arg and '"' not in arg:
            # AML v2 replaces ${{inputs.x}} with a path before the shell sees it;
            # double quotes survive paths with spaces and keep the binding intact.
            parts.append(f'"{arg}"' if any(c in arg for c in " \t") else arg)
        else:
            parts.append(shlex.quote(arg))
    return " ".join(parts)
