"""The bridge: one JSON request in, one JSON response out.

Both transports call :func:`handle_json` -- ``python -m amlr call`` with the
request on stdin (system2), and reticulate calling it in-process -- so
behaviour and error classes are identical whichever R uses.

Request:  ``{"method": "status", "params": {...}}``
Response: ``{"result": ...}`` or ``{"error": {"class": ..., "message": ...}}``
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any, Callable, Generator, Iterator, Optional

from . import __version__
from .backends import BACKENDS, get_backend
from .errors import BUG_REPORT, AmlrError, BadRequest
from .registry import TERMINAL, Registry, default_home, new_run_id
from .limits import check_arg_sizes
from .spec import validate

Handler = Callable[[dict[str, Any]], Any]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = fn
        return fn

    return register


def registry(params: dict[str, Any]) -> Registry:
    return Registry(params.get("home") or default_home())


def _run_and_backend(params: dict[str, Any]) -> tuple[Registry, dict[str, Any], Any]:
    reg = registry(params)
    run = reg.get_run(reg.resolve(params.get("run", "latest")))
    backend = get_backend(run["backend"])
    run = backend.refresh(reg, run)
    return reg, run, backend


@method("ping")
def ping(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "amlr": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "home": registry(params).home,
    }


@method("validate")
def validate_spec(params: dict[str, Any]) -> dict[str, Any]:
    pipeline = validate(params.get("spec"), check_paths=bool(params.get("check_paths", True)),
                        pending=bool(params.get("pending", False)))
    check_arg_sizes(pipeline)
    return pipeline.to_json()


@method("submit")
def submit(params: dict[str, Any]) -> dict[str, Any]:
    pipeline = validate(params.get("spec"))
    check_arg_sizes(pipeline)
    backend_name = params.get("backend") or "local"
    experiment = params.get("experiment") or pipeline.name
    from .spec import PIPELINE_NAME_RE

    if not PIPELINE_NAME_RE.fullmatch(experiment):
        raise BadRequest(
            f"Experiment name `{experiment}` is not allowed: use letters, digits, `_`, `-` and `.`, "
            "starting with a letter or digit."
        )
    from .backends import check_options

    options = params.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("Backend options (the `...` of submit_r_pipeline()) must be named, e.g. max_parallel = 2.")
    backend = get_backend(backend_name)
    options = check_options(backend_name, options) if backend_name in BACKENDS else options  # before anything is written
    reg = registry(params)
    reg.ensure()  # a damaged registry or unusable home fails here, before a run folder exists
    run_id = new_run_id()
    return backend.submit(reg, pipeline, experiment, run_id, options)


@method("status")
def status(params: dict[str, Any]) -> dict[str, Any]:
    _, run, backend = _run_and_backend(params)
    note = getattr(backend, "folder_note", None)
    return note(run) if note is not None else run


@method("steps")
def steps(params: dict[str, Any]) -> list[dict[str, Any]]:
    reg, run, backend = _run_and_backend(params)
    return backend.steps(reg, run)


@method("logs")
def logs(params: dict[str, Any]) -> dict[str, list[str]]:
    """Each step's log lines; ``n`` lines at most (the last ones with ``tail``), read no further than needed."""
    n = params.get("n")
    n = n[0] if isinstance(n, list) and len(n) == 1 else n
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0 or n != int(n)):
        raise BadRequest(f"`n` must be a whole number of lines (0 or more), not {n!r}.", field="n")
    n = None if n is None else int(n)
    tail = bool(params.get("tail"))
    reg, run, backend = _run_and_backend(params)
    if run["backend"] == "local":
        return backend.logs(reg, run, params.get("step"), n=n, tail=tail)
    out = backend.logs(reg, run, params.get("step"))
    if n is None:
        return out
    return {k: (v[-n:] if n else []) if tail else v[:n] for k, v in out.items()}


@method("follow")
def follow(params: dict[str, Any]) -> dict[str, Any]:
    """What a waiting R session needs per poll: new log lines, step states, run state."""
    reg, run, backend = _run_and_backend(params)
    chunk = backend.follow(reg, run, params.get("cursor") or {})
    chunk["run"] = run
    chunk["steps"] = backend.steps(reg, run)
    return chunk


