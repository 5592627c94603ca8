"""The bridge as R's system2 transport uses it: ``python -m amlr call``, real JSON
on stdin, one JSON answer on stdout; and the ``doctor`` method behind
``amlr_doctor()``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

import amlr
from amlr import api, doctor

CYCLE_SPEC = {
    "name": "cycle",
    "steps": [
        {"name": "a", "script": "a.R", "source_dir": "/tmp", "outputs": ["out"],
         "inputs": {"x": {"type": "step_output", "step": "b", "output": "out"}}},
        {"name": "b", "script": "b.R", "source_dir": "/tmp", "outputs": ["out"],
         "inputs": {"x": {"type": "step_output", "step": "a", "output": "out"}}},
    ],
}


def run_amlr(args: list[str], env: dict[str, str], stdin: Optional[str] = None,
             cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amlr", *args],
        input=None if stdin is None else stdin.encode("utf-8"),
        capture_output=True, env=env, cwd=cwd, timeout=60,
    )


def call(env: dict[str, str], request: Any, raw: bool = False) -> tuple[dict[str, Any], subprocess.CompletedProcess]:
    """One bridge call; asserts the invariants of every answer (exit 0, exactly one JSON line)."""
    proc = run_amlr(["call"], env, stdin=request if raw else json.dumps(request))
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("utf-8")
    assert out.endswith("\n") and out.count("\n") == 1, out
    return json.loads(out), proc


def test_ping_answers_with_versions_and_the_home_it_was_given(bridge_env, amlr_home):
    answer, _ = call(bridge_env, {"method": "ping", "params": {"home": str(amlr_home)}})
    result = answer["result"]
    assert result["amlr"] == amlr.__version__
    assert result["python"] == sys.version.split()[0]
    assert result["home"] == str(amlr_home)


def test_subprocess_and_in_process_answers_are_the_same_bytes(bridge_env, amlr_home):
    request = json.dumps({"method": "validate", "params": {"spec": CYCLE_SPEC, "check_paths": False}})
    proc = run_amlr(["call"], bridge_env, stdin=request)
    assert proc.stdout.decode("utf-8").rstrip("\n") == api.handle_json(request)


def test_unknown_method_is_a_bad_request_naming_it_and_the_known_ones(bridge_env):
    answer, _ = call(bridge_env, {"method": "launch_rockets", "params": {}})
    error = answer["error"]
    assert error["class"] == "bad_request"
    assert "`launch_rockets`" in error["message"]
    assert "ping" in error["message"] and "doctor" in error["message"]
    assert "result" not in answer


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"method": "ping", ', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "A request is a JSON object"),
        ('{"params": {}}', "A request is a JSON object"),
        ('{"method": "ping", "params": [1]}', "`params` must be a JSON object"),
    ],
)
def test_malformed_requests_are_bad_requests(bridge_env, text, says):
    answer, proc = call(bridge_env, text, raw=True)
    assert answer["error"]["class"] == "bad_request"
    assert says in answer["error"]["message"]
    assert b"Traceback" not in proc.stderr


def test_validation_error_has_class_message_and_field(bridge_env):
    answer, _ = call(bridge_env, {"method": "validate", "params": {"spec": CYCLE_SPEC, "check_paths": False}})
    error = answer["error"]
    assert set(error) == {"class", "message", "field"}
    assert error["class"] == "invalid_spec"
    assert "cycle" in error["message"] and "a -> b -> a" in error["message"]
    assert error["field"] == "steps"

    spec = json.loads(json.dumps(CYCLE_SPEC))
    spec["steps"][0]["inputs"]["x"]["step"] = "nope"
    answer, _ = call(bridge_env, {"method": "validate", "params": {"spec": spec, "check_paths": False}})
    assert answer["error"]["field"] == "steps[a].inputs.x"
    assert "no step `nope`" in answer["error"]["message"]


def write_sitecustomize(folder: Path, code: str, env: dict[str, str]) -> dict[str, str]:
    """Run ``code`` at start-up of the subprocess, after inst/python is on sys.path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(code, encoding="utf-8")
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(folder)])
    return env


NOISY_METHODS = '''
import sys
from amlr.api import method

@method("test_noisy")
def _noisy(params):
    print("an SDK chatting on stdout")
    sys.stdout.write("more chatter without a newline")
    return {"answer": 42}

@method("test_raise")
def _raise(params):
    print("about to fail")
    raise KeyError("missing_key")
'''


