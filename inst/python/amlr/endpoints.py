"""Serving an R model over HTTP: local servers and Azure ML managed online endpoints.

``deploy_r_model()`` runs amlr's plumber app (``inst/serve/serve.R``) with the
user's score file (``init(model_dir)``, ``score(model, data)``):

* **local**: an ``Rscript`` process on 127.0.0.1, started detached with
  :func:`amlr.procs.spawn_detached` so it outlives the R session that asked.
  Each endpoint is one folder, ``AMLR_HOME/endpoints/<name>/``, holding
  ``endpoint.json`` (the record: port, pid and its identity, model), the copy of
  the score file the server runs, and ``server.log``. A JSON file per endpoint
  rather than a registry table: an endpoint has no steps or metrics to join,
  and deleting it is removing its folder. Status is never trusted from the
  record: the pid's identity and a ``GET /live`` decide.
* **azureml_v2**: a ``ManagedOnlineEndpoint`` and a ``ManagedOnlineDeployment``
  whose environment is amlr's R image plus plumber and the app, with Azure
  ML's ``inference_config`` routes. The deployment is named after a content
  hash of everything it runs, so a change makes a new deployment, and traffic
  moves to it once it is ready. ``export_endpoint()`` writes the same objects
  as ``endpoint.yml`` + ``deployment.yml`` + the Docker build context.

Stdlib only for the local path (``urllib``, ``socket``); azure-ai-ml is imported
when an Azure object is built.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from . import procs
from .errors import (AmlrError, BadInput, BadRequest, EndpointDown, EndpointError, EndpointExists, EndpointFailed,
                     EndpointNotFound, EndpointTimeout, InvalidEndpointName, ModelNotFound, PortInUse, ScoreFailed, ScoreFileError)

SERVE_PORT = 8000
ROUTES = {"liveness_route": "/live", "readiness_route": "/ready", "scoring_route": "/score"}
MODEL_MOUNT_PATH = "/var/azureml-app/amlr-model"
APP_DIR_IN_IMAGE = "/opt/amlr-serve"
RECORD = "endpoint.json"
# Azure ML's rule for online endpoint names, applied to local ones too so a
# name that works locally also works on Azure.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
DEPLOYMENT_PREFIX = "amlr-"


# -- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model folder, or a registered model (``register_model()``): local path and/or Azure id."""

    path: Optional[str]
    azure_id: Optional[str] = None
    name: Optional[str] = None
    version: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "azure_id": self.azure_id, "name": self.name, "version": self.version}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidEndpointName(
            f"Endpoint name {name!r} is not allowed: use 3 to 32 letters, digits and `-`, starting with a letter "
            "and ending with a letter or digit (Azure ML's rule), e.g. \"cars-model\".", field="name")
    return name


def model_ref(value: Any, *, backend: str) -> ModelRef:
    """What R sends for ``model``: ``{"path": ...}`` or a registered model's fields."""
    if not isinstance(value, dict):
        raise BadRequest("`model` must be a folder path or a registered model (register_model()).", field="model")
    path = value.get("path")
    azure_id = value.get("azure_id")
    ref = ModelRef(
        path=os.path.abspath(os.path.expanduser(path)) if isinstance(path, str) and path else None,
        azure_id=azure_id if isinstance(azure_id, str) and azure_id else None,
        name=value.get("name") if isinstance(value.get("name"), str) else None,
        version=str(value["version"]) if value.get("version") is not None else None,
    )
    if backend == "azureml_v2" and ref.azure_id:
        return ref
    if ref.path is None:
        what = "an Azure ML id (`azure_id`) or a local folder" if backend == "azureml_v2" else "a local folder (`path`)"
        raise ModelNotFound(f"The model has no {what}; pass the model's folder, or a model registered with "
                            "register_model().", field="model")
    if not os.path.isdir(ref.path):
        hint = " It is a file: pass the folder that holds it." if os.path.isfile(ref.path) else ""
        raise ModelNotFound(f"The model folder `{ref.path}` does not exist.{hint} Pass the folder that holds the "
                            "model files (init(model_dir) receives it).", field="model")
    return ref


def check_score_file(path: Any) -> str:
    """Existence only: R parses the file and checks init() and score() before asking."""
    if not isinstance(path, str) or not path:
        raise ScoreFileError("`score` must be the path of an R file defining init(model_dir) and score(model, data).",
                             field="score")
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ScoreFileError(f"The score file `{full}` does not exist; pass an R file defining init(model_dir) and "
                             "score(model, data).", field="score")
    return full