@method("trials")
def trials(params: dict[str, Any]) -> dict[str, Any]:
    """One row per trial/item of a run's r_sweep()/r_map() step."""
    from .sweep import trials_table

    reg, run, _ = _run_and_backend(params)
    return trials_table(reg, run, params.get("step"))


@method("cancel")
def cancel(params: dict[str, Any]) -> dict[str, Any]:
    reg, run, backend = _run_and_backend(params)
    return backend.cancel(reg, run)


def _limit(value: Any) -> int:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0 \
            or (isinstance(value, float) and value != int(value) and value != float("inf")):
        raise BadRequest(f"`limit` must be a whole number of runs (0 or Inf for all), not {value!r}.", field="limit")
    return 0 if value == float("inf") else int(value)


# A run folder younger than this may belong to a submit that has not recorded its row yet.
UNRECORDED_GRACE_SECONDS = 60.0


def unrecorded_runs(reg: Registry) -> list[str]:
    """Run folders the registry does not know (older than a submit's few moments)."""
    folders = reg.run_folders()
    if not folders:
        return []
    with reg.read() as con:
        known = {r["id"] for r in con.execute("SELECT id FROM runs")}
    now = time.time()
    out = []
    for run_id in folders:
        if run_id in known:
            continue
        try:
            age = now - os.path.getmtime(reg.run_dir(run_id))
        except OSError:
            continue
        if age > UNRECORDED_GRACE_SECONDS:
            out.append(run_id)
    return out


@method("list")
def list_runs(params: dict[str, Any]) -> Any:
    reg = registry(params)
    experiment = params.get("experiment")
    if isinstance(experiment, list) and len(experiment) == 1:
        experiment = experiment[0]
    if experiment is not None and not isinstance(experiment, str):
        raise BadRequest("`experiment` must be an experiment name (a string) or NULL.", field="experiment")
    runs = reg.list_runs(experiment, _limit(params.get("limit")))
    out = []
    for run in runs:
        try:
            run = get_backend(run["backend"]).refresh(reg, run) if run["backend"] == "local" else run
        except AmlrError:
            pass
        out.append(run)
    if not params.get("with_warnings"):
        return out
    warnings = []
    missing = unrecorded_runs(reg)
    if missing:
        warnings.append(
            f"{len(missing)} run folder(s) under {os.path.join(reg.home, 'runs')} are not in the registry "
            f"(first: {missing[0]}); run_registry_rebuild() adds them back."
        )
    return {"runs": out, "warnings": warnings}


@method("registry_rebuild")
def registry_rebuild(params: dict[str, Any]) -> dict[str, Any]:
    return registry(params).rebuild()


@method("prune")
def prune_runs(params: dict[str, Any]) -> dict[str, Any]:
    from .prune import prune

    def number(key: str) -> Any:
        value = params.get(key)
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    keep = number("keep")
    if isinstance(keep, float) and keep.is_integer():
        keep = int(keep)
    return prune(registry(params), keep=keep, older_than_days=number("older_than"),
                 experiment=params.get("experiment"), dry_run=bool(params.get("dry_run")))


@method("metrics")
def metrics(params: dict[str, Any]) -> list[dict[str, Any]]:
    reg, run, backend = _run_and_backend(params)
    return backend.metrics(reg, run)


@method("publish")
def publish(params: dict[str, Any]) -> dict[str, Any]:
    """R's ``publish_r_pipeline()``: build on the workspace and publish, without running."""
    backend_name = params.get("backend") or "azureml"
    backend = get_backend(backend_name)
    if not hasattr(backend, "publish"):
        raise BadRequest(f"Publishing is not available on the `{backend_name}` backend; use backend = \"azureml\".")
    pipeline = validate(params.get("spec"))
    return backend.publish(registry(params), pipeline, params.get("name") or None, params.get("options") or {})


@method("environment_resolve")
def environment_resolve(params: dict[str, Any]) -> dict[str, Any]:
    from .environment import resolve_environment

    return resolve_environment(params.get("environment")).to_json()


