"""Start one R pipeline step: the only Python code that runs inside a job.

This file and its companion ``stepmetrics.py`` (imported only when metrics are
forwarded) are copied into every job snapshot's ``_amlr/`` and run on whatever
Python the job image has: standard library only (Python >= 3.8), nothing else
from the ``amlr`` package. Usage: see ``USAGE`` below.

Every amlr backend runs the ``--step`` form: the step's contract (script,
arguments, environment, port names, metrics sink) is a JSON file of the
snapshot, so the command line holds nothing a shell could change. A port whose
PATH is missing or arrives unsubstituted (``$AZUREML_DATAREFERENCE_x``,
``${{inputs.x}}``) is taken from the variables Azure ML sets
(``AZUREML_DATAREFERENCE_<name>``, ``AZURE_ML_INPUT_<name>``,
``AZURE_ML_OUTPUT_<name>``); ``${{inputs.NAME}}``/``${{outputs.NAME}}`` in the
arguments become the ports' paths (``${{outputs.outputs}}`` is ``./outputs``).

It runs ``Rscript --no-site-file --no-environ --no-restore SCRIPT ARGS...``
(``$AMLR_RSCRIPT``, else ``Rscript`` on PATH) with no shell and R writing
straight to the inherited stdout/stderr; forwards every catchable terminating
signal to R, which dies with it on Linux (a parent-death signal); forwards the
metrics ``log_metric()`` appends to ``$AMLR_METRICS_FILE``; and exits with R's
exit code (128+N when R dies of, or was told to stop by, signal N). Its own
exit codes: 2 for a bad command line, a missing SCRIPT or an output folder that
cannot be created; 127 when Rscript cannot be found; 126 when it cannot run.

The last line on stderr is always ``Pipeline step execution returned N`` or
``Pipeline step execution was terminated by signal N`` (``--help`` excepted),
also when the step could not start, so log readers have one marker to look for.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

PREFIX = "amlr bootstrapper: "
RSCRIPT_FLAGS = ["--no-site-file", "--no-environ", "--no-restore"]
SINKS = ("auto", "none", "azureml", "mlflow")
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

EXIT_USAGE = 2
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

USAGE = (
    "usage: python bootstrapper.py --step CONTRACT.json [--input NAME PATH]... [--output NAME PATH]...\n"
    "       python bootstrapper.py [--input NAME=PATH]... [--output NAME=PATH]...\n"
    "                              [--metrics-sink {auto,none,azureml,mlflow}]\n"
    "                              [--] SCRIPT [ARGS...]\n"
)

HELP = USAGE + (
    "\n"
    "Run SCRIPT with Rscript as one amlr pipeline step.\n"
    "\n"
    "  --step FILE           read script, args, env and port names from a step contract (JSON)\n"
    "  --param NAME VALUE    a sweep trial's value for ${{search_space.NAME}} in the contract's args\n"
    "  --input NAME=PATH     set AMLR_INPUT_<NAME>=PATH for R (repeatable)\n"
    "  --output NAME=PATH    set AMLR_OUTPUT_<NAME>=PATH and create the folder (repeatable)\n"
    "  --metrics-sink SINK   where log_metric() values go: auto (default), none, azureml, mlflow\n"
    "\n"
    "Everything after SCRIPT (or after --) is passed to R unchanged.\n"
    "Rscript is $AMLR_RSCRIPT if set, else Rscript on PATH.\n"
)


class BootstrapError(Exception):
    """A step that cannot start: reported as one line, never as a traceback."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Options(NamedTuple):
    script: str
    args: List[str]
    inputs: Dict[str, str]
    outputs: Dict[str, str]
    metrics_sink: str = "auto"
    help: bool = False
    step: Optional[str] = None
    env: Dict[str, str] = {}  # noqa: RUF012 - never mutated: a NamedTuple's fields are read-only
    params: Dict[str, str] = {}  # noqa: RUF012 - --param NAME VALUE: a sweep trial's ${{search_space.NAME}}


