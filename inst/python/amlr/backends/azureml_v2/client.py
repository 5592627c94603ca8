"""Talking to Azure ML: the MLClient, loopback test options, secret redaction, error translation."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, Mapping, Optional

from ...errors import (AmlrError, AzureRequestFailed, Credentials)
from .plan import _sdk


# -- talking to Azure ML ---------------------------------------------------------------------


def connect(info: Any) -> Any:
    """``MLClient`` for a :class:`amlr.workspace.WorkspaceInfo` (no network until the first call)."""
    sdk = _sdk()
    from ...workspace import credential

    return sdk.MLClient(
        credential(info),
        subscription_id=info.subscription_id,
        resource_group_name=info.resource_group,
        workspace_name=info.workspace_name,
        show_progress=False,
        **loopback_options(),
    )


DEV_URL_ENV = "AZUREML_DEV_URL_MFE"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _is_loopback_http(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def loopback_options() -> dict[str, Any]:
    """Test hook: plain HTTP to a loopback Azure ML service (the test suite's), and nowhere else.

    azure-ai-ml sends its calls to ``AZUREML_DEV_URL_MFE`` when that is set
    (its own developer override), but azure-core refuses to put a bearer token
    on a non-HTTPS request. Only when the override is an ``http://`` loopback
    address does the client get a policy that lifts that refusal, and then
    only for requests whose own URL is ``http://`` loopback, and redirects
    are not followed (a redirect elsewhere would keep the lifted check): a
    token never travels unencrypted off the machine. Without the variable: no
    options.
    """
    if not _is_loopback_http(os.environ.get(DEV_URL_ENV, "")):
        return {}
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class LoopbackHttp(SansIOHTTPPolicy):
        def on_request(self, request: Any) -> None:
            if _is_loopback_http(request.http_request.url):
                request.context["enforce_https"] = False

    return {"per_call_policies": [LoopbackHttp()], "permit_redirects": False}


SECRET_NAME_SUFFIXES = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def _secret_values() -> list[str]:
    """Values of environment variables that hold secrets (client secret, registry passwords, ...)."""
    return [v for k, v in os.environ.items() if k.upper().endswith(SECRET_NAME_SUFFIXES) and len(v) >= 4]


def redact(text: str) -> str:
    for secret in _secret_values():
        text = text.replace(secret, "***")
    return text


def _detail(exc: BaseException, limit: int = 800) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(text if len(text) <= limit else text[:limit] + " ...")


def translate_error(exc: BaseException, what: str) -> Optional[AmlrError]:
    """An Azure SDK exception as a classed amlr error, or None if it is not one."""
    from azure.core import exceptions as core

    said = f" Azure said: {_detail(exc)}"
    if isinstance(exc, core.ClientAuthenticationError):
        return Credentials(
            f"Signing in to Azure failed while {what}. Sign in with `az login`, or set AZURE_TENANT_ID, "
            "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service principal (see aml_workspace())." + said
        )
    if isinstance(exc, core.ServiceRequestError):
        return AzureRequestFailed(f"Could not reach Azure ML while {what}; check the network and proxy." + said)
    if isinstance(exc, core.ResourceNotFoundError):
        return AzureRequestFailed(f"Azure ML found no such resource while {what}." + said)
    if isinstance(exc, core.HttpResponseError):
        return AzureRequestFailed(f"Azure ML answered with an error while {what}." + said)
    try:
        from azure.ai.ml.exceptions import MlException
    except ImportError:  # pragma: no cover - azure-ai-ml is there when azure-core is
        return None
    if isinstance(exc, MlException):
        return AzureRequestFailed(f"azure-ai-ml failed while {what}: {_detail(exc)}")
    mlflow_errors = sys.modules.get("mlflow.exceptions")  # loaded only if run_metrics() imported MLflow
    if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException):
        return AzureRequestFailed(f"Azure ML's MLflow tracking answered with an error while {what}: {_detail(exc)}")
    return None


@contextlib.contextmanager
def azure_call(what: str) -> Iterator[None]:
    """Turn Azure SDK failures inside the block into classed amlr errors."""
    try:
        yield
    except AmlrError:
        raise
    except Exception as exc:
        translated = translate_error(exc, what)
        if translated is None:
            raise
        raise translated from None


def _workspace_info(run: Mapping[str, Any]) -> Any:
    from ...workspace import from_json

    if not run.get("workspace"):
        raise AmlrError(f"Run `{run['id']}` has no workspace recorded; it was not submitted by this backend.")
    return from_json(run["workspace"])


def client_for(run: Mapping[str, Any]) -> Any:
    return connect(_workspace_info(run))