# -- records ------------------------------------------------------------------------------------


def endpoints_dir(home: str) -> str:
    return os.path.join(home, "endpoints")


def endpoint_dir(home: str, name: str) -> str:
    return os.path.join(endpoints_dir(home), name)


def read_record(home: str, name: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise EndpointNotFound(f"There is no endpoint {name!r}; endpoint_list() shows the endpoints.")
    path = os.path.join(endpoint_dir(home, name), RECORD)
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        raise EndpointNotFound(
            f"There is no endpoint `{name}` (deleted, or never deployed here); endpoint_list() shows the endpoints, "
            "deploy_r_model() creates one.") from None
    except ValueError as exc:
        raise EndpointError(f"The record of endpoint `{name}` ({path}) is damaged ({exc}); delete it with "
                            f"endpoint_delete(\"{name}\") and deploy again.") from None
    if not isinstance(record, dict):
        raise EndpointError(f"The record of endpoint `{name}` ({path}) is damaged; delete it with "
                            f"endpoint_delete(\"{name}\") and deploy again.")
    return record


def write_record(home: str, record: dict[str, Any]) -> None:
    folder = endpoint_dir(home, record["name"])
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{RECORD}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(folder, RECORD))


def list_names(home: str) -> list[str]:
    folder = endpoints_dir(home)
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n, RECORD)))


def log_tail(path: Optional[str], n: int = 15) -> list[str]:
    if not path or not os.path.exists(path):
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return text.splitlines()[-n:]


# -- local servers ------------------------------------------------------------------------------


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on ``port``: as httpuv does, connections in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port(port: Any) -> Optional[int]:
    if port is None:
        return None
    if isinstance(port, float) and port.is_integer():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
        raise BadRequest(f"`port` must be a whole number from 1024 to 65535 (or NULL for a free one), not {port!r}.",
                         field="port")
    if not port_free(port):
        raise PortInUse(f"Port {port} on 127.0.0.1 is already in use; pass another `port`, or port = NULL to let "
                        "amlr pick a free one.", field="port")
    return port