def warn(message: str) -> None:
    """Write one prefixed line to stderr at once, so it does not split R's lines."""
    try:
        sys.stderr.write(PREFIX + message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ---- Command line ---------------------------------------------------------

def _name_path(option: str, value: str) -> "tuple[str, str]":
    name, sep, path = value.partition("=")
    if not sep:
        raise BootstrapError(f"{option} expects NAME=PATH, got {value!r}", EXIT_USAGE)
    if not NAME_RE.match(name):
        raise BootstrapError(
            f"{option} name {name!r} is not valid: use letters, digits and _, not starting with a digit",
            EXIT_USAGE,
        )
    if not path:
        raise BootstrapError(f"{option} {name}= has an empty path", EXIT_USAGE)
    return name, path


def parse_args(argv: Sequence[str]) -> Options:
    """Parse by hand rather than with argparse.

    argparse would claim option-like words meant for R (``--foo`` after the
    script) and prints multi-line usage on errors; here the first word that
    is not one of our options is SCRIPT and everything after it belongs to R.
    With ``--step`` there is no SCRIPT: the contract names it, and a port is
    ``--input NAME PATH`` (two words, so a binding the service substitutes is
    a word of its own) as well as ``--input NAME=PATH``.
    """
    inputs: Dict[str, str] = {}
    outputs: Dict[str, str] = {}
    sink = "auto"
    step: Optional[str] = None
    head = list(argv[:argv.index("--")]) if "--" in argv else list(argv)
    step_mode = any(w == "--step" or w.startswith("--step=") for w in head)
    params: Dict[str, str] = {}
    i = 0
    n = len(argv)
    while i < n:
        word = argv[i]
        if word == "--":
            i += 1
            break
        if word in ("-h", "--help"):
            return Options("", [], {}, {}, help=True)
        if not word.startswith("-") or word == "-":
            break
        option, eq, value = word.partition("=")
        if option not in ("--input", "--output", "--metrics-sink", "--step", "--param"):
            raise BootstrapError(
                f"unknown option {word!r} before the script (put -- before a script whose name starts with -)",
                EXIT_USAGE,
            )
        if not eq:
            if i + 1 >= n:
                raise BootstrapError(f"{option} needs a value", EXIT_USAGE)
            value = argv[i + 1]
            i += 1
        i += 1
        if option == "--metrics-sink":
            if value not in SINKS:
                raise BootstrapError(
                    f"--metrics-sink must be one of {', '.join(SINKS)}, got {value!r}", EXIT_USAGE
                )
            sink = value
            continue
        if option == "--step":
            step = value
            continue
        if option == "--param":  # --param NAME VALUE (the value may be empty)
            if not NAME_RE.match(value) or i >= n:
                raise BootstrapError("--param expects NAME VALUE", EXIT_USAGE)
            params[value] = argv[i]
            i += 1
            continue
        if step_mode and "=" not in value and NAME_RE.match(value) and i < n:
            # --input NAME PATH: the path is the next word, possibly empty or unexpanded.
            name, path = value, argv[i]
            i += 1
        else:
            name, path = _name_path(option, value)
        target = inputs if option == "--input" else outputs
        if name in target:
            raise BootstrapError(f"{option} {name} is given twice", EXIT_USAGE)
        target[name] = path
    if step is not None:
        if i < n:
            raise BootstrapError(
                f"--step names the script; unexpected {argv[i]!r} after the options (arguments belong in the contract)",
                EXIT_USAGE,
            )
        return Options("", [], inputs, outputs, sink, step=step, params=params)
    if i >= n:
        raise BootstrapError("no R script given", EXIT_USAGE)
    return Options(argv[i], list(argv[i + 1:]), inputs, outputs, sink)


# ---- The step contract (--step) -------------------------------------------

CONTRACT_FORMAT = "amlr-step/1"
OUTPUTS_DIR = "outputs"
_PLACEHOLDER = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
_PORT = re.compile(r"^(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)$")
_PARAM = re.compile(r"^search_space\.([A-Za-z_][A-Za-z0-9_]*)$")
_UNEXPANDED = re.compile(r"^\$(\{\{.*\}\}|AZUREML_DATAREFERENCE_\w+|\{?AZURE_ML_\w+\}?)$")


def _read_contract(path: str, workdir: str) -> Dict[str, object]:
    """The contract JSON; relative paths are tried from the working directory, then the snapshot root."""
    candidates = [os.path.join(workdir, path)]
    if not os.path.isabs(path):
        candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path))
    for candidate in candidates:
        if os.path.isfile(candidate):
            try:
                import json

                with open(candidate, "rb") as fh:
                    data = json.loads(fh.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise BootstrapError(f"cannot read the step contract {candidate}: {exc}", EXIT_USAGE) from None
            if not isinstance(data, dict) or data.get("format") != CONTRACT_FORMAT:
                raise BootstrapError(f"{candidate} is not an amlr step contract ({CONTRACT_FORMAT})", EXIT_USAGE)
            return data
    raise BootstrapError(f"step contract not found: {path} (working directory {workdir})", EXIT_USAGE)


def _port_path(kind: str, name: str, given: Optional[str], env: Mapping[str, str]) -> str:
    """A port's path: the argument if the service substituted it, else the service's variable."""
    if given and not _UNEXPANDED.match(given):
        return given
    upper = "INPUT" if kind == "input" else "OUTPUT"
    for var in ("AZUREML_DATAREFERENCE_" + name, f"AZURE_ML_{upper}_{name}", f"AZURE_ML_{upper}_{name.upper()}"):
        value = env.get(var, "")
        if value:
            return value
    raise BootstrapError(
        f"{kind} {name} has no path: the command gave {given!r} and neither AZUREML_DATAREFERENCE_{name} "
        f"nor AZURE_ML_{upper}_{name} is set",
        EXIT_USAGE,
    )


def resolve_placeholders(text: str, inputs: Mapping[str, str], outputs: Mapping[str, str],
                         params: Optional[Mapping[str, str]] = None) -> str:
    """``${{inputs.x}}``/``${{outputs.x}}`` -> paths, ``${{search_space.x}}`` -> --param values
    (the same grammar as amlr.stepcontract)."""

    def sub(match: "re.Match[str]") -> str:
        param = _PARAM.match(match.group(1))
        if param is not None:
            if params is None or param.group(1) not in params:
                raise BootstrapError(f"argument placeholder {match.group(0)} has no --param value", EXIT_USAGE)
            return params[param.group(1)]
        port = _PORT.match(match.group(1))
        table = inputs if port and port.group(1) == "inputs" else outputs
        if port is None or port.group(2) not in table:
            raise BootstrapError(f"argument placeholder {match.group(0)} names no port of this step", EXIT_USAGE)
        return table[port.group(2)]

    return _PLACEHOLDER.sub(sub, text)


def _strings(value: object, what: str) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BootstrapError(f"the step contract's {what} must be a list of strings", EXIT_USAGE)
    return list(value)


def from_contract(options: Options, env: Mapping[str, str], workdir: Optional[str] = None) -> Options:
    """Turn ``--step`` options into the plain form: script, args, ports, env and sink from the contract.

    ``workdir``: the step's working directory (default: the current one).
    """
    workdir = workdir or os.getcwd()
    data = _read_contract(options.step or "", workdir)
    script = data.get("script")
    if not isinstance(script, str) or not script:
        raise BootstrapError("the step contract names no script", EXIT_USAGE)
    values = data.get("values") or {}
    step_env = data.get("env") or {}
    if not isinstance(values, dict) or not isinstance(step_env, dict):
        raise BootstrapError("the step contract's values and env must be objects", EXIT_USAGE)
    inputs = {
        name: str(values[name]) if name in values else _port_path("input", name, options.inputs.get(name), env)
        for name in _strings(data.get("inputs", []), "inputs")
    }
    outputs = {name: _port_path("output", name, options.outputs.get(name), env)
               for name in _strings(data.get("outputs", []), "outputs")}
    extra = sorted(set(options.inputs) - set(inputs)) + sorted(set(options.outputs) - set(outputs))
    if extra:
        raise BootstrapError(f"the command binds {', '.join(extra)}, which the step contract does not declare",
                             EXIT_USAGE)
    ports = dict(outputs)
    ports.setdefault(OUTPUTS_DIR, os.path.join(workdir, OUTPUTS_DIR))
    try:  # Azure ML creates ./outputs before a job starts; so do we, everywhere.
        os.makedirs(ports[OUTPUTS_DIR], exist_ok=True)
    except OSError:
        pass
    args = [resolve_placeholders(a, inputs, ports, options.params) for a in _strings(data.get("args", []), "args")]
    sink = options.metrics_sink if options.metrics_sink != "auto" else str(data.get("metrics_sink") or "auto")
    if sink not in SINKS:
        raise BootstrapError(f"the step contract's metrics_sink must be one of {', '.join(SINKS)}", EXIT_USAGE)
    return Options(script, args, inputs, outputs, sink, env={str(k): str(v) for k, v in step_env.items()})


# ---- Environment and Rscript ----------------------------------------------

def build_env(
    base: Mapping[str, str],
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    metrics_file: str,
    step_env: Optional[Mapping[str, str]] = None,
) -> Dict[str, str]:
    """The child's environment: the caller's plus the step contract.

    Inherited AMLR_INPUT_*/AMLR_OUTPUT_* are kept, so a backend may also pass
    them as plain environment variables; the command line wins on a clash.
    """
    env = dict(base)
    env.update(step_env or {})
    for name, path in inputs.items():
        env["AMLR_INPUT_" + name] = path
    for name, path in outputs.items():
        env["AMLR_OUTPUT_" + name] = path
    env["AMLR_IN_STEP"] = "1"
    env["AMLR_METRICS_FILE"] = metrics_file
    return env


def find_rscript(env: Mapping[str, str]) -> str:
    """Resolve Rscript before starting it, to say which setting is wrong."""
    configured = env.get("AMLR_RSCRIPT", "")
    if configured:
        if os.path.dirname(configured):
            if not os.path.isfile(configured):
                raise BootstrapError(
                    f"AMLR_RSCRIPT={configured} does not exist; install R or fix AMLR_RSCRIPT", EXIT_NOT_FOUND
                )
            return configured
        found = shutil.which(configured, path=env.get("PATH"))
        if found is None:
            raise BootstrapError(
                f"AMLR_RSCRIPT={configured} is not on PATH; install R or fix AMLR_RSCRIPT", EXIT_NOT_FOUND
            )
        return found
    found = shutil.which("Rscript", path=env.get("PATH"))
    if found is None:
        raise BootstrapError("Rscript not found on PATH; install R or set AMLR_RSCRIPT", EXIT_NOT_FOUND)
    return found


def make_output_dirs(outputs: Mapping[str, str]) -> None:
    """Create output folders up front: R code expects to write into them."""
    for name, path in outputs.items():
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise BootstrapError(
                f"cannot create the folder of output {name} ({path}): {exc.strerror or exc}", EXIT_USAGE
            ) from None


# ---- Running R ------------------------------------------------------------

FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
)
"""Every catchable signal whose default is to end the process: each is passed on to R."""


