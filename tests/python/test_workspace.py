"""amlr.workspace: finding the workspace, signing in, and never leaking the secret."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

import pytest

PY_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "inst", "python")

from amlr import api  # noqa: E402
from amlr import workspace as ws  # noqa: E402
from amlr.errors import Credentials, WorkspaceConfig  # noqa: E402

SECRET = "s3cr3t-value-never-shown"
IDS = {"subscription_id": "00000000-aaaa-bbbb-cccc-000000000001", "resource_group": "rg-cfg",
       "workspace_name": "ws-cfg"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ws.TENANT_ENV, ws.CLIENT_ENV, ws.SECRET_ENV):
        monkeypatch.delenv(name, raising=False)
    # azureml-core asks ARM for cloud metadata unless the cloud is named.
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")


def write(path: Any, data: Any) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def call(method: str, **params: Any) -> dict[str, Any]:
    return json.loads(api.handle_json(json.dumps({"method": method, "params": params})))


# -- finding the config ------------------------------------------------------------------------


def test_config_is_found_walking_up_from_a_nested_folder(tmp_path):
    found = write(tmp_path / "project" / ".azureml" / "config.json", IDS)
    deep = tmp_path / "project" / "analysis" / "R"
    deep.mkdir(parents=True)
    info = ws.resolve(None, cwd=str(deep))
    assert (info.subscription_id, info.resource_group, info.workspace_name) == tuple(IDS.values())
    assert info.config_path == found and info.auth == "default"


def test_search_order_is_that_of_workspace_from_config(tmp_path):
    # .azureml/config.json anywhere up the tree wins over a plain config.json nearer by,
    # as azureml-core's Workspace.from_config decides.
    write(tmp_path / ".azureml" / "config.json", IDS)
    write(tmp_path / "sub" / "config.json", {**IDS, "workspace_name": "plain"})
    assert ws.find_config(str(tmp_path / "sub")) == str(tmp_path / ".azureml" / "config.json")
    write(tmp_path / "sub" / "aml_config" / "config.json", {**IDS, "workspace_name": "legacy"})
    assert ws.resolve(None, cwd=str(tmp_path / "sub")).workspace_name == "ws-cfg"
    os.remove(tmp_path / ".azureml" / "config.json")
    assert ws.resolve(None, cwd=str(tmp_path / "sub")).workspace_name == "legacy"


def test_scope_form_and_tenant_are_read(tmp_path):
    scope = ("/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices"
             "/workspaces/ws-1")
    path = write(tmp_path / "config.json", {"Scope": scope, "tenant_id": "tenant-9"})
    info = ws.resolve({"config": path})
    assert (info.subscription_id, info.resource_group, info.workspace_name, info.tenant_id) == (
        "sub-1", "rg-1", "ws-1", "tenant-9")


def test_config_argument_may_be_a_file_or_a_folder_to_search_from(tmp_path):
    path = write(tmp_path / "elsewhere" / "my-ws.json", IDS)
    assert ws.resolve({"config": path}).config_path == path
    assert ws.resolve({"config": str(tmp_path / "elsewhere" / "my-ws.json")}).workspace_name == "ws-cfg"
    write(tmp_path / "proj" / ".azureml" / "config.json", IDS)
    (tmp_path / "proj" / "deeper").mkdir()
    assert ws.resolve({"config": str(tmp_path / "proj" / "deeper")}).workspace_name == "ws-cfg"
    with pytest.raises(WorkspaceConfig) as err:
        ws.resolve({"config": str(tmp_path / "missing.json")})
    assert "missing.json" in err.value.message


def test_explicit_ids_need_no_file_and_win_over_the_file(tmp_path):
    info = ws.resolve({**IDS, "auth": "cli"}, cwd=str(tmp_path))
    assert info.config_path is None and info.workspace_name == "ws-cfg" and info.auth == "cli"
    write(tmp_path / "config.json", IDS)
    info = ws.resolve({"workspace_name": "other-ws"}, cwd=str(tmp_path))
    assert (info.resource_group, info.workspace_name) == ("rg-cfg", "other-ws")


def test_no_config_names_the_files_and_the_arguments(tmp_path):
    with pytest.raises(WorkspaceConfig) as err:
        ws.resolve(None, cwd=str(tmp_path))
    message = err.value.message
    assert ".azureml/config.json" in message and str(tmp_path) in message
    assert "subscription_id" in message and "workspace_name" in message
    assert err.value.kind == "workspace_config"


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"subscription_id": "s", "resource_group": "g"}), "lacks workspace_name"),
    (json.dumps({"subscription_id": "s", "resource_group": "", "workspace_name": "w"}), "lacks resource_group"),
    (json.dumps({"Scope": "/subscriptions/s"}), "not a workspace resource id"),
])
def test_malformed_config_is_a_classed_error_naming_the_file(tmp_path, content, expected):
    path = write(tmp_path / ".azureml" / "config.json", content)
    with pytest.raises(WorkspaceConfig) as err:
        ws.resolve(None, cwd=str(tmp_path))
    assert path in err.value.message and expected in err.value.message


def test_unknown_auth_is_refused():
    with pytest.raises(WorkspaceConfig) as err:
        ws.resolve({**IDS, "auth": "password"})
    assert "service_principal" in err.value.message and err.value.field == "auth"


# -- credentials ---------------------------------------------------------------------------------


def test_service_principal_names_the_missing_variables_not_values(monkeypatch):
    monkeypatch.setenv(ws.TENANT_ENV, "tenant-1")
    with pytest.raises(Credentials) as err:
        ws.resolve({**IDS, "auth": "service_principal"})
    assert err.value.data["missing"] == [ws.CLIENT_ENV, ws.SECRET_ENV]
    assert "AZURE_CLIENT_ID" in err.value.message and "tenant-1" not in err.value.message
    monkeypatch.setenv(ws.SECRET_ENV, SECRET)
    with pytest.raises(Credentials) as err:
        ws.resolve({**IDS, "auth": "service_principal"})
    assert err.value.data["missing"] == [ws.CLIENT_ENV] and SECRET not in err.value.message


def test_service_principal_ids_are_recorded_the_secret_never(monkeypatch):
    monkeypatch.setenv(ws.SECRET_ENV, SECRET)
    monkeypatch.setenv(ws.TENANT_ENV, "tenant-env")
    info = ws.resolve({**IDS, "auth": "service_principal", "client_id": "client-arg"})
    assert (info.tenant_id, info.client_id) == ("tenant-env", "client-arg")
    for text in (repr(info), json.dumps(info.to_json()), json.dumps(call("workspace_resolve", workspace={
            **IDS, "auth": "service_principal", "client_id": "client-arg"}))):
        assert SECRET not in text
    assert ws.service_principal(info) == ("tenant-env", "client-arg", SECRET)


def test_default_auth_is_a_service_principal_only_when_all_three_are_set(monkeypatch):
    info = ws.resolve(IDS)
    assert not ws.uses_service_principal(info)
    monkeypatch.setenv(ws.TENANT_ENV, "t")
    monkeypatch.setenv(ws.CLIENT_ENV, "c")
    assert not ws.uses_service_principal(info)
    monkeypatch.setenv(ws.SECRET_ENV, SECRET)
    assert ws.uses_service_principal(info)
    assert not ws.uses_service_principal(ws.resolve({**IDS, "auth": "cli"}))


def test_classic_auth_objects(monkeypatch):
    from azureml.core import authentication as aml_auth

    monkeypatch.setenv(ws.SECRET_ENV, SECRET)
    sp = ws.classic_auth(ws.resolve({**IDS, "auth": "service_principal", "tenant_id": "t", "client_id": "c"}))
    assert isinstance(sp, aml_auth.ServicePrincipalAuthentication)
    assert (sp._tenant_id, sp._service_principal_id, sp._service_principal_password) == ("t", "c", SECRET)
    monkeypatch.delenv(ws.SECRET_ENV)
    scopes: list[str] = []

    class RecordingCliCredential:  # the real one runs `az account get-access-token`
        def __init__(self, **kwargs: Any):
            self.kwargs = kwargs

        def get_token(self, scope: str) -> Any:
            scopes.append(scope)
            return SimpleNamespace(token=f"token-for-{scope}")

    from azure import identity

    monkeypatch.setattr(identity, "AzureCliCredential", RecordingCliCredential)
    cli = ws.classic_auth(ws.resolve({**IDS, "auth": "cli"}))
    assert isinstance(cli, aml_auth.TokenAuthentication)
    assert cli._get_arm_token() == "token-for-https://management.core.windows.net/.default"
    assert cli._get_token_for_audience("https://ml.azure.com/") == "token-for-https://ml.azure.com/.default"
    assert scopes == ["https://management.core.windows.net/.default", "https://ml.azure.com/.default"]
    msi = ws.classic_auth(ws.resolve({**IDS, "auth": "managed_identity", "client_id": "mi-1"}))
    assert isinstance(msi, aml_auth.MsiAuthentication) and msi._identity_config == {"client_id": "mi-1"}
    seen: list[dict[str, Any]] = []

    class RecordingInteractive:  # the real one signs in when constructed
        def __init__(self, **kwargs: Any):
            seen.append(kwargs)

    monkeypatch.setattr(aml_auth, "InteractiveLoginAuthentication", RecordingInteractive)
    assert isinstance(ws.classic_auth(ws.resolve({**IDS, "auth": "interactive", "tenant_id": "t-9"})),
                      RecordingInteractive)
    assert seen == [{"tenant_id": "t-9"}]
    # "default" never prompts: it is azure-identity's DefaultAzureCredential chain, as on the v2 backend.
    monkeypatch.setattr(identity, "DefaultAzureCredential", RecordingCliCredential)
    default = ws.classic_auth(ws.resolve(IDS))
    assert isinstance(default, aml_auth.TokenAuthentication)
    assert default._get_arm_token() == "token-for-https://management.core.windows.net/.default"


def test_credential_for_azure_ai_ml(monkeypatch):
    from azure import identity

    assert isinstance(ws.credential(ws.resolve(IDS)), identity.DefaultAzureCredential)
    assert isinstance(ws.credential(ws.resolve({**IDS, "auth": "cli"})), identity.AzureCliCredential)
    assert isinstance(ws.credential(ws.resolve({**IDS, "auth": "managed_identity", "client_id": "mi"})),
                      identity.ManagedIdentityCredential)
    assert isinstance(ws.credential(ws.resolve({**IDS, "auth": "interactive"})),
                      identity.InteractiveBrowserCredential)
    monkeypatch.setenv(ws.SECRET_ENV, SECRET)
    sp = ws.credential(ws.resolve({**IDS, "auth": "service_principal", "tenant_id": "t", "client_id": "c"}))
    assert isinstance(sp, identity.ClientSecretCredential)
    monkeypatch.delenv(ws.SECRET_ENV)
    with pytest.raises(Credentials):
        ws.credential(ws.resolve({**IDS, "auth": "service_principal", "tenant_id": "t", "client_id": "c"},
                                 check_credentials=False))


# -- links and the bridge ---------------------------------------------------------------------------


def test_portal_links():
    info = ws.resolve({**IDS, "tenant_id": "t-1"})
    assert ws.portal_url(info) == (
        "https://ml.azure.com/?wsid=/subscriptions/00000000-aaaa-bbbb-cccc-000000000001"
        "/resourcegroups/rg-cfg/workspaces/ws-cfg&tid=t-1")
    assert ws.portal_url(info, "run-1").startswith("https://ml.azure.com/runs/run-1?wsid=/subscriptions/")
    assert ws.experiment_url(info, "cars").startswith("https://ml.azure.com/experiments/cars?wsid=")
    assert info.arm_id.endswith("/providers/Microsoft.MachineLearningServices/workspaces/ws-cfg")


def test_stored_workspace_round_trips_without_a_lookup(tmp_path):
    info = ws.resolve({**IDS, "auth": "cli", "config_path": "/nowhere/config.json"}, cwd=str(tmp_path))
    assert ws.from_json(json.loads(json.dumps(info.to_json()))) == info


def test_bridge_method_resolves_from_the_given_folder(tmp_path):
    write(tmp_path / ".azureml" / "config.json", IDS)
    out = call("workspace_resolve", workspace={"auth": "cli"}, cwd=str(tmp_path))
    assert out["result"] == {**IDS, "auth": "cli", "tenant_id": None, "client_id": None,
                             "config_path": str(tmp_path / ".azureml" / "config.json")}
    err = call("workspace_resolve", workspace={"config": "nope.json"}, cwd=str(tmp_path))["error"]
    assert err["class"] == "workspace_config" and str(tmp_path / "nope.json") in err["message"]
