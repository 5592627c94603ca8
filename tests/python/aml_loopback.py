"""A loopback Azure ML service for the tests: the REST calls azure-ai-ml makes, answered on 127.0.0.1.

What it serves (one ``ThreadingHTTPServer`` on a random port, plain HTTP):

* the workspace's management API (what ``AZUREML_DEV_URL_MFE`` points
  ``MLClient`` at): workspace, datastores and their secrets, code and
  environment versions (with the pending-upload SAS the SDK uploads code to),
  components, computes, jobs (create, get, list, cancel and its operation);
* the workspace discovery document, whose ``history``/``api`` entries point
  back here: run history (a run, its details with the log-file links, its
  children) and the artifact service (what ``jobs.download`` lists);
* a blob service in the IP-style (Azurite) URL form ``/<account>/<container>/<blob>``:
  the PUT/HEAD/GET/list/metadata calls ``azure-storage-blob`` makes for code,
  local inputs, build contexts and downloads;
* the run-history log files (``/logs/<run>/<file>``), and a managed-identity
  token endpoint (``/msi/token``, the App Service protocol that
  ``ManagedIdentityCredential`` speaks when ``IDENTITY_ENDPOINT`` is set).

The responses are shaped after the ARM and run-history payloads the SDK's own
recorded test sessions show (ids, ``properties``, ``systemData``, ``value``
pages). Request bodies that Azure ML would refuse -- a job PUT without its
job type, a command node without a component, a component without a command
or environment, a code version without its ``codeUri`` -- get a 400
``UserError`` answer, as the service gives, so a regression in what amlr sends
fails the call through the real SDK. Every request is recorded
(:attr:`LoopbackAzureML.requests`), every unknown one answers 404 and is
listed in :attr:`LoopbackAzureML.unhandled`.

The state (jobs, their child runs, log text, output blobs) is plain data the
tests change between calls: :meth:`LoopbackAzureML.set_status`,
:meth:`add_child`, :meth:`set_log`, :meth:`put_output`.

:class:`SocketGuard` refuses (and records) any connection or name lookup that
is not loopback, so nothing in a test reaches Azure.
"""
from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import hashlib
import http.server
import json
import re
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from xml.sax.saxutils import escape

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
RESOURCE_GROUP = "rg-amlr"
WORKSPACE = "ws-amlr"
LOCATION = "westeurope"
ACCOUNT = "amlrloopbackstore"
CONTAINER = "azureml-blobstore-0000"
DATASTORE = "workspaceblobstore"
ARTIFACT_STORE = "workspaceartifactstore"
ARTIFACT_CONTAINER = "azureml"
DATASTORE_CONTAINERS = {DATASTORE: CONTAINER, ARTIFACT_STORE: ARTIFACT_CONTAINER}
TENANT = "00000000-0000-0000-0000-0000000000aa"
IDENTITY_HEADER = "loopback-identity-header"
REQUEST_TIMEOUT = 10.0  # seconds a connection may sit idle before the server drops it
ARM = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
TERMINAL = ("Completed", "Failed", "Canceled")


# -- the credential ---------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_token(audience: str) -> str:
    """A JWT shaped like an Entra ID access token (audience, tenant), signed with a throw-away key.

    azure-ai-ml decodes the token it sends with a job (unverified) and checks
    its ``aud``; nothing verifies the signature, and it grants nothing.
    """
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    payload = _b64url(json.dumps({"aud": audience.rstrip("/"), "tid": TENANT, "oid": str(uuid.UUID(int=7)),
                                  "iat": now, "nbf": now, "exp": now + 3600}).encode())
    signature = _b64url(hashlib.sha256(f"{header}.{payload}.loopback".encode()).digest())
    return f"{header}.{payload}.{signature}"


def scope_audience(scope: str) -> str:
    return scope[: -len("/.default")] if scope.endswith("/.default") else scope