class _SignalForwarder:
    """Pass terminating signals on to R and keep waiting for it.

    AML (and the local runner) stop a step by signalling the bootstrapper; R
    must get the chance to stop too. A signal that arrives before R exists
    means R is not started at all. The first signal forwarded decides how the
    step is reported (128+N), whatever R makes of it (R turns SIGINT into
    exit status 1, like an error).
    """

    def __init__(self) -> None:
        self.child: Optional[subprocess.Popen] = None
        self.pending: List[int] = []
        self.forwarded: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        child = self.child
        if child is None:
            self.pending.append(signum)
            return
        if self.forwarded is None:
            self.forwarded = signum
        try:
            child.send_signal(signum)
        except (ProcessLookupError, OSError):
            pass

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in FORWARDED_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except (OSError, ValueError):
                pass

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            try:
                signal.signal(signum, handler)  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError):
                pass
        self._previous.clear()

    def attach(self, child: subprocess.Popen) -> None:
        self.child = child
        while self.pending:
            self._handle(self.pending.pop(0), None)

    def outcome(self, returncode: int) -> int:
        """R's code, or -N when R was told to stop by signal N (unless another signal killed it)."""
        if self.forwarded is not None and returncode >= 0:
            return -self.forwarded
        return returncode


_PR_SET_PDEATHSIG = 1


