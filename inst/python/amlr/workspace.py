"""Which Azure ML workspace, and how to sign in to it.

One source of truth for both Azure ML backends and for R's ``aml_workspace()``:

* :func:`resolve` turns what the user gave (ids, a config file, nothing) into a
  :class:`WorkspaceInfo`. With no ids it finds ``config.json`` walking up from
  the working directory in the order ``Workspace.from_config`` uses
  (``.azureml/config.json``, then ``aml_config/config.json``, then
  ``config.json``, each searched up to the file-system root).
* :func:`classic_auth` / :func:`classic_workspace` build azureml-core objects
  (classic backend); :func:`credential` builds an azure-identity credential
  (v2 backend). Both SDKs are imported inside those functions only.

Secrets never live in a :class:`WorkspaceInfo`: a service principal's secret is
read from ``AZURE_CLIENT_SECRET`` at the moment an SDK object needs it, so
nothing that serializes a workspace (registry rows, request JSON, printed
objects) can leak it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

from .errors import Credentials, WorkspaceConfig

AUTH_MODES = ("default", "service_principal", "cli", "interactive", "managed_identity")
TENANT_ENV = "AZURE_TENANT_ID"
CLIENT_ENV = "AZURE_CLIENT_ID"
SECRET_ENV = "AZURE_CLIENT_SECRET"
CONFIG_FILE = "config.json"
# The search order of azureml-core's Workspace.from_config: each folder name is
# searched all the way up before the next one is tried.
CONFIG_DIRS: tuple[Optional[str], ...] = (".azureml", "aml_config", None)
ID_FIELDS = ("subscription_id", "resource_group", "workspace_name")
PORTAL = "https://ml.azure.com"


@dataclass(frozen=True)
class WorkspaceInfo:
    """A workspace and an auth mode; safe to print, log and store (no secret)."""

    subscription_id: str
    resource_group: str
    workspace_name: str
    auth: str = "default"
    tenant_id: Optional[str] = None
    client_id: Optional[str] = None
    config_path: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )


# -- finding the workspace -------------------------------------------------------


def find_config(start: str) -> Optional[str]:
    """The config file ``Workspace.from_config(start)`` would read, or None."""
    start = os.path.abspath(start)
    if os.path.isfile(start):
        return start
    for folder in CONFIG_DIRS:
        current = start
        while True:
            candidate = os.path.join(current, folder, CONFIG_FILE) if folder else os.path.join(current, CONFIG_FILE)
            if os.path.isfile(candidate):
                return candidate
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return None


def read_config(path: str) -> dict[str, Optional[str]]:
    """Ids from a workspace config file (the portal's download, or ``Scope`` form)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            raw = json.load(fh)
    except OSError as exc:
        raise WorkspaceConfig(
            f"Cannot read the workspace config file `{path}` ({exc.strerror or exc}).", field="config"
        ) from exc
    except ValueError as exc:
        raise WorkspaceConfig(
            f"The workspace config file `{path}` is not valid JSON ({exc}). Download it again from the "
            "Azure ML studio (workspace menu, top right: \"Download config file\").",
            field="config",
        ) from exc
    if not isinstance(raw, dict):
        raise WorkspaceConfig(
            f"The workspace config file `{path}` must hold a JSON object with subscription_id, "
            "resource_group and workspace_name.",
            field="config",
        )
    scope = raw.get("Scope") or raw.get("scope")
    if isinstance(scope, str) and scope:
        # /subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.MachineLearningServices/workspaces/<w>
        pieces = scope.strip("/").split("/")
        if len(pieces) < 8:
            raise WorkspaceConfig(
                f"The `Scope` in `{path}` is not a workspace resource id "
                "(/subscriptions/.../resourceGroups/.../providers/Microsoft.MachineLearningServices/workspaces/...).",
                field="config",
            )
        ids: dict[str, Any] = {"subscription_id": pieces[1], "resource_group": pieces[3], "workspace_name": pieces[7]}
    else:
        ids = {k: raw.get(k) for k in ID_FIELDS}
    missing = [k for k in ID_FIELDS if not isinstance(ids.get(k), str) or not ids[k].strip()]
    if missing:
        raise WorkspaceConfig(
            f"The workspace config file `{path}` lacks {', '.join(missing)}; it needs subscription_id, "
            "resource_group and workspace_name (each a non-empty string).",
            field="config",
        )
    tenant = raw.get("tenant_id")
    ids["tenant_id"] = tenant if isinstance(tenant, str) and tenant else None
    return {k: (v.strip() if isinstance(v, str) else v) for k, v in ids.items()}


def _text(spec: Mapping[str, Any], key: str) -> Optional[str]:
    value = spec.get(key)
    if isinstance(value, list) and len(value) == 1:  # R's length-one vectors
        value = value[0]
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WorkspaceConfig(f"`{key}` must be a string, not {type(value).__name__}.", field=key)
    return value.strip() or None


def resolve(spec: Optional[Mapping[str, Any]], *, cwd: Optional[str] = None,
            check_credentials: bool = True) -> WorkspaceInfo:
    """The workspace that ``spec`` means.

    ``spec`` keys (all optional): ``subscription_id``, ``resource_group``,
    ``workspace_name``, ``auth``, ``tenant_id``, ``client_id``, and ``config``
    (a config file, or a folder to search up from) or ``config_path`` (a file
    found earlier). Ids given explicitly win over those in the file, as in
    azureml-core. ``check_credentials`` makes a service principal without its
    tenant, client id or secret fail now rather than at the first SDK call.
    """
    spec = dict(spec or {})
    ids = {k: _text(spec, k) for k in ID_FIELDS}
    tenant_id = _text(spec, "tenant_id")
    config_path = _text(spec, "config_path")
    if not all(ids.values()):
        config = _text(spec, "config") or config_path
        here = cwd or os.getcwd()
        start = os.path.abspath(os.path.join(here, os.path.expanduser(config))) if config else here
        if config and not os.path.exists(start):
            raise WorkspaceConfig(f"The workspace config `{start}` does not exist.", field="config")
        found = find_config(start)
        if found is None:
            raise WorkspaceConfig(
                f"No workspace config file found: looked for .azureml/config.json, aml_config/config.json and "
                f"config.json in `{start}` and its parent folders. Download config.json from the Azure ML studio "
                "(workspace menu, top right) into your project, or pass subscription_id, resource_group and "
                "workspace_name to aml_workspace().",
                field="config",
            )
        from_file = read_config(found)
        ids = {k: ids[k] or from_file[k] for k in ID_FIELDS}
        tenant_id = tenant_id or from_file.get("tenant_id")
        config_path = found
    auth = _text(spec, "auth") or "default"
    if auth not in AUTH_MODES:
        raise WorkspaceConfig(f"Unknown auth `{auth}`; use one of: {', '.join(AUTH_MODES)}.", field="auth")
    client_id = _text(spec, "client_id")
    if auth == "service_principal":
        tenant_id = tenant_id or _env(TENANT_ENV)
        client_id = client_id or _env(CLIENT_ENV)
    info = WorkspaceInfo(
        subscription_id=ids["subscription_id"] or "",
        resource_group=ids["resource_group"] or "",
        workspace_name=ids["workspace_name"] or "",
        auth=auth,
        tenant_id=tenant_id,
        client_id=client_id,
        config_path=config_path,
    )
    if check_credentials and auth == "service_principal":
        service_principal(info)
    return info


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None


# -- credentials --------------------------------------------------------------------


def service_principal(info: WorkspaceInfo) -> tuple[str, str, str]:
    """(tenant id, client id, secret) for a service principal, or a Credentials error.

    The error names the variable to set, never a value.
    """
    tenant = info.tenant_id or _env(TENANT_ENV)
    client = info.client_id or _env(CLIENT_ENV)
    secret = os.environ.get(SECRET_ENV) or None
    missing = [name for name, value in ((TENANT_ENV, tenant), (CLIENT_ENV, client), (SECRET_ENV, secret)) if not value]
    if missing:
        raise Credentials(
            f"Service principal sign-in needs {', '.join(missing)}: set "
            f"{'it' if len(missing) == 1 else 'them'} in the environment (e.g. in ~/.Renviron), or pass "
            "tenant_id, client_id and client_secret to aml_workspace().",
            data={"missing": missing},
        )
    assert tenant and client and secret
    return tenant, client, secret


def uses_service_principal(info: WorkspaceInfo) -> bool:
    """``auth = "service_principal"``, or ``"default"`` with all three variables set.

    The second case mirrors azure-identity's EnvironmentCredential, which
    DefaultAzureCredential tries first, so both SDK paths pick the same identity.
    """
    if info.auth == "service_principal":
        return True
    if info.auth != "default":
        return False
    tenant = info.tenant_id or _env(TENANT_ENV)
    client = info.client_id or _env(CLIENT_ENV)
    return bool(tenant and client and os.environ.get(SECRET_ENV))


def classic_auth(info: WorkspaceInfo) -> Any:
    """An azureml-core authentication object for ``info.auth``.

    ``"default"`` and ``"cli"`` go through the same azure-identity credential
    as the v2 backend (:func:`credential`), so both backends sign in as the
    same identity: ``"default"`` never prompts (a prompt from a ``python -m
    amlr`` subprocess would wait unseen), and azureml-core's own
    AzureCliAuthentication would need the whole azure-cli Python package next
    to amlr, where AzureCliCredential only runs the ``az`` program.
    ``"interactive"`` is azureml-core's InteractiveLoginAuthentication.
    """
    from azureml.core import authentication as aml_auth

    if uses_service_principal(info):
        tenant, client, secret = service_principal(info)
        return aml_auth.ServicePrincipalAuthentication(
            tenant_id=tenant, service_principal_id=client, service_principal_password=secret
        )
    if info.auth == "managed_identity":
        config = {"client_id": info.client_id} if info.client_id else None
        return aml_auth.MsiAuthentication(identity_config=config)
    if info.auth == "interactive":
        return aml_auth.InteractiveLoginAuthentication(tenant_id=info.tenant_id)
    return token_authentication(credential(info))


def token_authentication(cred: Any) -> Any:
    """azureml-core authentication backed by an azure-identity credential."""
    from azureml.core.authentication import TokenAuthentication

    def get_token_for_audience(resource: str) -> str:
        scope = resource if resource.endswith("/.default") else resource.rstrip("/") + "/.default"
        return cred.get_token(scope).token

    return TokenAuthentication(get_token_for_audience)


def classic_workspace(info: WorkspaceInfo) -> Any:
    """``azureml.core.Workspace`` for ``info`` (contacts Azure to check it exists)."""
    from azureml.core import Workspace

    return Workspace(
        subscription_id=info.subscription_id,
        resource_group=info.resource_group,
        workspace_name=info.workspace_name,
        auth=classic_auth(info),
    )


def credential(info: WorkspaceInfo) -> Any:
    """An azure-identity credential for ``info.auth`` (for azure-ai-ml's MLClient)."""
    from azure import identity

    if uses_service_principal(info):
        tenant, client, secret = service_principal(info)
        return identity.ClientSecretCredential(tenant_id=tenant, client_id=client, client_secret=secret)
    tenant_kw = {"tenant_id": info.tenant_id} if info.tenant_id else {}
    if info.auth == "cli":
        return identity.AzureCliCredential(**tenant_kw)
    if info.auth == "interactive":
        return identity.InteractiveBrowserCredential(**tenant_kw)
    if info.auth == "managed_identity":
        return identity.ManagedIdentityCredential(**({"client_id": info.client_id} if info.client_id else {}))
    if info.client_id:
        return identity.DefaultAzureCredential(managed_identity_client_id=info.client_id)
    return identity.DefaultAzureCredential()


# -- links ---------------------------------------------------------------------------


def _wsid(info: WorkspaceInfo) -> str:
    wsid = (
        f"wsid=/subscriptions/{info.subscription_id}/resourcegroups/{info.resource_group}"
        f"/workspaces/{info.workspace_name}"
    )
    return wsid + (f"&tid={info.tenant_id}" if info.tenant_id else "")


def portal_url(info: WorkspaceInfo, run_id: Optional[str] = None) -> str:
    """Azure ML studio link to the workspace, or to one run (job) in it."""
    if run_id:
        return f"{PORTAL}/runs/{run_id}?{_wsid(info)}"
    return f"{PORTAL}/?{_wsid(info)}"


def experiment_url(info: WorkspaceInfo, experiment: str) -> str:
    return f"{PORTAL}/experiments/{experiment}?{_wsid(info)}"


def from_json(data: Optional[Mapping[str, Any]]) -> WorkspaceInfo:
    """A :class:`WorkspaceInfo` from a stored dict (registry row), without any lookup."""
    data = dict(data or {})
    known = {k: data[k] for k in WorkspaceInfo.__dataclass_fields__ if k in data}
    return WorkspaceInfo(**known)


# -- bridge ---------------------------------------------------------------------------


def workspace_resolve(params: dict[str, Any]) -> dict[str, Any]:
    """R's ``aml_workspace()``: resolve ids and auth; no network, no secret in the answer."""
    spec = params.get("workspace") or {}
    if not isinstance(spec, dict):
        raise WorkspaceConfig("`workspace` must be an object of ids (from aml_workspace()).", field="workspace")
    return resolve(spec, cwd=params.get("cwd") or None).to_json()
