"""Local endpoints: a plumber server per endpoint, started detached, checked, invoked and stopped."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Iterator, Optional

from .. import procs
from ..errors import (AmlrError, BadInput, BadRequest, EndpointDown, EndpointError, EndpointExists, EndpointFailed,
                     EndpointTimeout, PortInUse, ScoreFailed)
from .records import RECORD, ModelRef, endpoints_dir, endpoint_dir, read_record, write_record, log_tail
from .azure import _workspace_client


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
        from ..backends.azureml_v2 import azure_call

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