def _parent_death_signal() -> Optional[Callable[[], None]]:
    """A preexec_fn that makes R die with SIGKILL when the bootstrapper dies (Linux only).

    Resolved in the parent, so the child only makes one libc call. Elsewhere
    (or without ctypes) None: R is then only stopped by forwarded signals.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    parent = os.getpid()
    kill_signal = int(signal.SIGKILL)

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, kill_signal, 0, 0, 0)
        if os.getppid() != parent:  # the bootstrapper died before the call took effect
            os._exit(128 + kill_signal)

    return set_pdeathsig


def _flush_std() -> None:
    """Our buffered output must land before R's, which bypasses Python."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def run(rscript: str, script: str, args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run R and return its exit code, or -N when it died of signal N.

    R inherits our stdout/stderr file descriptors: no pipe, no copying thread,
    so its output is as unbuffered and as ordered as R itself makes it.
    """
    argv = [rscript, *RSCRIPT_FLAGS, script, *args]
    forwarder = _SignalForwarder()
    forwarder.install()
    try:
        _flush_std()
        if forwarder.pending:  # told to stop before R started: do not start it
            return -forwarder.pending[0]
        try:
            child = subprocess.Popen(argv, env=dict(env), close_fds=True, preexec_fn=_parent_death_signal())  # noqa: PLW1509 - prctl only
        except FileNotFoundError:
            raise BootstrapError(f"cannot run {rscript}: file not found", EXIT_NOT_FOUND) from None
        except PermissionError:
            raise BootstrapError(f"cannot run {rscript}: permission denied", EXIT_NOT_EXECUTABLE) from None
        except OSError as exc:
            raise BootstrapError(f"cannot run {rscript}: {exc.strerror or exc}", EXIT_NOT_EXECUTABLE) from None
        forwarder.attach(child)
        return forwarder.outcome(child.wait())
    finally:
        forwarder.restore()


def final_line(returncode: int) -> "tuple[str, int]":
    """The marker line and our exit code, following the shell's 128+N rule."""
    if returncode < 0:
        signum = -returncode
        return f"Pipeline step execution was terminated by signal {signum}", 128 + signum
    return f"Pipeline step execution returned {returncode}", returncode