@method("environment_context")
def environment_context(params: dict[str, Any]) -> dict[str, Any]:
    from .environment import InvalidEnvironment, _optional_str, resolve_environment, write_build_context

    env = resolve_environment(params.get("environment"))
    dest = _optional_str(params.get("dest"), "dest")
    if dest is None:
        raise InvalidEnvironment("`dest` (the folder to write the build context to) is missing.", field="dest")
    path = write_build_context(env, dest)
    return {"path": path, **env.to_json()}


@method("environment_source_files")
def environment_source_files(params: dict[str, Any]) -> dict[str, list[str]]:
    """The files a snapshot of each folder would hold, so R scans exactly what the job gets."""
    from .snapshot import list_files

    dirs = params.get("source_dirs") or []
    if isinstance(dirs, str):
        dirs = [dirs]
    return {d: list_files(d) for d in dirs}


@method("download")
def download(params: dict[str, Any]) -> list[str]:
    reg, run, backend = _run_and_backend(params)
    dest = params.get("dest") or "."
    return backend.download(reg, run, params.get("step"), params.get("output"), dest, bool(params.get("overwrite")))


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AmlrError):
        return {"error": exc.to_json()}
    # An unexpected failure: say where to look, keep the traceback out of R's face.
    import traceback  # only here: its imports (linecache, tokenize, textwrap) cost every bridge start

    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return {
        "error": {
            "class": "python",
            "message": f"Unexpected Python error: {detail}. {BUG_REPORT}",
            "traceback": traceback.format_exc(),
        }
    }


def handle(request: Any) -> dict[str, Any]:
    try:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise BadRequest('A request is a JSON object {"method": ..., "params": {...}}.')
        fn = find_method(request["method"])
        if fn is None:
            known = ", ".join(sorted(set(METHODS) | set(LAZY_METHODS)))
            raise BadRequest(f"Unknown method `{request['method']}`; known: {known}.")
        params = request.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("`params` must be a JSON object.")
        return {"result": fn(params)}
    except Exception as exc:  # every failure becomes a response, never a traceback on stderr
        return _error(exc)


def handle_json(text: str) -> str:
    try:
        request = json.loads(text)
    except ValueError as exc:
        return json.dumps({"error": {"class": "bad_request", "message": f"The request is not valid JSON: {exc}"}})
    return json.dumps(handle(request), default=str)


# -- streams -------------------------------------------------------------------
#
# A waiting R session needs events as they happen (log lines, step states),
# not a reply at the end. A stream is a generator of event dicts that
# *returns* its result; :func:`stream` turns it into the same protocol, one
# JSON object per line: events, then ``{"result": ...}`` or ``{"error": ...}``.
# Both transports read the same lines: system2 through a pipe from
# ``python -m amlr stream``, reticulate by iterating :func:`stream_json`.

Stream = Callable[[dict[str, Any]], Generator[dict[str, Any], None, Any]]
STREAMS: dict[str, Stream] = {}
HEARTBEAT_SECONDS = 0.25  # how often a silent stream says it is alive, so R can handle an interrupt
EMBEDDED_WAIT_SLICE = 0.05  # an embedded follower blocks on the runner this long at most before R gets control back


def stream_method(name: str) -> Callable[[Stream], Stream]:
    def register(fn: Stream) -> Stream:
        STREAMS[name] = fn
        return fn

    return register


LOG_CHUNK_BYTES = 256 * 1024  # the most log text one event carries; a longer line spans several events