def test_stdout_holds_only_the_json_even_when_a_method_prints(bridge_env, tmp_path):
    env = write_sitecustomize(tmp_path / "site", NOISY_METHODS, bridge_env)
    answer, proc = call(env, {"method": "test_noisy", "params": {}})
    assert answer == {"result": {"answer": 42}}
    stderr = proc.stderr.decode()
    assert "an SDK chatting on stdout" in stderr
    assert "more chatter without a newline" in stderr


def test_an_unexpected_exception_is_a_python_error_with_the_traceback_apart(bridge_env, tmp_path):
    env = write_sitecustomize(tmp_path / "site", NOISY_METHODS, bridge_env)
    answer, proc = call(env, {"method": "test_raise", "params": {}})
    error = answer["error"]
    assert error["class"] == "python"
    assert error["message"].startswith("Unexpected Python error: KeyError: 'missing_key'. This is a bug in amlr")
    assert "report it" in error["message"]
    assert "Traceback" not in error["message"]
    assert error["traceback"].startswith("Traceback (most recent call last)")
    assert "_raise" in error["traceback"]
    assert "about to fail" in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_help_and_version(bridge_env):
    proc = run_amlr(["--help"], bridge_env)
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert out.startswith("usage: python -m amlr")
    assert "call" in out and "runner" in out

    proc = run_amlr(["--version"], bridge_env)
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == amlr.__version__


# -- the doctor method -----------------------------------------------------------


def doctor_call(**params: Any) -> dict[str, Any]:
    return json.loads(api.handle_json(json.dumps({"method": "doctor", "params": params})))


def test_doctor_reports_the_interpreter_and_every_backend(tmp_path):
    result = doctor_call(cwd=str(tmp_path))["result"]
    assert result["python"]["version"] == sys.version.split()[0]
    assert result["python"]["executable"] == sys.executable
    assert result["python"]["venv"] == (sys.prefix != sys.base_prefix)
    assert [b["backend"] for b in result["backends"]] == ["local", "azureml", "azureml_v2"]
    local = result["backends"][0]
    assert local["ready"] is True
    assert local["requirements"] is None
    for backend in result["backends"][1:]:
        assert backend["requirements"].endswith(f"requirements-{backend['backend']}.txt")
        assert backend["ready"] == all(p["found"] for p in backend["packages"])
        for package in backend["packages"]:
            # Each pin comes from the requirements file the installer uses.
            assert f"{package['package']}=={package['pinned']}" in Path(backend["requirements"]).read_text()


def test_doctor_versions_agree_with_the_installed_distributions():
    import importlib.metadata

    report = doctor.check_backend("azureml_v2")
    for package in report["packages"]:
        try:
            expected: Optional[str] = importlib.metadata.version(package["package"])
        except importlib.metadata.PackageNotFoundError:
            expected = None
        assert package["version"] == expected
        assert package["found"] == (expected is not None)


def test_doctor_finds_modules_without_importing_them():
    assert doctor.module_available("json")
    assert not doctor.module_available("amlr_no_such_package.sub")
    assert not doctor.module_available("json.no_such_submodule")
    if not doctor.module_available("azure.ai.ml"):
        pytest.skip("azure-ai-ml is not installed in this interpreter")
    code = (
        "import json, sys\n"
        "from amlr import api\n"
        "api.handle_json(json.dumps({'method': 'doctor', 'params': {}}))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('azure.ai.ml', 'azureml.core', 'azure.identity')))))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(api.__file__).parent.parent))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == []


def test_doctor_finds_the_workspace_config_the_backends_would_use(tmp_path):
    project = tmp_path / "project" / "src"
    project.mkdir(parents=True)
    found = doctor_call(cwd=str(project))["result"]["workspace_config"]
    if found["path"] is not None:
        pytest.skip(f"a workspace config above the temp dir: {found['path']}")
    config = tmp_path / "project" / ".azureml" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"subscription_id": "0000", "resource_group": "rg", "workspace_name": "ws-py"}))
    found = doctor_call(cwd=str(project))["result"]["workspace_config"]
    assert found == {"path": str(config), "workspace_name": "ws-py", "error": None}

    config.write_text('{"subscription_id": "0000"}')
    found = doctor_call(cwd=str(project))["result"]["workspace_config"]
    assert found["path"] == str(config)
    assert "lacks resource_group, workspace_name" in found["error"]


def test_doctor_rejects_an_unknown_backend():
    error = doctor_call(backends=["local", "gpu_cluster"])["error"]
    assert error["class"] == "bad_request"
    assert error["field"] == "backends"
    assert "`gpu_cluster`" in error["message"]
    only = doctor_call(backends="local")["result"]["backends"]
    assert [b["backend"] for b in only] == ["local"]
