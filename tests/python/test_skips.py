"""The skip check in conftest.py: a session with an undocumented skip fails; documented ones pass."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _session(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess:
    shutil.copy2(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text("import pytest\n\n" + body, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    import os

    full = {k: v for k, v in os.environ.items() if k != "AMLR_TEST_ALLOW_SKIPS"}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, env=full, timeout=120)


def test_an_undocumented_skip_fails_the_session(tmp_path):
    res = _session(tmp_path, "def test_a():\n    pytest.skip('the SDK is missing')\n\n"
                             "def test_b():\n    pass\n")
    assert res.returncode == 1, res.stdout
    assert "tests skipped for an undocumented reason" in res.stdout
    assert "test_x.py::test_a: the SDK is missing" in res.stdout


def test_a_module_level_importorskip_fails_the_session(tmp_path):
    res = _session(tmp_path, "pytest.importorskip('amlr_no_such_module')\n\ndef test_a():\n    pass\n")
    assert res.returncode == 1, res.stdout
    assert "amlr_no_such_module" in res.stdout


def test_documented_skips_pass(tmp_path):
    res = _session(tmp_path, "def test_a():\n    pytest.skip('Rscript is not on the PATH')\n\n"
                             "@pytest.mark.skipif(True, reason='set AMLR_TEST_WORKSPACE_CONFIG to a config.json')\n"
                             "def test_b():\n    pass\n\n"
                             "def test_c():\n    pytest.skip('POSIX signals')\n")
    assert res.returncode == 0, res.stdout
    assert "3 skipped" in res.stdout and "undocumented" not in res.stdout


def test_the_opt_out_reports_without_failing(tmp_path):
    res = _session(tmp_path, "def test_a():\n    pytest.skip('flaky')\n", AMLR_TEST_ALLOW_SKIPS="1")
    assert res.returncode == 0, res.stdout
    assert "test_x.py::test_a: flaky" in res.stdout