class StaticTokenCredential:
    """An azure-core ``TokenCredential`` that signs nothing and records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(make_token(scope_audience(scopes[0])), int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        self.scopes.append(scopes)
        return AccessTokenInfo(make_token(scope_audience(scopes[0])), int(time.time()) + 3600)


# -- the guard --------------------------------------------------------------------------------


LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


class SocketGuard:
    """While active, connections and name lookups to anything but loopback fail and are recorded."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._saved: dict[str, Any] = {}

    def _allowed(self, host: Any) -> bool:
        return isinstance(host, (str, bytes)) and (host.decode() if isinstance(host, bytes) else host) in LOOPBACK_HOSTS

    def __enter__(self) -> "SocketGuard":
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
        real_getaddrinfo = socket.getaddrinfo
        guard = self

        def check(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not guard._allowed(address[0]):
                guard.refused.append(f"connect {address!r}")
                raise ConnectionRefusedError(f"loopback test: refused a connection to {address!r}")

        def connect(sock: socket.socket, address: Any) -> Any:
            check(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> Any:
            check(sock, address)
            return real_connect_ex(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host is not None and not guard._allowed(host):
                guard.refused.append(f"lookup {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, f"loopback test: refused to look up {host!r}")
            return real_getaddrinfo(host, *args, **kwargs)

        self._saved = {"connect": real_connect, "connect_ex": real_connect_ex, "getaddrinfo": real_getaddrinfo}
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        socket.socket.connect = self._saved["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = self._saved["connect_ex"]  # type: ignore[method-assign]
        socket.getaddrinfo = self._saved["getaddrinfo"]  # type: ignore[assignment]


# -- recorded requests ------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


class Rejected(Exception):
    """A request body Azure ML would refuse: answered 400 UserError."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise Rejected(message)


def _system_data() -> dict[str, Any]:
    return {"createdAt": _now(), "createdBy": "amlr-tests", "createdByType": "User",
            "lastModifiedAt": _now(), "lastModifiedBy": "amlr-tests", "lastModifiedByType": "User"}


# -- the shapes Azure ML accepts -----------------------------------------------------------------


COMPONENT_ID = re.compile(ARM + r"/components/[^/]+/versions/[^/]+$", re.I)
CODE_ID = re.compile(ARM + r"/codes/[^/]+/versions/[^/]+$", re.I)
ENV_ID = re.compile(ARM + r"/environments/[^/]+/versions/[^/]+$", re.I)
COMPUTE_ID = re.compile(ARM + r"/computes/[A-Za-z][A-Za-z0-9-]{1,31}$", re.I)  # ARM compute names: no ':'

INPUT_TYPES = {"literal", "uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model", "triton_model"}
OUTPUT_TYPES = {"uri_file", "uri_folder", "mltable", "custom_model", "mlflow_model", "triton_model"}
BINDING = re.compile(r"^\$\{\{parent\.(inputs|jobs\.[A-Za-z0-9_]+\.outputs)\.[A-Za-z0-9_]+\}\}$")


def check_pipeline_job(body: Any) -> None:
    """What Azure ML's job PUT requires of a pipeline job of command nodes (else 400)."""
    _require(isinstance(body, dict) and isinstance(body.get("properties"), dict), "body.properties is required")
    props = body["properties"]
    _require(props.get("jobType") == "Pipeline", f"jobType must be Pipeline, got {props.get('jobType')!r}")
    jobs = props.get("jobs")
    _require(isinstance(jobs, dict) and jobs, "properties.jobs must be a non-empty object")
    settings = props.get("settings") or {}
    _require(isinstance(settings, dict), "properties.settings must be an object")
    default_compute = settings.get("default_compute") or props.get("computeId")
    for name, node in jobs.items():
        _require(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or "") is not None, f"invalid node name {name!r}")
        _require(isinstance(node, dict) and node.get("type") == "command", f"jobs.{name}.type must be command")
        _require(node.get("name") == name, f"jobs.{name}.name must be the node's key")
        cid = node.get("componentId")
        _require(isinstance(cid, str) and COMPONENT_ID.search(cid) is not None,
                 f"jobs.{name}.componentId must be a component version ARM id, got {cid!r}")
        compute = node.get("computeId") or default_compute
        _require(isinstance(compute, str) and bool(compute), f"jobs.{name} has no compute and no default_compute")
        _require(compute == "serverless" or COMPUTE_ID.search(compute) is not None,
                 f"jobs.{name}: compute {compute!r} is neither serverless nor the id of a compute")
        for key, value in (node.get("inputs") or {}).items():
            _require(isinstance(value, dict), f"jobs.{name}.inputs.{key} must be an object")
            kind = value.get("job_input_type")
            _require(kind in INPUT_TYPES, f"jobs.{name}.inputs.{key}.job_input_type {kind!r} is not a known type")
            if kind == "literal":
                _require(isinstance(value.get("value"), str) and BINDING.match(value["value"]) is not None,
                         f"jobs.{name}.inputs.{key}.value must be a ${{{{parent...}}}} binding")
                ref = value["value"].split(".")
                if ref[1] == "jobs":
                    _require(ref[2] in jobs, f"jobs.{name}.inputs.{key} binds to unknown node {ref[2]!r}")
            else:
                _require(isinstance(value.get("uri"), str) and value["uri"].startswith(("azureml://", "https://")),
                         f"jobs.{name}.inputs.{key}.uri must be an azureml:// or https:// URI, got {value.get('uri')!r}")
        for key, value in (node.get("outputs") or {}).items():
            _require(isinstance(value, dict) and value.get("job_output_type") in OUTPUT_TYPES,
                     f"jobs.{name}.outputs.{key}.job_output_type must be one of {sorted(OUTPUT_TYPES)}")


def check_component(body: Any) -> None:
    """A command component version: command, code and environment ids, typed ports, is_deterministic."""
    _require(isinstance(body, dict) and isinstance(body.get("properties"), dict), "body.properties is required")
    spec = body["properties"].get("componentSpec")
    _require(isinstance(spec, dict), "properties.componentSpec is required")
    _require(spec.get("type") == "command", f"componentSpec.type must be command, got {spec.get('type')!r}")
    _require(isinstance(spec.get("command"), str) and spec["command"].strip() != "", "componentSpec.command is required")
    _require(isinstance(spec.get("code"), str) and CODE_ID.search(spec["code"]) is not None,
             f"componentSpec.code must be a code version ARM id, got {spec.get('code')!r}")
    env = spec.get("environment")
    _require(isinstance(env, str) and ENV_ID.search(env) is not None,
             f"componentSpec.environment must be an environment version ARM id, got {env!r}")
    _require(isinstance(spec.get("is_deterministic", True), bool), "componentSpec.is_deterministic must be a boolean")
    inputs, outputs = spec.get("inputs") or {}, spec.get("outputs") or {}
    for key, port in inputs.items():
        _require(isinstance(port, dict) and port.get("type") in INPUT_TYPES - {"literal"} | {"string", "integer", "number", "boolean"},
                 f"componentSpec.inputs.{key}.type is not a known type")
    for key, port in outputs.items():
        _require(isinstance(port, dict) and port.get("type") in OUTPUT_TYPES, f"componentSpec.outputs.{key}.type is not a known type")
    for kind, name in re.findall(r"\$\{\{\s*(inputs|outputs)\.([A-Za-z0-9_]+)\s*\}\}", spec["command"]):
        _require(name in (inputs if kind == "inputs" else outputs),
                 f"componentSpec.command binds to undeclared {kind[:-1]} {name!r}")


def check_code(body: Any) -> None:
    _require(isinstance(body, dict) and isinstance(body.get("properties"), dict), "body.properties is required")
    uri = body["properties"].get("codeUri")
    _require(isinstance(uri, str) and uri != "", "properties.codeUri is required")


def check_environment(body: Any) -> None:
    _require(isinstance(body, dict) and isinstance(body.get("properties"), dict), "body.properties is required")
    props = body["properties"]
    has_image = isinstance(props.get("image"), str) and props["image"] != ""
    build = props.get("build")
    has_build = isinstance(build, dict) and isinstance(build.get("contextUri"), str)
    _require(has_image != has_build, "exactly one of properties.image and properties.build.contextUri is required")


# -- the service ------------------------------------------------------------------------------------


@dataclass
class Blob:
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    modified: float = field(default_factory=time.time)

    @property
    def etag(self) -> str:
        return '"0x%s"' % hashlib.md5(self.data).hexdigest()[:16].upper()


class LoopbackAzureML:
    """The service state and its HTTP server. Use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.unhandled: list[str] = []
        self.rejected: list[str] = []
        self.lock = threading.RLock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}  # run history: child runs by id
        self.children: dict[str, list[str]] = {}
        self.codes: dict[tuple[str, str], dict[str, Any]] = {}
        self.environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.components: dict[tuple[str, str], dict[str, Any]] = {}
        self.blobs: dict[tuple[str, str], Blob] = {}  # (container, blob name)
        self.logs: dict[str, dict[str, str]] = {}  # run id -> {log file name: text}
        self.assets: dict[str, dict[str, str]] = {}  # data asset id -> {"uri", "type"} (job outputs)
        self.metrics: dict[str, dict[str, list[tuple[int, float, int]]]] = {}  # run -> key -> [(step, value, ms)]
        self.tags: dict[str, dict[str, str]] = {}  # run -> MLflow tags
        self.computes = {"cpu-cluster", "gpu-cluster"}
        self.operations: dict[str, int] = {}  # long-running operation -> polls so far
        self.pipeline_runs: dict[str, str] = {}  # classic pipeline run id -> its run-history experiment name
        self.cancels: list[str] = []  # classic pipeline runs asked to cancel
        self.fail_next: dict[str, tuple[int, str]] = {}  # "METHOD path regex" -> (status, message or Location)
        self.server: Optional[http.server.ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "LoopbackAzureML":
        service = self

        class Handler(_Handler):
            pass

        Handler.service = service
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.timeout = REQUEST_TIMEOUT
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="aml-loopback", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            if self.thread is not None:
                self.thread.join(timeout=REQUEST_TIMEOUT)
            self.server = None

    def __enter__(self) -> "LoopbackAzureML":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self.server is not None, "the loopback service is not running"
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_url(self) -> str:
        """The account URL in the IP-style form azure-storage-blob uses for emulators."""
        return f"{self.url}/{ACCOUNT}"

    def arm(self, *parts: str) -> str:
        base = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
                f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}")
        return "/".join([base, *parts]) if parts else base

    # -- what tests read ---------------------------------------------------------------------

    def asked(self, method: str, pattern: str) -> list[Request]:
        """Recorded requests with this method whose path matches ``pattern`` (a regex, searched)."""
        with self.lock:
            return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def job_puts(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.asked("PUT", r"/jobs/[^/]+$")]

    def component_body(self, component_id: str) -> dict[str, Any]:
        m = re.search(r"/components/([^/]+)/versions/([^/]+)$", component_id)
        assert m, component_id
        return self.components[(m.group(1), m.group(2))]

    def blob_names(self, prefix: str = "") -> list[str]:
        with self.lock:
            return sorted(name for (_, name) in self.blobs if name.startswith(prefix))

    # -- what tests set ----------------------------------------------------------------------

    def set_status(self, job: str, status: str) -> None:
        with self.lock:
            self.jobs[job]["properties"]["status"] = status

    def add_child(self, parent: str, step: str, status: str, *, properties: Optional[dict[str, str]] = None,
                  name: Optional[str] = None) -> str:
        """A child run of ``parent`` for node ``step`` (a newer one for the same step replaces it in listings)."""
        with self.lock:
            run_id = name or f"{parent}_{step}_{len(self.children.get(parent, []))}"
            created = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(milliseconds=len(self.runs))
            self.runs[run_id] = {
                "runId": run_id, "runUuid": str(uuid.uuid4()), "parentRunId": parent, "rootRunId": parent,
                "experimentId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.jobs[parent]["properties"].get("experimentName", ""))),
                "status": status, "displayName": step, "name": step, "runType": "azureml.StepRun",
                "createdUtc": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "properties": {"azureml.nodeid": uuid.uuid4().hex[:8], "azureml.pipeline": parent, **(properties or {})},
                "tags": {}, "computeRequest": None, "compute": {"target": "cpu-cluster", "targetType": "AmlCompute"},
                "services": {}, "hidden": False,
            }
            self.children.setdefault(parent, []).append(run_id)
            return run_id

    def set_child_status(self, run_id: str, status: str) -> None:
        with self.lock:
            self.runs[run_id]["status"] = status

    def set_log(self, run_id: str, text: str, name: str = "user_logs/std_log.txt") -> None:
        """A run-history log file: listed in the run's details, kept in the artifact store like Azure ML's."""
        with self.lock:
            files = self.logs.setdefault(run_id, {"system_logs/lifecycler/execution-wrapper.log": "system noise\n"})
            files[name] = text
            for fname, ftext in files.items():
                self.blobs[(ARTIFACT_CONTAINER, f"ExperimentRun/dcid.{run_id}/{fname}")] = Blob(ftext.encode("utf-8"))

    def put_output(self, run_id: str, output: str, files: dict[str, str]) -> str:
        """Files of a child run's named output, in the default datastore; returns their folder path."""
        folder = f"azureml/{self.runs[run_id]['runUuid']}/{output}"
        with self.lock:
            for rel, text in files.items():
                self.blobs[(CONTAINER, f"{folder}/{rel}")] = Blob(text.encode("utf-8"))
            asset = f"azureml://locations/{LOCATION}/workspaces/{uuid.UUID(int=3)}/data/azureml_{run_id}_output_data_{output}/versions/1"
            self.runs[run_id].setdefault("_outputs", {})[output] = {"assetId": asset, "type": "uri_folder"}
            self.assets[asset] = {"uri": self.datastore_uri(DATASTORE, folder + "/"), "type": "uri_folder"}
        return folder

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0, timestamp_ms: int = 1700000000000) -> None:
        with self.lock:
            self.metrics.setdefault(run_id, {}).setdefault(key, []).append((step, value, timestamp_ms + step))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        with self.lock:
            self.tags.setdefault(run_id, {})[key] = value

    def datastore_uri(self, datastore: str, path: str) -> str:
        return (f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}"
                f"/datastores/{datastore}/paths/{path}")

    # -- resources -----------------------------------------------------------------------------

    def workspace(self) -> dict[str, Any]:
        return {
            "id": self.arm(), "name": WORKSPACE, "type": "Microsoft.MachineLearningServices/workspaces",
            "location": LOCATION, "kind": "Default", "tags": {},
            "identity": {"type": "SystemAssigned", "principalId": str(uuid.UUID(int=1)), "tenantId": str(uuid.UUID(int=2))},
            "sku": {"name": "Basic", "tier": "Basic"},
            "properties": {
                "friendlyName": WORKSPACE, "workspaceId": str(uuid.UUID(int=3)), "provisioningState": "Succeeded",
                "discoveryUrl": f"{self.url}/discovery",
                # Azure ML answers azureml://<region>.api.azureml.ms/mlflow/v1.0/<workspace id>, which
                # azureml-mlflow turns into https://<region>.api.azureml.ms/...; plain HTTP on loopback
                # keeps MLflow's own REST client (the same calls) on this server.
                "mlFlowTrackingUri": f"{self.url}/mlflow/v1.0{self.arm()}",
                "storageAccount": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
                                  f"Microsoft.Storage/storageAccounts/{ACCOUNT}",
                "hbiWorkspace": False, "publicNetworkAccess": "Enabled", "v1LegacyMode": False,
            },
            "systemData": _system_data(),
        }

    def datastore(self, name: str = DATASTORE) -> dict[str, Any]:
        return {
            "id": self.arm("datastores", name), "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {"description": None, "tags": None, "properties": None, "isDefault": name == DATASTORE,
                           "credentials": {"credentialsType": "AccountKey"}, "datastoreType": "AzureBlob",
                           "accountName": ACCOUNT, "containerName": DATASTORE_CONTAINERS[name],
                           "endpoint": "core.windows.net",
                           "protocol": "https", "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity"},
            "systemData": _system_data(),
        }

    def compute(self, name: str) -> dict[str, Any]:
        return {
            "id": self.arm("computes", name), "name": name, "location": LOCATION,
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "properties": {"computeType": "AmlCompute", "computeLocation": LOCATION, "provisioningState": "Succeeded",
                           "isAttachedCompute": False, "disableLocalAuth": True,
                           "properties": {"vmSize": "STANDARD_DS3_V2", "vmPriority": "Dedicated", "osType": "Linux",
                                          "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0,
                                                            "nodeIdleTimeBeforeScaleDown": "PT120S"}}},
        }

    def _versioned(self, kind: str, store: dict[tuple[str, str], dict[str, Any]], name: str, version: str,
                   body: dict[str, Any]) -> dict[str, Any]:
        out = {"id": self.arm(kind, name, "versions", version), "name": version,
               "type": f"Microsoft.MachineLearningServices/workspaces/{kind}/versions",
               "properties": {**body.get("properties", {}), "provisioningState": "Succeeded"},
               "systemData": _system_data()}
        store[(name, version)] = out
        return out

    def _create_job(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        check_pipeline_job(body)
        props = dict(body["properties"])
        props.setdefault("experimentName", "Default")
        props["status"] = "NotStarted"
        props["services"] = {"Studio": {"jobServiceType": "Studio", "endpoint":
                                        f"https://ml.azure.com/runs/{name}?wsid={self.arm()}"}}
        props.setdefault("properties", {})
        props.setdefault("tags", {})
        job = {"id": self.arm("jobs", name), "name": name, "type": "Microsoft.MachineLearningServices/workspaces/jobs",
               "properties": props, "systemData": _system_data()}
        self.jobs[name] = job
        self.children.setdefault(name, [])
        return job

    def _cancel(self, name: str) -> None:
        job = self.jobs[name]
        if job["properties"]["status"] not in TERMINAL:
            job["properties"]["status"] = "Canceled"
        for child in self.children.get(name, []):
            if self.runs[child]["status"] not in TERMINAL:
                self.runs[child]["status"] = "Canceled"

    def _visible_children(self, parent: str) -> list[dict[str, Any]]:
        return [self._public_run(self.runs[c]) for c in self.children.get(parent, [])]

    @staticmethod
    def _public_run(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run.items() if not k.startswith("_")}

    def _run_details(self, run_id: str) -> dict[str, Any]:
        run = self._public_run(self.runs[run_id]) if run_id in self.runs else {"runId": run_id, "status": self.jobs[run_id]["properties"]["status"]}
        files = {name: f"{self.storage_url}/{ARTIFACT_CONTAINER}/ExperimentRun/dcid.{run_id}/{name}?sv=2019-07-07&sr=b&sig=loopback"
                 for name in sorted(self.logs.get(run_id, {}))}
        return {"runId": run_id, "target": "cpu-cluster", "status": run["status"], "parentRunId": run.get("parentRunId"),
                "startTimeUtc": run.get("startTimeUtc"), "endTimeUtc": run.get("endTimeUtc"), "error": None,
                "warnings": None,
                "properties": run.get("properties", {}), "logFiles": files, "revision": 3,
                "runUuid": run.get("runUuid"), "rootRunId": run.get("rootRunId")}

    def _artifacts(self, run_id: str, prefix: str) -> list[dict[str, Any]]:
        """Run-history artifacts: the run's log files under their own names."""
        return [{"artifactId": f"dcid.{run_id}/{name}", "origin": "ExperimentRun", "container": f"dcid.{run_id}",
                 "path": name, "etag": None, "createdTime": _now(), "dataPath": None}
                for name in sorted(self.logs.get(run_id, {})) if name.startswith(prefix)]


class _Handler(http.server.BaseHTTPRequestHandler):
    service: LoopbackAzureML
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        req = Request(self.command, urllib.parse.unquote(parsed.path),
                      dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
                      {k.lower(): v for k, v in self.headers.items()}, body)
        svc = self.service
        with svc.lock:
            svc.requests.append(req)
            key = f"{req.method} {req.path}"
            for suffix, (status, message) in list(svc.fail_next.items()):
                if key.endswith(suffix) or re.search(suffix, key):
                    del svc.fail_next[suffix]
                    if status in (301, 302, 303, 307, 308):  # message: where to
                        return self._send(status, b"", {"Location": message})
                    return self._json(status, {"error": {"code": "UserError", "message": message}})
            try:
                for method, pattern, fn in ROUTES:
                    if method == req.method:
                        m = pattern.fullmatch(req.path)
                        if m:
                            return fn(self, req, **m.groupdict())
            except Rejected as exc:
                svc.rejected.append(f"{key}: {exc}")
                return self._json(400, {"error": {"code": "UserError", "severity": None,
                                                  "message": str(exc), "target": None, "details": []}})
            except KeyError as exc:
                return self._json(404, {"error": {"code": "UserError", "message": f"Not found: {exc}"}})
            svc.unhandled.append(key)
            self._json(404, {"error": {"code": "NotFound", "message": f"loopback: no route for {key}"}})

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def _send(self, status: int, body: bytes, headers: Optional[dict[str, str]] = None,
              content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        all_headers = {"Content-Type": content_type, "x-ms-request-id": str(uuid.uuid4()),
                       "Date": email.utils.formatdate(usegmt=True), **(headers or {})}
        for k, v in all_headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: Optional[dict[str, str]] = None) -> None:
        self._send(status, json.dumps(data).encode("utf-8"), headers)

    def _page(self, items: list[Any]) -> None:
        self._json(200, {"value": items, "nextLink": None})

    # -- management API ----------------------------------------------------------------------

    def workspace(self, req: Request, **_: str) -> None:
        self._json(200, self.service.workspace())

    def discovery(self, req: Request, **_: str) -> None:
        url = self.service.url
        self._json(200, dict.fromkeys(("api", "catalog", "experimentation", "history", "hyperdrive", "labeling", "modelmanagement", "pipelines"), url) | {"studio": "https://ml.azure.com"})

    def datastores(self, req: Request, **_: str) -> None:
        only_default = req.query.get("isDefault", "").lower() == "true"
        self._page([self.service.datastore(n) for n in DATASTORE_CONTAINERS if n == DATASTORE or not only_default])

    def datastore(self, req: Request, name: str, **_: str) -> None:
        if name not in DATASTORE_CONTAINERS:
            return self._json(404, {"error": {"code": "UserError", "message": f"datastore {name} not found"}})
        self._json(200, self.service.datastore(name))

    def datastore_secrets(self, req: Request, name: str, **_: str) -> None:
        self._json(200, {"secretsType": "Sas", "sasToken": "sv=2019-07-07&sr=c&sig=loopback"})

    def compute(self, req: Request, name: str, **_: str) -> None:
        if name not in self.service.computes:
            return self._json(404, {"error": {"code": "UserError", "message": f"Compute {name} not found"}})
        self._json(200, self.service.compute(name))

    def code_versions(self, req: Request, name: str, **_: str) -> None:
        # Azure ML matches a content hash across code names: that is how the SDK finds an
        # earlier upload of the same folder (it reads the name back from the id).
        want = req.query.get("hash")
        self._page([c for (n, _v), c in self.service.codes.items()
                    if (n == name if want is None else (c["properties"].get("properties") or {}).get("hash_sha256") == want)])

    def code_pending_upload(self, req: Request, name: str, version: str, **_: str) -> None:
        _require((req.json() or {}).get("pendingUploadType") == "TemporaryBlobReference", "pendingUploadType is required")
        folder = f"LocalUpload/{uuid.uuid4().hex}"
        blob_uri = f"https://{ACCOUNT}.blob.core.windows.net/{CONTAINER}/{folder}"
        self._json(200, {"blobReferenceForConsumption": {
            "blobUri": blob_uri, "storageAccountArmId": None,
            "credential": {"credentialType": "SAS",
                           "sasUri": f"{self.service.storage_url}/{CONTAINER}/{folder}?sv=2019-07-07&sr=c&sig=loopback"}},
            "pendingUploadId": str(uuid.uuid4()), "pendingUploadType": "TemporaryBlobReference"})

    def _get_versioned(self, store: dict[tuple[str, str], dict[str, Any]], name: str, version: str) -> None:
        if (name, version) not in store:
            return self._json(404, {"error": {"code": "UserError", "message": f"{name}:{version} not found"}})
        self._json(200, store[(name, version)])

    def code_get(self, req: Request, name: str, version: str, **_: str) -> None:
        self._get_versioned(self.service.codes, name, version)

    def code_put(self, req: Request, name: str, version: str, **_: str) -> None:
        body = req.json()
        check_code(body)
        self._json(200, self.service._versioned("codes", self.service.codes, name, version, body))

    def environment_get(self, req: Request, name: str, version: str, **_: str) -> None:
        self._get_versioned(self.service.environments, name, version)

    def environment_put(self, req: Request, name: str, version: str, **_: str) -> None:
        body = req.json()
        check_environment(body)
        self._json(200, self.service._versioned("environments", self.service.environments, name, version, body))

    def component_get(self, req: Request, name: str, version: str, **_: str) -> None:
        self._get_versioned(self.service.components, name, version)

    def component_put(self, req: Request, name: str, version: str, **_: str) -> None:
        body = req.json()
        check_component(body)
        self._json(200, self.service._versioned("components", self.service.components, name, version, body))

    def job_get(self, req: Request, name: str, **_: str) -> None:
        svc = self.service
        if name in svc.jobs:
            return self._json(200, svc.jobs[name])
        if name in svc.runs:  # a pipeline child: MFE answers with no properties, the SDK asks run history
            return self._json(200, {"id": svc.arm("jobs", name), "name": name, "properties": None})
        self._json(404, {"error": {"code": "UserError", "message": f"Job {name} not found"}})

    def job_put(self, req: Request, name: str, **_: str) -> None:
        self._json(201, self.service._create_job(name, req.json()))

    def job_list(self, req: Request, **_: str) -> None:
        self._page(list(self.service.jobs.values()))

    def job_cancel(self, req: Request, name: str, **_: str) -> None:
        """202 and an operation to poll, as MFE answers.

        The operation is done on the first poll: an answer "still running" makes
        azure-core wait its default 30 s before polling again (a ``Retry-After``
        of 0 counts as none).
        """
        if name not in self.service.jobs:
            return self._json(404, {"error": {"code": "UserError", "message": f"Job {name} not found"}})
        self.service._cancel(name)
        op = f"jc:{uuid.uuid4()}:{name}"
        self.service.operations[op] = 0
        location = (f"{self.service.url}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.MachineLearningServices/"
                    f"locations/{LOCATION}/mfeOperationResults/{op}?api-version={req.query.get('api-version', '')}")
        self._send(202, b"null", {"Location": location, "Retry-After": "0", "x-ms-async-operation-timeout": "PT1H"})

    def operation(self, req: Request, op: str, **_: str) -> None:
        polls = self.service.operations.get(op)
        if polls is None:
            return self._json(404, {"error": {"code": "NotFound", "message": f"operation {op} not found"}})
        self.service.operations[op] = polls + 1
        self._send(200, b"{}")

    def classic_node_log(self, req: Request, run: str, kind: str, **_: str) -> None:
        """A node's STDOUT/STDERR/JobLog from the classic pipelines service (raw text; empty here)."""
        _require(isinstance(req.json(), list), "a list of node ids is required")
        self._send(200, b"", content_type="text/plain; charset=utf-8")

    def classic_cancel(self, req: Request, run: str, **_: str) -> None:
        """DELETE .../PipelineRuns/<id>/Execution: the classic cancel."""
        svc = self.service
        if run not in svc.pipeline_runs:
            return self._json(404, {"error": {"code": "NotFound", "message": f"PipelineRun {run} not found"}})
        svc.cancels.append(run)
        for rid in [run, *svc.children.get(run, [])]:
            if rid in svc.runs and svc.runs[rid]["status"] not in TERMINAL:
                svc.runs[rid]["status"] = "CancelRequested" if rid == run else "Canceled"
        self._send(200, b"")

    # -- run history, artifacts, logs --------------------------------------------------------------

    def classic_pipeline_run(self, req: Request, run: str, **_: str) -> None:
        """The classic pipelines service's PipelineRun entity (what a StepRun asks for its experiment)."""
        exp = self.service.pipeline_runs.get(run)
        if exp is None:
            return self._json(404, {"error": {"code": "NotFound", "message": f"PipelineRun {run} not found"}})
        self._json(200, {"Id": run, "RunHistoryExperimentName": exp, "PipelineId": str(uuid.uuid5(uuid.NAMESPACE_URL, run)),
                         "Status": {"StatusCode": "Finished", "RunStatus": "Completed"}, "Description": None})

    def run_get(self, req: Request, run: str, **_: str) -> None:
        svc = self.service
        if run not in svc.runs:
            return self._json(404, {"error": {"code": "UserError", "message": f"Run {run} not found"}})
        self._json(200, svc._public_run(svc.runs[run]))

    def run_details(self, req: Request, run: str, **_: str) -> None:
        if run not in self.service.runs and run not in self.service.jobs:
            return self._json(404, {"error": {"code": "UserError", "message": f"Run {run} not found"}})
        self._json(200, self.service._run_details(run))

    def run_children(self, req: Request, run: str, **_: str) -> None:
        self._page(self.service._visible_children(run))

    def run_data(self, req: Request, **_: str) -> None:
        body = req.json() or {}
        run = body.get("runId")
        _require(isinstance(run, str), "runId is required")
        if run not in self.service.runs:
            return self._json(404, {"error": {"code": "UserError", "message": f"Run {run} not found"}})
        meta = self.service._public_run(self.service.runs[run])
        meta["outputs"] = self.service.runs[run].get("_outputs", {})
        self._json(200, {"runMetadata": meta, "runDefinition": {}, "jobSpecification": {}})

    def resolved_uris(self, req: Request, **_: str) -> None:
        ids = (req.json() or {}).get("values")
        _require(isinstance(ids, list), "values (a list of data asset ids) is required")
        self._json(200, {"values": {i: self.service.assets[i] for i in ids if i in self.service.assets}})

    def run_patch(self, req: Request, run: str, **_: str) -> None:
        self._json(200, {"runId": run})

    def artifacts_prefix(self, req: Request, origin: str, container: str, prefix: Optional[str] = None, **_: str) -> None:
        run = container[len("dcid."):]
        self._page(self.service._artifacts(run, prefix or req.query.get("path", "")))

    def artifacts_content_info(self, req: Request, origin: str, container: str, prefix: Optional[str] = None,
                               **_: str) -> None:
        run = container[len("dcid."):]
        items = [dict(a, contentUri=f"{self.service.url}/logs/{run}/{a['path']}?sv=loopback")
                 for a in self.service._artifacts(run, prefix or req.query.get("path", ""))]
        self._page(items)

    def log_file(self, req: Request, run: str, name: str, **_: str) -> None:
        text = self.service.logs.get(run, {}).get(name)
        if text is None:
            return self._send(404, b"BlobNotFound", content_type="text/plain")
        self._send(200, text.encode("utf-8"), {"x-ms-blob-type": "BlockBlob"}, content_type="text/plain; charset=utf-8")

    # -- MLflow tracking (the REST API MlflowClient speaks) -----------------------------------------

    def mlflow_run(self, req: Request, **_: str) -> None:
        svc = self.service
        run = req.query.get("run_id") or req.query.get("run_uuid") or ""
        if run not in svc.runs:
            return self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run '{run}' not found"})
        latest = [{"key": k, "value": v[-1][1], "timestamp": v[-1][2], "step": v[-1][0]}
                  for k, v in sorted(svc.metrics.get(run, {}).items())]
        tags = [{"key": k, "value": v} for k, v in sorted({"mlflow.runName": svc.runs[run]["displayName"],
                                                           **svc.tags.get(run, {})}.items())]
        info = {"run_id": run, "run_uuid": run, "run_name": svc.runs[run]["displayName"],
                "experiment_id": svc.runs[run]["experimentId"], "user_id": "amlr-tests",
                "status": "FINISHED" if svc.runs[run]["status"] == "Completed" else "RUNNING",
                "start_time": 1700000000000, "artifact_uri": f"azureml://artifacts/ExperimentRun/dcid.{run}",
                "lifecycle_stage": "active"}
        self._json(200, {"run": {"info": info, "data": {"metrics": latest, "params": [], "tags": tags}}})

    def mlflow_history(self, req: Request, **_: str) -> None:
        run, key = req.query.get("run_id") or req.query.get("run_uuid") or "", req.query.get("metric_key", "")
        points = self.service.metrics.get(run, {}).get(key, [])
        self._json(200, {"metrics": [{"key": key, "value": v, "timestamp": t, "step": s} for s, v, t in points]})

    def token(self, req: Request, **_: str) -> None:
        if req.headers.get("x-identity-header") != IDENTITY_HEADER:
            return self._json(401, {"error": "invalid identity header"})
        self._json(200, {"access_token": make_token(req.query.get("resource", "")),
                         "expires_on": str(int(time.time()) + 3600),
                         "resource": req.query.get("resource", ""), "token_type": "Bearer"})

    # -- blob service (IP-style URLs: /<account>/<container>/<blob>) -------------------------------

    def _blob_headers(self, blob: Blob) -> dict[str, str]:
        h = {"ETag": blob.etag, "Last-Modified": email.utils.formatdate(blob.modified, usegmt=True),
             "x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06", "Accept-Ranges": "bytes",
             "x-ms-creation-time": email.utils.formatdate(blob.modified, usegmt=True),
             "x-ms-lease-status": "unlocked", "x-ms-lease-state": "available", "x-ms-server-encrypted": "true"}
        h.update({f"x-ms-meta-{k}": v for k, v in blob.metadata.items()})
        return h

    def _blob_missing(self) -> None:
        self._send(404, b"" if self.command == "HEAD" else
                   b'<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.</Message></Error>',
                   {"x-ms-error-code": "BlobNotFound"}, content_type="application/xml")

    def blob_put(self, req: Request, container: str, blob: str, **_: str) -> None:
        svc = self.service
        meta = {k[len("x-ms-meta-"):]: v for k, v in req.headers.items() if k.startswith("x-ms-meta-")}
        if req.query.get("comp") == "metadata":
            if (container, blob) not in svc.blobs:
                return self._blob_missing()
            svc.blobs[(container, blob)].metadata = meta
            return self._send(200, b"", {"ETag": svc.blobs[(container, blob)].etag})
        if req.query.get("comp") in ("block", "blocklist"):
            return self._send(400, b"", {"x-ms-error-code": "UnsupportedInLoopback"})
        svc.blobs[(container, blob)] = Blob(req.body, meta)
        b = svc.blobs[(container, blob)]
        self._send(201, b"", {"ETag": b.etag, "Last-Modified": email.utils.formatdate(b.modified, usegmt=True),
                              "Content-MD5": base64.b64encode(hashlib.md5(req.body).digest()).decode(),
                              "x-ms-request-server-encrypted": "true"})

    def blob_read(self, req: Request, container: str, blob: str, **_: str) -> None:
        svc = self.service
        if req.query.get("restype") == "container":
            return self.container_op(req, container)
        found = svc.blobs.get((container, blob))
        if found is None:
            return self._blob_missing()
        headers = self._blob_headers(found)
        data = found.data
        rng = req.headers.get("x-ms-range") or req.headers.get("range")
        status = 200
        if rng and req.method == "GET":
            m = re.match(r"bytes=(\d+)-(\d*)", rng)
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start:end + 1], 206
        if req.method == "HEAD":
            self.send_response(200)
            for k, v in {**headers, "Content-Length": str(len(found.data)), "Content-Type": "application/octet-stream"}.items():
                self.send_header(k, v)
            self.end_headers()
            return
        self._send(status, data, headers, content_type="application/octet-stream")

    def container_op(self, req: Request, container: str, **_: str) -> None:
        if req.query.get("comp") != "list":
            return self._send(200, b"", {"ETag": '"0x1"', "Last-Modified": email.utils.formatdate(usegmt=True)})
        prefix = req.query.get("prefix", "")
        delimiter = req.query.get("delimiter")
        want_meta = "metadata" in req.query.get("include", "")
        names, prefixes = [], set()
        for (c, name), blob in sorted(self.service.blobs.items()):
            if c != container or not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                continue
            names.append((name, blob))
        parts = [f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{self.service.storage_url}/" '
                 f'ContainerName="{escape(container)}"><Prefix>{escape(prefix)}</Prefix><Blobs>']
        for name, blob in names:
            meta = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in blob.metadata.items()) if want_meta else ""
            parts.append(f"<Blob><Name>{escape(name)}</Name><Properties>"
                         f"<Last-Modified>{email.utils.formatdate(blob.modified, usegmt=True)}</Last-Modified>"
                         f"<Etag>{blob.etag}</Etag><Content-Length>{len(blob.data)}</Content-Length>"
                         f"<Content-Type>application/octet-stream</Content-Type><BlobType>BlockBlob</BlobType>"
                         f"</Properties>{'<Metadata>' + meta + '</Metadata>' if want_meta else ''}</Blob>")
        parts.extend(f"<BlobPrefix><Name>{escape(p)}</Name></BlobPrefix>" for p in sorted(prefixes))
        parts.append("</Blobs><NextMarker /></EnumerationResults>")
        self._send(200, "".join(parts).encode("utf-8"), content_type="application/xml")