def _metrics_file(env: Dict[str, str]) -> "tuple[str, Optional[str]]":
    """Use the caller's metrics file, or a private one that is removed afterwards."""
    path = env.get("AMLR_METRICS_FILE", "")
    if path:
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            warn(f"cannot create the folder of AMLR_METRICS_FILE ({parent}): {exc.strerror or exc}")
        return path, None
    import tempfile

    tmpdir = tempfile.mkdtemp(prefix="amlr-metrics-")
    return os.path.join(tmpdir, "metrics.jsonl"), tmpdir


def _start_metrics(choice: str, path: str) -> Any:
    """Forward metrics with the companion ``stepmetrics.py``, imported only when they go somewhere."""
    if choice == "none":
        return None
    try:
        if __package__:
            from . import stepmetrics
        else:  # run as ``python _amlr/bootstrapper.py``: _amlr/ is sys.path[0]
            import stepmetrics  # type: ignore[import-not-found,no-redef]
    except ImportError as exc:
        warn(f"metrics are not forwarded: {exc} (stepmetrics.py belongs next to bootstrapper.py)")
        return None
    return stepmetrics.start(choice, path, warn)


def resolve_step(options: Options, environ: Mapping[str, str],
                 workdir: Optional[str] = None) -> "tuple[Options, str]":
    """Everything before R starts: the contract read, the script found, Rscript found, outputs created.

    Shared with amlr's local runner, which starts Rscript itself (one process
    fewer per step) and keeps this file's promises: same checks, same
    environment (:func:`build_env`), same exit codes and final line.
    """
    workdir = workdir or os.getcwd()
    if options.step is not None:
        options = from_contract(options, environ, workdir)
    script = options.script if os.path.isabs(options.script) else os.path.join(workdir, options.script)
    if not os.path.isfile(script):
        where = "" if os.path.isabs(options.script) else f" (working directory {workdir})"
        raise BootstrapError(f"R script not found: {options.script}{where}", EXIT_USAGE)
    rscript = find_rscript(environ)
    make_output_dirs(options.outputs)
    return options, rscript


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one step; always end stderr with the marker line (except --help)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    returncode = 0
    tmpdir: Optional[str] = None
    try:
        options = parse_args(argv)
        if options.help:
            sys.stdout.write(HELP)
            sys.stdout.flush()
            return 0
        options, rscript = resolve_step(options, os.environ)
        metrics_path, tmpdir = _metrics_file(dict(os.environ))
        env = build_env(os.environ, options.inputs, options.outputs, metrics_path, options.env)
        metrics = _start_metrics(options.metrics_sink, metrics_path)
        try:
            returncode = run(rscript, options.script, options.args, env)
        finally:
            if metrics is not None:
                metrics.stop()
    except BootstrapError as exc:
        warn(str(exc))
        returncode = exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C before R started: report it like R's own death
        returncode = -int(signal.SIGINT)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    line, code = final_line(returncode)
    _flush_std()
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
