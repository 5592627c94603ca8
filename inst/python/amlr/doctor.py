"""Python-side checks for ``amlr_doctor()``: the interpreter and each backend's SDK.

The checks only *look* for the SDKs (``importlib.util.find_spec`` and the
installed distribution's metadata) and never import them: importing
azureml-core or azure-ai-ml takes seconds, and the doctor must stay quick.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .errors import AmlrError, BadRequest

MIN_PYTHON = (3, 9)

# backend -> (distribution on PyPI, a module it provides). The local backend
# needs only the standard library; sqlite3 is listed because some minimal
# Python builds leave its C extension out.
BACKEND_PACKAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "local": (("sqlite3", "_sqlite3"),),
    "azureml": (
        ("azureml-core", "azureml.core"),
        ("azureml-pipeline-core", "azureml.pipeline.core"),
        ("azureml-pipeline-steps", "azureml.pipeline.steps"),
    ),
    "azureml_v2": (
        ("azure-ai-ml", "azure.ai.ml"),
        ("azure-identity", "azure.identity"),
    ),
}

# inst/python/, where requirements-<backend>.txt live next to the package.
REQUIREMENTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIN_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


@dataclass
class PackageCheck:
    package: str
    module: str
    found: bool
    version: Optional[str]
    pinned: Optional[str]


def module_available(module: str) -> bool:
    """True when ``module`` can be imported, without importing it.

    ``find_spec`` on a dotted name imports the parent packages; for the Azure
    SDKs those are namespace packages, which cost nothing.
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def distribution_version(package: str) -> Optional[str]:
    if package == "sqlite3":
        if not module_available("_sqlite3"):
            return None
        import sqlite3  # stdlib and cheap; its version is the SQLite library's

        return sqlite3.sqlite_version
    # Imported here: importlib.metadata is slow to import, and every bridge call imports this module.
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirements_file(backend: str) -> Optional[str]:
    path = os.path.join(REQUIREMENTS_DIR, f"requirements-{backend}.txt")
    return path if os.path.isfile(path) else None


def pinned_versions(backend: str) -> dict[str, str]:
    """``name==version`` pins of the backend's requirements file, by lower-case name."""
    path = requirements_file(backend)
    if path is None:
        return {}
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            match = PIN_RE.match(line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def check_backend(backend: str) -> dict[str, Any]:
    pins = pinned_versions(backend)
    packages = [
        PackageCheck(
            package=package,
            module=module,
            found=module_available(module),
            version=distribution_version(package),
            pinned=pins.get(package.lower()),
        )
        for package, module in BACKEND_PACKAGES[backend]
    ]
    return {
        "backend": backend,
        "ready": all(p.found for p in packages),
        "packages": [asdict(p) for p in packages],
        "requirements": requirements_file(backend),
    }


def workspace_config(cwd: str) -> dict[str, Any]:
    """The config file the Azure ML backends would read from ``cwd``, and whether it holds a workspace.

    Uses the backends' own search (amlr.workspace), so the doctor cannot
    disagree with what a submit will find.
    """
    from . import workspace  # stdlib only, but needed by this one check

    path = workspace.find_config(cwd)
    if path is None:
        return {"path": None, "workspace_name": None, "error": None}
    try:
        ids = workspace.read_config(path)
    except AmlrError as exc:
        return {"path": path, "workspace_name": None, "error": exc.message}
    return {"path": path, "workspace_name": ids["workspace_name"], "error": None}


def python_info() -> dict[str, Any]:
    return {
        "version": sys.version.split()[0],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "venv": sys.prefix != sys.base_prefix,
        "version_ok": sys.version_info[:2] >= MIN_PYTHON,
    }


def doctor(params: dict[str, Any]) -> dict[str, Any]:
    """The interpreter, per backend whether its SDK is installed (and which version),
    and the workspace config found from ``params["cwd"]``."""
    backends = params.get("backends") or list(BACKEND_PACKAGES)
    if isinstance(backends, str):
        backends = [backends]
    unknown = [b for b in backends if b not in BACKEND_PACKAGES]
    if unknown:
        raise BadRequest(
            f"Unknown backend `{unknown[0]}`; known: {', '.join(BACKEND_PACKAGES)}.", field="backends"
        )
    cwd = params.get("cwd") or os.getcwd()
    return {
        "python": python_info(),
        "backends": [check_backend(b) for b in backends],
        "workspace_config": workspace_config(cwd),
    }