def _r(method: str, pattern: str, fn: Callable[..., None]) -> tuple[str, re.Pattern[str], Callable[..., None]]:
    return method, re.compile(pattern, re.I), fn


H = _Handler
HIST = r"/history/v1\.0" + ARM
ARTIFACT = r"/artifact/v2\.0" + ARM + r"/artifacts"
ROUTES = [
    _r("GET", ARM, H.workspace),
    _r("GET", r"/discovery", H.discovery),
    _r("GET", ARM + r"/datastores", H.datastores),
    _r("GET", ARM + r"/datastores/(?P<name>[^/]+)", H.datastore),
    _r("POST", ARM + r"/datastores/(?P<name>[^/]+)/listSecrets", H.datastore_secrets),
    _r("GET", ARM + r"/computes/(?P<name>[^/]+)", H.compute),
    _r("GET", ARM + r"/codes/(?P<name>[^/]+)/versions", H.code_versions),
    _r("POST", ARM + r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/startPendingUpload", H.code_pending_upload),
    _r("GET", ARM + r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", H.code_get),
    _r("PUT", ARM + r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", H.code_put),
    _r("GET", ARM + r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", H.environment_get),
    _r("PUT", ARM + r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", H.environment_put),
    _r("GET", ARM + r"/components/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", H.component_get),
    _r("PUT", ARM + r"/components/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", H.component_put),
    _r("GET", ARM + r"/jobs", H.job_list),
    _r("GET", ARM + r"/jobs/(?P<name>[^/]+)", H.job_get),
    _r("PUT", ARM + r"/jobs/(?P<name>[^/]+)", H.job_put),
    _r("POST", ARM + r"/jobs/(?P<name>[^/]+)/cancel", H.job_cancel),
    _r("GET", r"/subscriptions/[^/]+/providers/Microsoft\.MachineLearningServices/locations/[^/]+/mfeOperationResults/(?P<op>[^/]+)",
       H.operation),
    _r("GET", HIST + r"/runs/(?P<run>[^/]+)", H.run_get),
    _r("GET", HIST + r"/runs/(?P<run>[^/]+)/details", H.run_details),
    _r("GET", HIST + r"/experiment(?:s|ids)/(?P<exp>[^/]+)/runs/(?P<run>[^/]+)", H.run_get),
    _r("GET", HIST + r"/experiment(?:s|ids)/(?P<exp>[^/]+)/runs/(?P<run>[^/]+)/details", H.run_details),
    _r("GET", HIST + r"/experiment(?:s|ids)/(?P<exp>[^/]+)/runs/(?P<run>[^/]+)/children", H.run_children),
    _r("GET", r"/pipelines/v1\.0" + ARM + r"/PipelineRuns/(?P<run>[^/]+)", H.classic_pipeline_run),
    _r("POST", r"/pipelines/v1\.0" + ARM + r"/PipelineRuns/(?P<run>[^/]+)/Graph/Shareable/(?P<kind>STDOUT|STDERR|JobLog)",
       H.classic_node_log),
    _r("DELETE", r"/pipelines/v1\.0" + ARM + r"/PipelineRuns/(?P<run>[^/]+)/Execution", H.classic_cancel),
    _r("GET", HIST + r"/runs/(?P<run>[^/]+)/children", H.run_children),
    _r("POST", HIST + r"/runs/(?P<run>[^/]+)/children", H.run_children),
    _r("POST", HIST + r"/rundata", H.run_data),
    _r("POST", r"/data/v1\.0" + ARM + r"/dataversion/batchGetResolvedUris", H.resolved_uris),
    _r("PATCH", HIST + r"/experiment(?:s|ids)/(?P<exp>[^/]+)/runs/(?P<run>[^/]+)", H.run_patch),
    _r("GET", ARTIFACT + r"/prefix/contentinfo/(?P<origin>[^/]+)/(?P<container>[^/]+)(?:/(?P<prefix>.+))?",
       H.artifacts_content_info),
    _r("GET", ARTIFACT + r"/(?P<origin>[^/]+)/(?P<container>[^/]+)", H.artifacts_prefix),
    _r("GET", r"/logs/(?P<run>[^/]+)/(?P<name>.+)", H.log_file),
    # azureml-mlflow's request hook moves MLflow's calls from /mlflow/v1.0 to /mlflow/v2.0
    _r("GET", r"/mlflow/v[12]\.0" + ARM + r"/api/2\.0/mlflow/runs/get", H.mlflow_run),
    _r("GET", r"/mlflow/v[12]\.0" + ARM + r"/api/2\.0/mlflow/metrics/get-history", H.mlflow_history),
    _r("GET", r"/msi/token", H.token),
    _r("PUT", rf"/{ACCOUNT}/(?P<container>[^/]+)/(?P<blob>.+)", H.blob_put),
    _r("GET", rf"/{ACCOUNT}/(?P<container>[^/]+)/(?P<blob>.+)", H.blob_read),
    _r("HEAD", rf"/{ACCOUNT}/(?P<container>[^/]+)/(?P<blob>.+)", H.blob_read),
    _r("GET", rf"/{ACCOUNT}/(?P<container>[^/]+)", H.container_op),
    _r("PUT", rf"/{ACCOUNT}/(?P<container>[^/]+)", H.container_op),
]


# -- the pytest fixture ----------------------------------------------------------------------------


def workspace_options() -> dict[str, str]:
    """The ``workspace`` option naming the loopback workspace; signs in as a managed identity."""
    return {"subscription_id": SUBSCRIPTION, "resource_group": RESOURCE_GROUP, "workspace_name": WORKSPACE,
            "auth": "managed_identity"}


def loopback_environment(service: LoopbackAzureML) -> dict[str, str]:
    """What sends amlr (in this process or a child) to the loopback service.

    * ``AZUREML_DEV_URL_MFE``: azure-ai-ml's own override of the management
      endpoint (plain HTTP on loopback; see ``azureml_v2.loopback_options``).
    * ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``: azure-identity's managed
      identity protocol (App Service), so ``auth = "managed_identity"`` signs in
      through the real credential code and gets a token from this server.
    * ``AZUREML_CURRENT_CLOUD``: MLClient writes it; set here so it is undone.
    """
    return {"AZUREML_DEV_URL_MFE": service.url, "IDENTITY_ENDPOINT": f"{service.url}/msi/token",
            "IDENTITY_HEADER": IDENTITY_HEADER, "AZUREML_CURRENT_CLOUD": "AzureCloud"}


def redirect_storage(monkeypatch: Any, service: LoopbackAzureML) -> None:
    """Point azure-ai-ml's datastore account URL at the loopback blob service.

    The SDK builds it as ``https://<account>.blob.<endpoint>`` from a constant
    (``STORAGE_ACCOUNT_URLS``); nothing in its configuration changes the
    scheme or host, so the test replaces the constant's entries. Code uploads
    need no such help: they go to the SAS URI the service hands out.
    """
    from azure.ai.ml.constants import _common

    for kind in list(_common.STORAGE_ACCOUNT_URLS):
        monkeypatch.setitem(_common.STORAGE_ACCOUNT_URLS, kind, f"{service.url}/{{}}")


def _fixture(monkeypatch: Any) -> Any:
    guard = SocketGuard()
    with guard, LoopbackAzureML() as service:
        for key, value in loopback_environment(service).items():
            monkeypatch.setenv(key, value)
        for key in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
            monkeypatch.delenv(key, raising=False)
        redirect_storage(monkeypatch, service)
        service.guard = guard  # type: ignore[attr-defined]
        yield service
    assert guard.refused == [], f"a test tried to leave the machine: {guard.refused}"
    assert service.unhandled == [], f"requests the loopback service does not know: {service.unhandled}"


try:
    import pytest

    aml_service = pytest.fixture(_fixture, name="aml_service")
except ImportError:  # pragma: no cover - the module is also usable without pytest
    pass


# -- as a process of its own (for the R tests) ------------------------------------------------------


def _command(service: LoopbackAzureML, line: str) -> Any:
    """One control command (a JSON object) from the test driving this process."""
    cmd = json.loads(line)
    op = cmd.get("op")
    if op == "requests":
        def body(r: Request) -> Any:
            try:
                return None if r.path.startswith(f"/{ACCOUNT}/") else r.json()
            except ValueError:
                return None

        return [{"method": r.method, "path": r.path, "query": r.query, "body": body(r)} for r in service.requests]
    if op == "job_status":
        service.set_status(cmd["job"], cmd["status"])
        return {}
    if op == "child":
        run_id = service.add_child(cmd["parent"], cmd["step"], cmd["status"])
        if cmd.get("log") is not None:
            service.set_log(run_id, cmd["log"])
        return {"run_id": run_id}
    if op == "problems":
        return {"unhandled": service.unhandled, "rejected": service.rejected}
    return {"error": f"unknown op {op!r}"}


def main(argv: Optional[list[str]] = None) -> int:
    """Serve on a random loopback port; read control commands from stdin, one JSON object a line.

    Prints one JSON line first: the service's URL, the environment that sends
    amlr to it (:func:`loopback_environment`) and the workspace option. Each
    command (``{"op": "requests" | "job_status" | "child" | "problems", ...}``)
    is answered with one JSON line. Stops when stdin closes (the parent ended)
    or after ``--max-seconds``.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="The loopback Azure ML service, as a process of its own.")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    with LoopbackAzureML() as service:
        print(json.dumps({"url": service.url, "env": loopback_environment(service),
                          "workspace": workspace_options()}), flush=True)
        done = threading.Event()

        def control() -> None:
            for line in sys.stdin:
                if line.strip():
                    try:
                        answer = _command(service, line)
                    except (ValueError, KeyError) as exc:
                        answer = {"error": f"{type(exc).__name__}: {exc}"}
                    print(json.dumps(answer), flush=True)
            done.set()

        threading.Thread(target=control, daemon=True).start()
        done.wait(args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
