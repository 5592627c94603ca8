"""Shared set-up for amlr's pytest suite.

* ``inst/python`` goes first on ``sys.path`` (once), so ``import amlr`` is the
  package under test, not an installed copy.
* ``amlr_home``: a private AMLR_HOME per test, so no test touches a user's
  registry.
* ``requires_rscript`` (a marker) and ``rscript`` (a fixture giving the path):
  skip tests that start R when R is not installed.
* ``bridge_env``: the environment for a ``python -m amlr`` subprocess.
* ``run_unprivileged``: run one test as ``nobody`` when the suite runs as root
  (permission checks).
* The skip check: a session in which any test is skipped for a reason other
  than the documented ones (``DOCUMENTED_SKIPS``: no Rscript, no live-workspace
  credentials, another platform) fails, listing those tests. A test that
  always skips is a test that cannot fail.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO / "inst" / "python"

if not any(os.path.realpath(p) == os.path.realpath(PYTHON_DIR) for p in sys.path if p):
    sys.path.insert(0, str(PYTHON_DIR))

# The only reasons a test may skip under `make test` (regular expressions on the skip reason).
DOCUMENTED_SKIPS = (
    r"\bRscript\b.*\bnot (installed|on the PATH)\b|^needs R(script)?$",   # R is not installed
    r"\bAMLR_TEST_WORKSPACE_CONFIG\b",                                   # live tests: no workspace credentials
    r"^(POSIX signals|symlinks|exec bit|Linux process semantics.*)$",     # not this platform
)
_undocumented_skips: list[str] = []


def _note_skip(report: Any) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if not any(re.search(p, reason) for p in DOCUMENTED_SKIPS):
            _undocumented_skips.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)  # a module-level importorskip() skips the whole file


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _undocumented_skips and not os.environ.get("AMLR_TEST_ALLOW_SKIPS"):
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _undocumented_skips:
        terminalreporter.section("tests skipped for an undocumented reason (a test that skips cannot fail)")
        for line in _undocumented_skips:
            terminalreporter.write_line(line)
        terminalreporter.write_line("Fix the test or the machine; the documented reasons are DOCUMENTED_SKIPS in "
                                    "tests/python/conftest.py (AMLR_TEST_ALLOW_SKIPS=1 reports without failing).")


RSCRIPT = shutil.which("Rscript")
requires_rscript = pytest.mark.skipif(RSCRIPT is None, reason="Rscript is not on the PATH")


@pytest.fixture
def amlr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh AMLR_HOME for this test, set in the environment."""
    home = tmp_path / "amlr-home"
    home.mkdir()
    monkeypatch.setenv("AMLR_HOME", str(home))
    return home


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An AMLR_HOME for bridge calls that name it (``call(home, ...)``); created by amlr on first use."""
    return tmp_path / "home"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """An empty source folder for a test's R scripts (a test file may extend it: ``def src(src)``)."""
    d = tmp_path / "src"
    d.mkdir()
    return d


@pytest.fixture
def rscript() -> str:
    if RSCRIPT is None:
        pytest.skip("Rscript is not on the PATH")
    return RSCRIPT


@pytest.fixture
def bridge_env(amlr_home: Path) -> dict[str, str]:
    """What R's system2 bridge gives ``python -m amlr``: the package on PYTHONPATH, UTF-8 I/O."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_DIR)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONIOENCODING"] = "utf-8"
    env["AMLR_HOME"] = str(amlr_home)
    return env


# -- permission checks when the suite runs as root ------------------------------------------------

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def run_unprivileged(test_file: str, node: str) -> None:
    """Run one test of this suite as the unprivileged user ``nobody`` (permissions do not bind root).

    The package and the tests are copied to a world-readable temporary folder
    first (the checkout may not be readable by others); the child has its own
    HOME and temp folder. The test fails, with the child's output, unless the
    child ran the test and it passed; it never skips.
    """
    import shutil as _shutil
    import subprocess
    import tempfile

    if _shutil.which("setpriv") is None:
        pytest.fail("this permission check runs as root here; it needs setpriv (util-linux) to drop to `nobody`")
    top = Path(tempfile.mkdtemp(prefix="amlr-unprivileged-"))
    try:
        ignore = _shutil.ignore_patterns("__pycache__", "*.pyc")
        _shutil.copytree(PYTHON_DIR, top / "inst" / "python", ignore=ignore)
        _shutil.copytree(REPO / "tests" / "python", top / "tests" / "python", ignore=ignore)
        _shutil.copy2(REPO / "pytest.ini", top / "pytest.ini")
        work = top / "work"
        work.mkdir()
        for root, _dirs, files in os.walk(top):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        os.chown(work, 65534, 65534)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLR_", "PYTEST_"))}
        env.update(HOME=str(work), TMPDIR=str(work), PYTHONDONTWRITEBYTECODE="1")
        res = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-m", "pytest", f"tests/python/{test_file}::{node}", "-q", "-rs",
             "-p", "no:cacheprovider", "--basetemp", str(work / "pytest")],
            cwd=top, env=env, capture_output=True, text=True, timeout=300)
        out = res.stdout + res.stderr
        assert res.returncode == 0 and " passed" in out and "skipped" not in out, out[-4000:]
    finally:
        _shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(autouse=True)
def _mutmut_stats_stay_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `make mutate` only: while mutmut records which tests reach which function
    (MUTANT_UNDER_TEST=stats), subprocesses (the bootstrapper, the unprivileged rows) run the
    plain code; mutmut keeps its own in-process copy of the mode. Against a mutant they inherit
    its name and run it. Outside mutation testing this does nothing."""
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        monkeypatch.delenv("MUTANT_UNDER_TEST")