def _log_events(backend: Any, reg: Registry, run: dict[str, Any], cursor: dict[str, Any],
                steps: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """New log text since ``cursor``, one event per step and chunk (``{"event": "log", "step", "text"}``)."""
    chunks_fn = getattr(backend, "follow_chunks", None)
    if chunks_fn is not None:
        chunks, cursor = chunks_fn(reg, run, cursor, steps, LOG_CHUNK_BYTES)
        return [{"event": "log", "step": c["step"], "text": c["text"]} for c in chunks], cursor
    # Backends that follow by lines (Azure ML): group each step's new lines into one chunk.
    chunk = backend.follow(reg, run, cursor)
    by_step: dict[str, list[str]] = {}
    for line in chunk.get("lines") or []:
        by_step.setdefault(line["step"], []).append(line["line"])
    events = [{"event": "log", "step": name, "text": "\n".join(lines) + "\n"} for name, lines in by_step.items()]
    return events, chunk.get("cursor") or cursor


def follow_events(reg: Registry, run_id: str, *, timeout: Optional[float] = None,
                  cursor: Optional[dict[str, Any]] = None, caller_sleeps: bool = False,
                  logs: bool = True) -> Generator[dict[str, Any], None, dict[str, Any]]:
    """Log text and step changes of a run until it ends (or ``timeout`` seconds pass).

    Events carry only what changed: ``steps`` holds the steps whose state
    changed since the last event (all of them the first time), ``log`` a chunk
    of one step's log (complete lines, at most LOG_CHUNK_BYTES). ``logs =
    False`` (R's ``quiet``) reads no log at all. Between polls the follower
    sleeps -- on the local runner's pidfd where there is one, so the end of
    the run wakes it at once -- or, with ``caller_sleeps``, yields ``{"event":
    "idle", "seconds": s}`` and lets the caller sleep: an embedded Python
    (reticulate) then returns to R, where an interrupt is R's to handle. With
    both, it waits on the pidfd in slices of EMBEDDED_WAIT_SLICE seconds and
    returns to R between them (``seconds`` 0).
    """
    run = reg.get_run(run_id)
    backend = get_backend(run["backend"])
    poll = float(getattr(backend, "POLL_SECONDS", 2.0))
    cursor = dict(cursor or {})
    deadline = None if timeout is None or timeout == float("inf") else time.monotonic() + float(timeout)
    known: dict[str, tuple] = {}
    last_event = time.monotonic()
    waiter = getattr(backend, "end_waiter", lambda reg, run: None)(reg, run)
    try:
        while True:
            # Status first: once it reads terminal, the logs read next are complete.
            run = backend.refresh(reg, reg.get_run(run_id))
            steps = backend.steps(reg, run)
            first = not known
            changed = [s for s in steps
                       if known.get(s["name"]) != (s["status"], s.get("reused"), s.get("exit_code"))]
            for s in changed:
                known[s["name"]] = (s["status"], s.get("reused"), s.get("exit_code"))
            news = {"event": "steps", "steps": changed, "n_steps": len(steps), "run": run}
            if first:  # the reader learns the steps before any log line
                last_event = time.monotonic()
                yield news
            if logs:
                events, cursor = _log_events(backend, reg, run, cursor, steps)
                for event in events:
                    last_event = time.monotonic()
                    yield event
            if changed and not first:  # after the logs: a step's end follows its last line
                last_event = time.monotonic()
                yield news
            if run["status"] in TERMINAL:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            wake = time.monotonic() + poll
            while True:
                now = time.monotonic()
                if now - last_event >= HEARTBEAT_SECONDS:
                    last_event = now
                    yield {"event": "tick"}
                left = min(wake, last_event + HEARTBEAT_SECONDS) - now
                if deadline is not None:
                    left = min(left, deadline - now)
                if wake - now <= 0 or (deadline is not None and deadline - now <= 0):
                    break
                if caller_sleeps and waiter is not None:
                    # Block here in short slices (the end of the run wakes us at once), then
                    # hand control back to R, where a pending interrupt is handled.
                    if waiter(min(max(0.0, left), EMBEDDED_WAIT_SLICE)):
                        break
                    yield {"event": "idle", "seconds": 0}
                elif caller_sleeps:
                    yield {"event": "idle", "seconds": round(max(0.0, left), 3)}
                elif waiter is not None:
                    if waiter(max(0.0, left)):
                        break  # the runner ended: read the final state now
                else:
                    time.sleep(max(0.0, left))
    finally:
        close = getattr(waiter, "close", None)
        if close is not None:
            close()
        if caller_sleeps:  # an embedded Python: a spare runner for the next run, now that this one is done
            from . import procs

            procs.SPARE_RUNNER.start()
    run["cursor"] = cursor
    return run


@stream_method("submit")
def submit_stream(params: dict[str, Any]) -> Generator[dict[str, Any], None, dict[str, Any]]:
    run = submit(params)
    yield {"event": "submitted", "run": run}
    if not params.get("wait"):
        return run
    return (yield from follow_events(registry(params), run["id"], timeout=params.get("timeout"),
                                     caller_sleeps=bool(params.get("caller_sleeps")),
                                     logs=not params.get("quiet")))


@stream_method("wait")
def wait_stream(params: dict[str, Any]) -> Generator[dict[str, Any], None, dict[str, Any]]:
    reg = registry(params)
    run_id = reg.resolve(params.get("run", "latest"))
    return (yield from follow_events(reg, run_id, timeout=params.get("timeout"), cursor=params.get("cursor"),
                                     caller_sleeps=bool(params.get("caller_sleeps")),
                                     logs=not params.get("quiet")))


def stream(request: Any) -> Generator[dict[str, Any], None, None]:
    """Events, then one final ``{"result": ...}`` or ``{"error": ...}``; never raises."""
    try:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise BadRequest('A request is a JSON object {"method": ..., "params": {...}}.')
        fn = STREAMS.get(request["method"])
        if fn is None:
            # Every method can be streamed: a plain one is a stream of no events.
            yield handle(request)
            return
        params = request.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("`params` must be a JSON object.")
        result = yield from fn(params)
        yield {"result": result}
    except KeyboardInterrupt:
        raise  # an embedded Python's interrupt belongs to R (reticulate turns it back into one)
    except Exception as exc:
        yield _error(exc)


def stream_json(text: str) -> Iterator[str]:
    try:
        request = json.loads(text)
    except ValueError as exc:
        yield json.dumps({"error": {"class": "bad_request", "message": f"The request is not valid JSON: {exc}"}})
        return
    for event in stream(request):
        yield json.dumps(event, default=str)


SYNCED_PREFIXES = ("AMLR_", "AZURE_", "MLFLOW_")


def sync_environ(values: dict[str, str]) -> None:
    """Mirror R's AMLR_/AZURE_/MLFLOW_ variables into an embedded Python (reticulate)."""
    for key in [k for k in os.environ if k.startswith(SYNCED_PREFIXES) and k not in values]:
        del os.environ[key]
    os.environ.update({str(k): str(v) for k, v in values.items()})


def embedded(spare_runner: bool = True) -> None:
    """Called once by R's reticulate bridge: this Python lives inside an R session.

    Local runs then start their runner from a warm spare (``procs.SpareRunner``)
    instead of a new interpreter, unless ``spare_runner`` is false
    (``options(amlr.spare_runner = FALSE)``).
    """
    from . import procs

    procs.USE_SPARE_RUNNER = bool(spare_runner) and os.name == "posix"
    procs.SPARE_RUNNER.start()


# Methods that live with the features that need them, imported on first use so
# that every bridge call does not pay for modules it does not touch. The bridge
# registers them here (method name -> "module:function"); the feature modules
# know nothing of the bridge.
LAZY_METHODS = {
    "export": "amlr.export:export_method",
    "doctor": "amlr.doctor:doctor",
    "workspace_resolve": "amlr.workspace:workspace_resolve",
    **{name: f"amlr.assets:{name}" for name in ("data_register", "data_get", "data_list", "data_download",
                                               "model_register", "model_get", "model_list", "store_rebuild")},
    **{name: f"amlr.endpoints:{name}" for name in ("endpoint_deploy", "endpoint_export", "endpoint_get",
                                                  "endpoint_list", "endpoint_logs", "endpoint_invoke",
                                                  "endpoint_delete")},
}


def find_method(name: str) -> Optional[Handler]:
    if name not in METHODS and name in LAZY_METHODS:
        module, function = LAZY_METHODS[name].split(":")
        METHODS[name] = getattr(importlib.import_module(module), function)
    return METHODS.get(name)
