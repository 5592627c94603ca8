"""No secret is printed: the three redactions (bootstrapper, classic backend, v2 backend) on real inputs.

Each uses real exception classes (azure-core's, the classic SDK's path through
``_as_remote_failure``) carrying the values of real secret variables, above
all ``AZURE_CLIENT_SECRET`` (the service principal's secret amlr documents).
"""
from __future__ import annotations

import pytest

from amlr import stepmetrics
from amlr.backends import azureml, azureml_v2
from amlr.errors import AmlrError

CLIENT_SECRET = "Cl1ent~Secret.value-do-not-print"
CLIENT_ID = "00000000-1111-2222-3333-444444444444"
REGISTRY_PASSWORD = "Reg1stry-Pa55word"
GH_TOKEN = "ghp_tokenvalue123"
STORAGE_KEY = "st0rage/key+value=="


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MYACR_PASSWORD", REGISTRY_PASSWORD)
    monkeypatch.setenv("GITHUB_TOKEN", GH_TOKEN)
    monkeypatch.setenv("AZURE_STORAGE_KEY", STORAGE_KEY)
    monkeypatch.setenv("SHORT_SECRET", "abc")  # too short to redact without mangling ordinary text
    monkeypatch.setenv("FOUR_SECRET", "wxyz")


ALL = (CLIENT_SECRET, REGISTRY_PASSWORD, GH_TOKEN, STORAGE_KEY)


def _message(*values: str) -> str:
    return "failed: " + " | ".join(values)


# -- the v2 backend ------------------------------------------------------------------------------

def test_v2_redacts_every_secret_suffix(secrets_env):
    text = azureml_v2.redact(_message(*ALL, CLIENT_ID, "abc", "wxyz"))
    assert text == "failed: *** | *** | *** | *** | " + CLIENT_ID + " | abc | ***"
    for suffix in ("SECRET", "PASSWORD", "TOKEN", "KEY"):
        assert suffix in azureml_v2.SECRET_NAME_SUFFIXES


def test_v2_lowercase_variable_names_count_too(monkeypatch):
    monkeypatch.setenv("my_api_token", "lower-case-token")
    assert azureml_v2.redact("got lower-case-token") == "got ***"


def test_v2_sdk_errors_do_not_quote_the_client_secret(secrets_env):
    from azure.core import exceptions as core

    err = azureml_v2.translate_error(
        core.ClientAuthenticationError(f"AADSTS7000215: Invalid client secret {CLIENT_SECRET} for {CLIENT_ID}"),
        "connecting")
    assert err is not None and err.kind == "credentials"
    assert CLIENT_SECRET not in err.message
    assert f"Azure said: AADSTS7000215: Invalid client secret *** for {CLIENT_ID}" in err.message
    for cls in (core.ServiceRequestError, core.ResourceNotFoundError, core.HttpResponseError):
        err = azureml_v2.translate_error(cls(f"token {GH_TOKEN} key {STORAGE_KEY}"), "x")
        assert err is not None and GH_TOKEN not in err.message and STORAGE_KEY not in err.message
        assert "token *** key ***" in err.message


def test_v2_detail_is_one_line_and_capped(secrets_env):
    long = "x" * 900 + " " + CLIENT_SECRET
    detail = azureml_v2._detail(RuntimeError(long))
    assert detail == "x" * 800 + " ..."
    assert azureml_v2._detail(RuntimeError(f"a\n  b\t{CLIENT_SECRET}")) == "a b ***"
    assert azureml_v2._detail(RuntimeError("")) == "RuntimeError"
    assert azureml_v2._detail(RuntimeError("y" * 800)) == "y" * 800


def test_v2_azure_call_translates_and_redacts(secrets_env):
    from azure.core import exceptions as core

    with pytest.raises(AmlrError) as caught, azureml_v2.azure_call("submitting"):
        raise core.HttpResponseError(f"bad registry password {REGISTRY_PASSWORD}")
    assert REGISTRY_PASSWORD not in caught.value.message and "while submitting" in caught.value.message
    with pytest.raises(ZeroDivisionError), azureml_v2.azure_call("x"):  # not an SDK error: left alone
        raise ZeroDivisionError()


