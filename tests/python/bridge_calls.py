"""Calling the bridge in-process, as R's reticulate transport does.

Shared by the backend tests: one request in, the result out (or the error
dict, for tests that expect one).
"""
from __future__ import annotations

import json
from typing import Any

from amlr import api


def call(home: Any, method: str, **params: Any) -> Any:
    """The method's result; a bridge error fails the test with the error shown."""
    params["home"] = str(home)
    out = json.loads(api.handle_json(json.dumps({"method": method, "params": params})))
    if "error" in out:
        raise AssertionError(out["error"])
    return out["result"]


def call_error(home: Any, method: str, **params: Any) -> dict[str, Any]:
    """The error dict of a call that must fail."""
    params["home"] = str(home)
    out = json.loads(api.handle_json(json.dumps({"method": method, "params": params})))
    assert "error" in out, out
    return out["error"]


def wait_run(home: Any, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a run's status until it ends; fail the test (with the last status) if it does not in time."""
    import time

    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = call(home, "status", run=run_id)
        if run["status"] in ("Completed", "Failed", "Canceled"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in {timeout:g}s: {run}")
