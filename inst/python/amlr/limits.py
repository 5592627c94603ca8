"""Limits a step must respect on every backend, checked before anything is written."""
from __future__ import annotations

from .errors import ArgumentTooLong
from .spec import Pipeline

# Linux refuses any single command-line argument above 128 kB (MAX_ARG_STRLEN),
# and a whole command line above ARG_MAX (2 MB with the environment) -- at the
# moment R is started, long after submit. Say so at submit instead.
MAX_ARG_BYTES = 128 * 1024 - 1
MAX_ARGS_TOTAL_BYTES = 1024 * 1024


def check_arg_sizes(pipeline: Pipeline) -> None:
    for step in pipeline.steps:
        total = 0
        for i, arg in enumerate(step.args):
            size = len(str(arg).encode("utf-8", "surrogateescape"))
            total += size + 1
            if size > MAX_ARG_BYTES:
                raise ArgumentTooLong(
                    f"Argument {i + 1} of step `{step.name}` is {size} bytes; a command-line argument may be at "
                    f"most {MAX_ARG_BYTES} bytes (128 kB). Pass large data as a file: write it to the step's "
                    "folder or an input, and give the script its path.", field=f"steps[{step.name}].args")
        if total > MAX_ARGS_TOTAL_BYTES:
            raise ArgumentTooLong(
                f"The arguments of step `{step.name}` are {total} bytes together; keep them under "
                f"{MAX_ARGS_TOTAL_BYTES} bytes (1 MB). Pass large data as a file or an input.",
                field=f"steps[{step.name}].args")