# -- the classic backend -------------------------------------------------------------------------

def test_classic_remote_failure_redacts_the_client_secret_and_given_secrets(secrets_env):
    err = azureml._remote_failure("submit the pipeline", RuntimeError(f"auth {CLIENT_SECRET} / {REGISTRY_PASSWORD}"),
                                  [REGISTRY_PASSWORD])
    assert err.message == "Azure ML could not submit the pipeline: RuntimeError: auth *** / ***"
    assert azureml._scrub("a-b-c a-b-c", ["a-b-c"]) == "*** ***"
    assert azureml._secrets() == [CLIENT_SECRET]


def test_classic_secrets_skip_short_and_missing(monkeypatch):
    monkeypatch.delenv("AZURE_CLIENT_SECRET", raising=False)
    assert azureml._secrets() == []
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "abc")
    assert azureml._secrets() == []
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "abcd")
    assert azureml._secrets() == ["abcd"]


def test_classic_as_remote_failure(secrets_env):
    with pytest.raises(AmlrError) as caught, azureml._as_remote_failure("create the environment", [REGISTRY_PASSWORD]):
        raise ValueError(f"docker login -p {REGISTRY_PASSWORD} with sp {CLIENT_SECRET}")
    assert caught.value.message == ("Azure ML could not create the environment: "
                                    "ValueError: docker login -p *** with sp ***")


# -- the bootstrapper (inside the job) -------------------------------------------------------------

def test_bootstrapper_redacts_secret_variables_and_url_userinfo():
    env = {"AZURE_CLIENT_SECRET": CLIENT_SECRET, "AZURE_CLIENT_ID": CLIENT_ID, "DB_PASSWD": "hunter22",
           "MY_CREDENTIAL": "cred-value", "SQL_CONN": "Server=x;Pwd=y", "api_key": "lowerkey", "X_TOKEN": "tok1",
           "SHORT_TOKEN": "abc", "EMPTY_KEY": ""}
    text = (f"mlflow to https://user:pa55@host/path failed: {CLIENT_SECRET} {CLIENT_ID} hunter22 cred-value "
            "Server=x;Pwd=y lowerkey tok1 abc")
    assert stepmetrics.redact(text, env) == (
        f"mlflow to https://***@host/path failed: *** {CLIENT_ID} *** *** *** *** *** abc")


def test_bootstrapper_redact_reads_the_process_environment_and_caps(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    assert stepmetrics.redact(f"x  \n {CLIENT_SECRET}") == "x ***"
    assert stepmetrics.redact("z" * 500, {}) == "z" * 300
    assert stepmetrics.redact("https://a@b/ and http://c:d@e/", {}) == "https://***@b/ and http://***@e/"


def test_classic_secrets_include_the_registry_passwords_of_the_plan(tmp_path, monkeypatch):
    from amlr.spec import validate

    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.R").write_text("cat(1)\n")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("MYACR_PASSWORD", REGISTRY_PASSWORD)
    spec = {"name": "hello", "compute": "cpu",
            "environment": {"image": "myacr.azurecr.io/amlr/r:4.3", "registry": {
                "address": "myacr.azurecr.io", "username": "amlr-pull", "password_env": "MYACR_PASSWORD"}},
            "steps": [{"name": "hello", "script": "hello.R", "source_dir": str(src)}]}
    plan = azureml.plan_pipeline(validate(spec), str(tmp_path / "run"))
    assert azureml._secrets(plan) == [CLIENT_SECRET, REGISTRY_PASSWORD]
    err = azureml._remote_failure("build the image", RuntimeError(f"login {REGISTRY_PASSWORD}"), azureml._secrets(plan))
    assert err.message == "Azure ML could not build the image: RuntimeError: login ***"
    monkeypatch.delenv("MYACR_PASSWORD")
    assert azureml._secrets(plan) == [CLIENT_SECRET]