def http_json(url: str, *, body: Optional[bytes] = None, timeout: float = 5.0,
              headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; raises OSError when nobody answers."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _alive(record: dict[str, Any]) -> bool:
    return procs.same_process(record.get("pid"), record.get("identity"))


def _reap(pid: Optional[int]) -> None:
    """Collect a finished server we started in this process (reticulate), so it leaves no zombie."""
    if not pid or os.name != "posix":
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _stop(record: dict[str, Any], grace: float = 5.0) -> None:
    """SIGTERM the server, then whatever else is left in its process group (what score() started)."""
    pid = record.get("pid")
    if not pid or not _alive(record):
        _reap(pid)
        return
    procs.signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    # Reaping as we wait: if this process started the server (reticulate), its zombie
    # would otherwise keep the group "alive" for the whole grace period.
    while time.monotonic() < deadline:
        _reap(pid)
        if not procs.pid_alive(pid):
            break
        time.sleep(0.05)
    procs.terminate_group(pid, grace=1.0)  # the server leads its own session: pgid == pid
    _reap(pid)


def wait_ready(record: dict[str, Any], proc: Any, timeout: float) -> None:
    """Poll ``GET /ready`` until 200; fail fast if the server process ends."""
    deadline = time.monotonic() + timeout
    url = record["url"]
    while True:
        if proc.poll() is not None:
            raise EndpointFailed(_failure_message(record, f"the server process ended (exit status {proc.returncode})"),
                                 data={"log": log_tail(record["log"])})
        try:
            status, _body = http_json(url + "/ready", timeout=2.0)
            if status == 200:
                _live_status, live = http_json(url + "/live", timeout=2.0)
                if isinstance(live, dict) and live.get("pid") not in (None, record["pid"]):
                    raise PortInUse(f"Another server answers on port {record['port']}; deploy again with another "
                                    "`port` or port = NULL.", field="port")
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise EndpointFailed(_failure_message(record, f"it was not ready after {timeout:g} seconds (a slow "
                                                          "init()? pass a larger `timeout`)"),
                                 data={"log": log_tail(record["log"])})
        time.sleep(0.1)


def _failure_message(record: dict[str, Any], why: str) -> str:
    tail = log_tail(record["log"])
    text = f"Endpoint `{record['name']}` did not start: {why}."
    if tail:
        text += " Last lines of its log:\n" + "\n".join("  " + line for line in tail)
    if any("address already in use" in line.lower() or "failed to create server" in line.lower() for line in tail):
        text += f"\nPort {record['port']} is taken: pass another `port`, or port = NULL."
    else:
        text += "\nFix init()/score() in the score file (try them in R first), then deploy again."
    return text


@contextlib.contextmanager
def name_lock(home: str, name: str) -> Iterator[None]:
    """Two deploys of one name at once: the second waits, then finds the first's live server."""
    os.makedirs(endpoints_dir(home), exist_ok=True)
    path = os.path.join(endpoints_dir(home), f".{name}.lock")
    with open(path, "a", encoding="utf-8") as fh:
        if os.name == "posix":
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.name == "posix":
                fcntl.flock(fh, fcntl.LOCK_UN)


SECRET_SUFFIXES = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def server_environ() -> dict[str, str]:
    """This process's environment minus amlr's and Azure's secrets: a server never needs them."""
    return {k: v for k, v in os.environ.items()
            if not (k.upper().startswith(("AZURE_", "AMLR_")) and k.upper().endswith(SECRET_SUFFIXES))}


def deploy_local(home: str, name: str, model: ModelRef, score_file: str, *, rscript: str, serve_script: str,
                 r_libs: list[str], port: Optional[int], timeout: float) -> dict[str, Any]:
    with name_lock(home, name):
        return _deploy_local(home, name, model, score_file, rscript=rscript, serve_script=serve_script,
                             r_libs=r_libs, port=port, timeout=timeout)


def _deploy_local(home: str, name: str, model: ModelRef, score_file: str, *, rscript: str, serve_script: str,
                  r_libs: list[str], port: Optional[int], timeout: float) -> dict[str, Any]:
    folder = endpoint_dir(home, name)
    if os.path.exists(os.path.join(folder, RECORD)):
        try:
            old = read_record(home, name)
        except EndpointError:
            old = {}
        if old.get("backend") == "local" and _alive(old):
            raise EndpointExists(f"Endpoint `{name}` is already serving at {old.get('url')}; delete it first "
                                 f"(endpoint_delete(\"{name}\")) or choose another name.", field="name")
        if old.get("backend") not in (None, "local"):
            raise EndpointExists(f"Endpoint `{name}` is recorded as an {old.get('backend')} endpoint; delete it "
                                 f"first (endpoint_delete(\"{name}\")) or choose another name.", field="name")
    if os.path.isdir(folder):
        shutil.rmtree(folder)  # a dead server's leftovers: its record said so
    chosen = port if port is not None else free_port()
    os.makedirs(folder)
    app_score = os.path.join(folder, "score.R")
    shutil.copyfile(score_file, app_score)  # the server runs this copy: later edits need a new deploy
    log_path = os.path.join(folder, "server.log")
    env = server_environ()
    env.update({
        "AMLR_SERVE_SCORE": app_score,
        "AMLR_MODEL_DIR": model.path or "",
        "AMLR_SERVE_HOST": "127.0.0.1",
        "AMLR_SERVE_PORT": str(chosen),
        "AMLR_SERVE_NAME": name,
        "R_LIBS": os.pathsep.join(r_libs),
    })
    for var in ("R_LIBS_USER", "R_LIBS_SITE"):  # R_LIBS above is the R session's full library path
        env.pop(var, None)
    proc = procs.spawn_detached([rscript, "--no-save", "--no-restore", serve_script], cwd=folder, log_path=log_path,
                                env=env)
    record = {
        "name": name,
        "backend": "local",
        "url": f"http://127.0.0.1:{chosen}",
        "port": chosen,
        "pid": proc.pid,
        "identity": procs.process_identity(proc.pid),
        "model": model.to_json(),
        "score_file": score_file,
        "app_dir": folder,
        "log": log_path,
        "created": time.time(),
    }
    write_record(home, record)  # at once, so a crash of this caller still leaves the server findable
    try:
        wait_ready(record, proc, timeout)
    except BaseException:
        _stop(record)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # The server lives on after this process: no warning about an unreaped child.
    proc.returncode = 0
    return with_status(home, record)


def local_status(record: dict[str, Any]) -> tuple[str, Optional[str]]:
    if not _alive(record):
        _reap(record.get("pid"))
        return "Dead", f"the server process (pid {record.get('pid')}) has ended; see endpoint_logs(), then deploy again"
    try:
        status, _ = http_json(record["url"] + "/ready", timeout=3.0)
    except OSError as exc:
        return "Unresponsive", f"the server process runs but does not answer ({exc})"
    if status == 200:
        return "Healthy", None
    return "Starting", "init() is still loading the model"


AZURE_STATES = {"Succeeded": "Healthy", "Creating": "Starting", "Updating": "Starting", "Provisioning": "Starting",
                "Failed": "Failed", "Canceled": "Failed", "Deleting": "Deleting"}


def azure_status(record: dict[str, Any]) -> tuple[str, Optional[str]]:
    """The endpoint's provisioning state on Azure ML; "Unknown" (with why) when Azure cannot be asked."""
    try:
        _, client = _workspace_client({"workspace": record.get("workspace")}, stored=True)
        from .backends.azureml_v2 import azure_call

        with azure_call(f"reading online endpoint `{record['name']}`"):
            remote = client.online_endpoints.get(record["name"])
    except AmlrError as exc:
        return "Unknown", exc.message
    state = str(getattr(remote, "provisioning_state", "") or "")
    traffic = getattr(remote, "traffic", None) or {}
    reason = None if state == "Succeeded" else f"Azure ML says {state or 'nothing'}"
    if state == "Succeeded" and record.get("deployment") and traffic.get(record["deployment"], 0) == 0:
        reason = f"deployment {record['deployment']} has no traffic (traffic: {traffic})"
    return AZURE_STATES.get(state, state or "Unknown"), reason


def with_status(home: str, record: dict[str, Any], *, remote: bool = True) -> dict[str, Any]:
    """The record plus its status now: a local server's process and /ready, Azure ML's provisioning state."""
    out = dict(record)
    if record.get("backend") == "local":
        out["status"], out["reason"] = local_status(record)
    elif remote:
        out["status"], out["reason"] = azure_status(record)
    else:
        out["status"], out["reason"] = "Unknown", "not asked; endpoint_status() asks Azure ML"
    out.pop("identity", None)
    return out


def invoke_local(record: dict[str, Any], body: bytes, timeout: float) -> str:
    try:
        status, answer = http_json(record["url"] + "/score", body=body, timeout=timeout)
    except (socket.timeout, TimeoutError) as exc:
        raise EndpointTimeout(f"Endpoint `{record['name']}` did not answer within {timeout:g} seconds ({exc}); "
                              "score() may be slow for this many rows: pass a larger `timeout`, or fewer rows.") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise EndpointTimeout(f"Endpoint `{record['name']}` did not answer within {timeout:g} seconds; pass a "
                                  "larger `timeout`, or fewer rows.") from None
        state, reason = local_status(record)
        raise EndpointDown(f"Endpoint `{record['name']}` did not answer ({exc}); it is {state}: {reason}. "
                           f"See endpoint_logs(\"{record['name']}\"), then deploy it again.") from None
    except OSError as exc:
        state, reason = local_status(record)
        raise EndpointDown(f"Endpoint `{record['name']}` did not answer ({exc}); it is {state}: {reason}. "
                           f"See endpoint_logs(\"{record['name']}\"), then deploy it again.") from None
    return check_answer(record["name"], status, answer)


def check_answer(name: str, status: int, answer: Any) -> str:
    if status == 200 and isinstance(answer, dict) and "predictions" in answer:
        # As JSON text: R makes the data frame, exactly as from a direct POST.
        return json.dumps(answer["predictions"])
    message = answer.get("error", {}).get("message") if isinstance(answer, dict) and isinstance(
        answer.get("error"), dict) else str(answer)[:2000]
    if status == 400:
        raise BadInput(f"Endpoint `{name}` rejected the data (HTTP 400): {message}")
    if status == 500:
        raise ScoreFailed(f"Endpoint `{name}` failed to score (HTTP 500): {message} -- fix score() in the score file "
                          "and deploy again; endpoint_logs() has the server's side.")
    raise EndpointDown(f"Endpoint `{name}` answered HTTP {status}: {message}")


def delete_local(home: str, record: dict[str, Any]) -> None:
    _stop(record)
    if _alive(record):
        raise EndpointError(f"Could not stop the server of endpoint `{record['name']}` (pid {record.get('pid')}).")
    shutil.rmtree(endpoint_dir(home, record["name"]), ignore_errors=True)


# -- Azure ML: the plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class AzurePlan:
    name: str
    deployment: str
    model: ModelRef
    score_file: str
    serve_script: str
    environment: Any  # amlr.environment.ResolvedEnvironment
    instance_type: str
    instance_count: int
    identity: str


DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"


def _file_hash(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def serving_environment(spec: Optional[dict[str, Any]]) -> Any:
    """The step image, plus plumber: ``CRAN_PACKAGES`` for amlr's Dockerfile, an install for an own image."""
    from .environment import resolve_environment

    spec = dict(spec or {})
    if not spec.get("image"):
        packages = spec.get("cran_packages") or []
        if isinstance(packages, str):
            packages = [packages]
        spec["cran_packages"] = sorted(set(packages) | {"plumber"})
    return resolve_environment(spec)


def plan_azure(name: str, model: ModelRef, score_file: str, *, serve_script: str, environment: Optional[dict],
               instance_type: Optional[str], instance_count: Any) -> AzurePlan:
    check_name(name)
    if isinstance(instance_count, float) and instance_count.is_integer():
        instance_count = int(instance_count)
    if not isinstance(instance_count, int) or isinstance(instance_count, bool) or instance_count < 1:
        raise BadRequest(f"`instance_count` must be a whole number of at least 1, not {instance_count!r}.",
                         field="instance_count")
    if instance_type is not None and (not isinstance(instance_type, str) or not re.match(r"^[A-Za-z0-9_]+$",
                                                                                         instance_type)):
        raise BadRequest(f"`instance_type` {instance_type!r} is not a VM size like \"Standard_DS3_v2\".",
                         field="instance_type")
    env = serving_environment(environment)
    model_identity = model.azure_id or ("folder:" + _folder_hash(model.path or ""))
    payload = {
        "environment": env.identity,
        "serve": _file_hash(serve_script),
        "score": _file_hash(score_file),
        "model": model_identity,
        "instance_type": instance_type or DEFAULT_INSTANCE_TYPE,
        "instance_count": instance_count,
    }
    identity = hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()
    return AzurePlan(name=name, deployment=DEPLOYMENT_PREFIX + identity[:12], model=model, score_file=score_file,
                     serve_script=serve_script, environment=env, instance_type=instance_type or DEFAULT_INSTANCE_TYPE,
                     instance_count=instance_count, identity=identity)


def _folder_hash(path: str) -> str:
    from .snapshot import hash_path

    return hash_path(path)


def serving_layer() -> str:
    return (
        "\n# --- amlr: serve an R model with plumber (deploy_r_model()) ---\n"
        "RUN Rscript -e 'if (!requireNamespace(\"plumber\", quietly = TRUE)) install.packages(\"plumber\", "
        "repos = Sys.getenv(\"CRAN\", \"https://cloud.r-project.org\"))'\n"
        f"COPY amlr-serve/ {APP_DIR_IN_IMAGE}/\n"
        f"ENV AMLR_SERVE_SCORE={APP_DIR_IN_IMAGE}/score.R \\\n"
        f"    AMLR_MODEL_DIR={MODEL_MOUNT_PATH} \\\n"
        "    AMLR_SERVE_HOST=0.0.0.0 \\\n"
        f"    AMLR_SERVE_PORT={SERVE_PORT}\n"
        f"EXPOSE {SERVE_PORT}\n"
        f"WORKDIR {APP_DIR_IN_IMAGE}\n"
        f"CMD [\"Rscript\", \"{APP_DIR_IN_IMAGE}/serve.R\"]\n"
    )


def write_serving_context(plan: AzurePlan, dest: str) -> str:
    """The Docker build context of the deployment: the step image + plumber + the app."""
    from .environment import write_build_context

    env = plan.environment
    if env.builds_image:
        write_build_context(env, dest)
        dockerfile = os.path.join(dest, "Dockerfile")
        with open(dockerfile, encoding="utf-8") as fh:
            text = fh.read()
        # The base image's CMD is replaced by the server's.
        text = re.sub(r"(?m)^CMD .*\n?", "", text).rstrip("\n") + "\n"
    else:
        os.makedirs(dest, exist_ok=True)
        text = f"# amlr serving image on top of {env.image}\nFROM {env.image}\n"
    with open(os.path.join(dest, "Dockerfile"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text + serving_layer())
    app = os.path.join(dest, "amlr-serve")
    os.makedirs(app, exist_ok=True)
    shutil.copyfile(plan.serve_script, os.path.join(app, "serve.R"))
    shutil.copyfile(plan.score_file, os.path.join(app, "score.R"))
    return os.path.abspath(dest)


def inference_config() -> dict[str, Any]:
    return {key: {"port": SERVE_PORT, "path": path} for key, path in ROUTES.items()}


def environment_name(plan: AzurePlan) -> str:
    return f"amlr-serve-{plan.name}"


def environment_version(plan: AzurePlan) -> str:
    """The image's content: environment + app files (the model is mounted, not built in)."""
    h = hashlib.sha256(plan.environment.identity.encode())
    h.update(_file_hash(plan.serve_script).encode())
    h.update(_file_hash(plan.score_file).encode())
    return h.hexdigest()[:12]


def sdk_objects(plan: AzurePlan, context_dir: str, model_path: Optional[str] = None) -> tuple[Any, Any]:
    """(ManagedOnlineEndpoint, ManagedOnlineDeployment) of the plan, built with azure-ai-ml."""
    from .backends.azureml_v2 import _sdk

    _sdk()
    from azure.ai.ml.entities import (BuildContext, Environment, ManagedOnlineDeployment, ManagedOnlineEndpoint,
                                      Model, OnlineRequestSettings, ProbeSettings)

    endpoint = ManagedOnlineEndpoint(name=plan.name, auth_mode="key",
                                     description="R model served by amlr (deploy_r_model())",
                                     tags={"amlr": "deploy_r_model"})
    environment = Environment(name=environment_name(plan), version=environment_version(plan),
                              build=BuildContext(path=context_dir), inference_config=inference_config())
    if plan.model.azure_id:
        model: Any = plan.model.azure_id
    else:
        model = Model(path=model_path or plan.model.path, type="custom_model",
                      name=f"{plan.name}-model", description="model folder deployed by amlr")
    # R takes a few seconds to start and init() may load a large model: generous probes.
    probe = ProbeSettings(initial_delay=20, period=10, timeout=5, failure_threshold=30)
    deployment = ManagedOnlineDeployment(
        name=plan.deployment,
        endpoint_name=plan.name,
        model=model,
        model_mount_path=MODEL_MOUNT_PATH,
        environment=environment,
        environment_variables={"AMLR_MODEL_DIR": MODEL_MOUNT_PATH},
        instance_type=plan.instance_type,
        instance_count=plan.instance_count,
        liveness_probe=probe,
        readiness_probe=probe,
        request_settings=OnlineRequestSettings(request_timeout_ms=60000, max_concurrent_requests_per_instance=1),
        tags={"amlr_identity": plan.identity},
    )
    return endpoint, deployment


# -- Azure ML: export ---------------------------------------------------------------------------


def export_endpoint(plan: AzurePlan, path: str, *, overwrite: bool = False) -> dict[str, Any]:
    from .export import dump_yaml

    dest = os.path.abspath(path)
    targets = [os.path.join(dest, n) for n in ("endpoint.yml", "deployment.yml", "environment", "model")]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not overwrite:
        from .errors import FileExists

        raise FileExists(f"`{existing[0]}` already exists; choose another `path` or pass overwrite = TRUE.")
    for t in existing:
        shutil.rmtree(t) if os.path.isdir(t) else os.remove(t)
    os.makedirs(dest, exist_ok=True)
    write_serving_context(plan, os.path.join(dest, "environment"))
    if plan.model.azure_id:
        model: Any = plan.model.azure_id
    else:
        shutil.copytree(plan.model.path or "", os.path.join(dest, "model"))
        model = {"name": f"{plan.name}-model", "type": "custom_model", "path": "model"}
    endpoint = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json",
        "name": plan.name,
        "auth_mode": "key",
        "description": "R model served by amlr (deploy_r_model())",
    }
    probe = {"initial_delay": 20, "period": 10, "timeout": 5, "failure_threshold": 30}
    deployment = {
        "$schema": "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json",
        "name": plan.deployment,
        "endpoint_name": plan.name,
        "model": model,
        "model_mount_path": MODEL_MOUNT_PATH,
        "environment": {
            "name": environment_name(plan),
            "version": environment_version(plan),
            "build": {"path": "environment"},
            "inference_config": inference_config(),
        },
        "environment_variables": {"AMLR_MODEL_DIR": MODEL_MOUNT_PATH},
        "instance_type": plan.instance_type,
        "instance_count": plan.instance_count,
        "liveness_probe": probe,
        "readiness_probe": probe,
        "request_settings": {"request_timeout_ms": 60000, "max_concurrent_requests_per_instance": 1},
    }
    header = (f"# Written by amlr::export_endpoint() for endpoint `{plan.name}`.\n"
              "#   az ml online-endpoint create -f endpoint.yml\n"
              "#   az ml online-deployment create -f deployment.yml --all-traffic\n")
    for fname, doc in (("endpoint.yml", endpoint), ("deployment.yml", deployment)):
        with open(os.path.join(dest, fname), "w", encoding="utf-8", newline="\n") as fh:
            fh.write(header + dump_yaml(doc))
    return {"path": dest, "endpoint": os.path.join(dest, "endpoint.yml"),
            "deployment": os.path.join(dest, "deployment.yml"), "deployment_name": plan.deployment,
            "files": sorted(os.path.relpath(os.path.join(r, f), dest) for r, _, fs in os.walk(dest) for f in fs)}


# -- Azure ML: deploy ---------------------------------------------------------------------------


def deploy_azure(client: Any, plan: AzurePlan, staging: str) -> dict[str, Any]:
    """Create or update the endpoint, add the deployment (if new), move all traffic to it when ready."""
    from .backends.azureml_v2 import azure_call

    context = os.path.join(staging, environment_version(plan))
    if not os.path.isdir(context):
        write_serving_context(plan, context)
    endpoint, deployment = sdk_objects(plan, context)
    with azure_call(f"creating online endpoint `{plan.name}`"):
        try:
            existing = client.online_endpoints.get(plan.name)
        except Exception as exc:  # not found: create it
            from azure.core.exceptions import ResourceNotFoundError

            if not isinstance(exc, ResourceNotFoundError):
                raise
            existing = client.online_endpoints.begin_create_or_update(endpoint).result()
    names = {d.name for d in client.online_deployments.list(endpoint_name=plan.name)}
    with azure_call(f"creating deployment `{plan.deployment}` of `{plan.name}`"):
        if plan.deployment not in names:
            client.online_deployments.begin_create_or_update(deployment).result()
    with azure_call(f"moving the traffic of `{plan.name}` to `{plan.deployment}`"):
        existing.traffic = {plan.deployment: 100}
        existing = client.online_endpoints.begin_create_or_update(existing).result()
    return {
        "name": plan.name,
        "backend": "azureml_v2",
        "deployment": plan.deployment,
        "previous_deployments": sorted(names - {plan.deployment}),
        "url": getattr(existing, "scoring_uri", None),
        "model": plan.model.to_json(),
        "score_file": plan.score_file,
        "created": time.time(),
    }


# -- bridge methods -----------------------------------------------------------------------------


def _home(params: dict[str, Any]) -> str:
    from .registry import default_home

    return params.get("home") or default_home()


def _timeout(params: dict[str, Any], key: str = "timeout", default: float = 60.0) -> float:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise BadRequest(f"`{key}` must be a positive number of seconds, not {value!r}.", field=key)
    return float(value)


def _workspace_client(params: dict[str, Any], *, stored: bool = False) -> tuple[Any, Any]:
    """An MLClient for the workspace R sent (``aml_workspace()``), or the one an endpoint record stored."""
    from .backends.azureml_v2 import connect
    from .workspace import from_json, resolve

    if stored:
        if not params.get("workspace"):
            raise EndpointError("This endpoint's record has no workspace; delete it and deploy again.")
        info = from_json(params["workspace"])
    else:
        info = resolve(params.get("workspace"))
    return info, connect(info)


def _plan_from(params: dict[str, Any]) -> AzurePlan:
    name = check_name(params.get("name"))
    model = model_ref(params.get("model"), backend="azureml_v2")
    score = check_score_file(params.get("score"))
    return plan_azure(name, model, score, serve_script=check_score_file(params.get("serve_script")),
                      environment=params.get("environment"), instance_type=params.get("instance_type"),
                      instance_count=params.get("instance_count", 1))


def endpoint_deploy(params: dict[str, Any]) -> dict[str, Any]:
    home = _home(params)
    backend = params.get("backend") or "local"
    if backend == "local":
        name = check_name(params.get("name"))
        model = model_ref(params.get("model"), backend="local")
        score = check_score_file(params.get("score"))
        port = check_port(params.get("port"))
        rscript = params.get("rscript")
        serve = params.get("serve_script")
        if not isinstance(rscript, str) or not isinstance(serve, str):
            raise BadRequest("`rscript` and `serve_script` are set by R's deploy_r_model(); call it from R.")
        libs = params.get("r_libs") or []
        return deploy_local(home, name, model, score, rscript=rscript, serve_script=os.path.abspath(serve),
                            r_libs=[libs] if isinstance(libs, str) else list(libs), port=port,
                            timeout=_timeout(params))
    if backend == "azureml_v2":
        plan = _plan_from(params)
        info, client = _workspace_client(params)
        staging = os.path.join(home, "endpoints", ".staging")
        record = deploy_azure(client, plan, staging)
        record["workspace"] = info.to_json()
        write_record(home, record)
        out = dict(record)
        out["status"], out["reason"] = "Healthy", None  # created, and its traffic moved: Azure ML said so
        return out
    raise BadRequest(f"Unknown backend {backend!r} for endpoints; use \"local\" or \"azureml_v2\".",
                     field="backend")


def endpoint_export(params: dict[str, Any]) -> dict[str, Any]:
    path = params.get("path")
    if not isinstance(path, str) or not path:
        raise BadRequest("`path` (the folder to write endpoint.yml, deployment.yml and the build context to) "
                         "is missing.", field="path")
    return export_endpoint(_plan_from(params), path, overwrite=bool(params.get("overwrite")))


def endpoint_get(params: dict[str, Any]) -> dict[str, Any]:
    home = _home(params)
    return with_status(home, read_record(home, params.get("name")))


def endpoint_list(params: dict[str, Any]) -> list[dict[str, Any]]:
    home = _home(params)
    out = []
    for name in list_names(home):
        try:
            out.append(with_status(home, read_record(home, name), remote=False))
        except EndpointNotFound:
            continue  # deleted while we looked
        except EndpointError as exc:
            out.append({"name": name, "backend": None, "status": "Damaged", "reason": exc.message})
    return out


def endpoint_logs(params: dict[str, Any]) -> list[str]:
    home = _home(params)
    record = read_record(home, params.get("name"))
    if record.get("backend") != "local":
        _info, client = _workspace_client({"workspace": record.get("workspace")}, stored=True)
        from .backends.azureml_v2 import azure_call

        with azure_call(f"reading the logs of `{record['name']}`"):
            text = client.online_deployments.get_logs(name=record["deployment"], endpoint_name=record["name"],
                                                      lines=int(params.get("n") or 100))
        return str(text).splitlines()
    n = params.get("n")
    if n is not None and (not isinstance(n, (int, float)) or isinstance(n, bool) or n < 1):
        raise BadRequest(f"`n` must be a positive number of lines (or NULL for all), not {n!r}.", field="n")
    if n is None:
        path = record.get("log")
        if not path or not os.path.exists(path):
            return []
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").splitlines()
    return log_tail(record.get("log"), n=int(n))


def endpoint_invoke(params: dict[str, Any]) -> Any:
    home = _home(params)
    record = read_record(home, params.get("name"))
    body = params.get("body")
    if not isinstance(body, str):
        raise BadRequest("`body` (the JSON request) is missing.")
    if record.get("backend") == "local":
        return invoke_local(record, body.encode("utf-8"), _timeout(params, default=300.0))
    _info, client = _workspace_client({"workspace": record.get("workspace")}, stored=True)
    from .backends.azureml_v2 import azure_call

    with azure_call(f"reading the key of `{record['name']}`"):
        keys = client.online_endpoints.get_keys(record["name"])
        endpoint = client.online_endpoints.get(record["name"])
    status, answer = http_json(endpoint.scoring_uri, body=body.encode("utf-8"), timeout=_timeout(params, default=300.0),
                               headers={"Authorization": f"Bearer {keys.primary_key}"})
    return check_answer(record["name"], status, answer)


def endpoint_delete(params: dict[str, Any]) -> dict[str, Any]:
    home = _home(params)
    name = params.get("name")
    try:
        record = read_record(home, name)
    except EndpointError:
        # A damaged record: nothing to stop that we can identify; remove the folder.
        shutil.rmtree(endpoint_dir(home, str(name)), ignore_errors=True)
        return {"name": name, "deleted": True}
    if record.get("backend") == "local":
        delete_local(home, record)
    else:
        _info, client = _workspace_client({"workspace": record.get("workspace")}, stored=True)
        from .backends.azureml_v2 import azure_call

        with azure_call(f"deleting online endpoint `{record['name']}`"):
            client.online_endpoints.begin_delete(name=record["name"]).result()
        shutil.rmtree(endpoint_dir(home, record["name"]), ignore_errors=True)
    return {"name": record["name"], "deleted": True}
