"""``python -m amlr``: the bridge endpoint, the detached local runner and its warm spare."""
from __future__ import annotations

import sys
from typing import Any, Optional, Sequence


class SiteOnDemand:
    """With ``python -S`` (the bridge's cheapest safe start), add site-packages at the first miss.

    Most bridge calls need only the standard library; the ones that import an
    Azure SDK (or anything else installed) find it anyway: this finder sits
    last on ``sys.meta_path``, so it is asked only when nothing else found a
    module, and then runs ``site.main()`` once and lets the path finder retry.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if path is not None or self not in sys.meta_path:
            return None
        if name.partition(".")[0] in NEVER_INSTALLED:  # a probe that is allowed to fail: not worth site
            return None
        sys.meta_path.remove(self)
        import importlib.machinery
        import site

        site.main()
        return importlib.machinery.PathFinder.find_spec(name, path, target)


# The standard library's own optional imports (subprocess's `import msvcrt`, copy's
# Jython `org.python.core`) miss on every start; they are never in site-packages.
NEVER_INSTALLED = frozenset(sys.stdlib_module_names) | {"org"}


def site_on_demand() -> None:
    if sys.flags.no_site and not any(isinstance(f, SiteOnDemand) for f in sys.meta_path):
        sys.meta_path.append(SiteOnDemand())


def call() -> int:
    """The bridge endpoint: kept free of argparse, every R call starts here."""
    from . import procs
    from .api import handle_json

    procs.FORK_RUNNER = True
    text = sys.stdin.buffer.read().decode("utf-8")
    # Only the response may reach stdout: SDKs that print go to stderr.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        response = handle_json(text)
    finally:
        sys.stdout = real_stdout
    sys.stdout.write(response)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def stream() -> int:
    """The streaming endpoint: JSON lines, flushed one by one, for R to read from a pipe."""
    import json
    import os
    import signal

    from . import procs
    from .api import stream_json

    # Ctrl+C in a terminal reaches the whole foreground group: R decides what an
    # interrupt means (detach), this follower only stops when R closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procs.FORK_RUNNER = True
    text = sys.stdin.buffer.read().decode("utf-8")
    out = sys.stdout
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        out.write(json.dumps({"event": "hello", "pid": os.getpid()}) + "\n")
        out.flush()
        for line in stream_json(text):
            out.write(line + "\n")
            out.flush()
    except BrokenPipeError:
        # R stopped listening (an interrupt): the run itself goes on.
        os._exit(0)
    finally:
        sys.stdout = real_stdout
    return 0


def spare_runner() -> int:
    """Wait, warm, for the run an embedded bridge hands over on stdin; then be its runner."""
    import json
    import os

    from . import procs
    from .backends.local.runner import run_runner  # the point of a spare: imported before it is needed

    line = sys.stdin.buffer.readline()
    if not line.strip():  # the R session that started us is gone
        return 0
    job = json.loads(line)
    procs.redirect_std(job["log_path"])
    os.environ.clear()  # the submitting session's environment, as a runner started then would have
    os.environ.update(job["env"])
    return run_runner(job["home"], job["run_id"], int(job["max_parallel"]), cwd=job["cwd"],
                      regenerate=bool(job["regenerate"]))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    site_on_demand()
    if args_in == ["call"]:
        return call()
    if args_in == ["stream"]:
        return stream()
    if args_in == ["spare-runner"]:
        return spare_runner()
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m amlr",
        description="amlr's Python side: run R pipelines locally or on Azure Machine Learning. "
        "R calls it; you rarely need to.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("call", help="read one JSON request on stdin, write one JSON response on stdout")
    sub.add_parser("stream", help="like call, but write JSON-line events (logs, step states) before the response")
    runner = sub.add_parser("runner", help="run a submitted local run to its end (started by submit)")
    runner.add_argument("--home", required=True, help="the amlr home holding the registry")
    runner.add_argument("--max-parallel", type=int, default=1, help="steps run at the same time")
    runner.add_argument("--regenerate-outputs", action="store_true", help="run every step, reusing nothing")
    runner.add_argument("run_id")
    sub.add_parser("spare-runner", help="wait for a run on stdin, then run it (kept ready by an embedded bridge)")
    args = parser.parse_args(args_in)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.command == "call":
        return call()
    if args.command == "stream":
        return stream()
    if args.command == "runner":
        from .backends.local.runner import run_runner

        return run_runner(args.home, args.run_id, args.max_parallel, regenerate=args.regenerate_outputs)
    if args.command == "spare-runner":
        return spare_runner()
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
