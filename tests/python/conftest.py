"""Shared set-up for amlr's pytest suite.

* ``inst/python`` goes first on ``sys.path`` (once), so ``import amlr`` is the
  package under test, not an installed copy.
* ``amlr_home``: a private AMLR_HOME per test, so no test touches a user's
  registry.
* ``requires_rscript`` (a marker) and ``rscript`` (a fixture giving the path):
  skip tests that start R when R is not installed.
* ``bridge_env``: the environment for a ``python -m amlr`` subprocess.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO / "inst" / "python"

if not any(os.path.realpath(p) == os.path.realpath(PYTHON_DIR) for p in sys.path if p):
    sys.path.insert(0, str(PYTHON_DIR))

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
