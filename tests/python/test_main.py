"""``python -m amlr``'s start-up: ``-S`` and site-packages added only at the first real miss."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[2] / "inst" / "python"


def run_s(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    done = subprocess.run([sys.executable, "-S", "-c", "from amlr.__main__ import site_on_demand\n"
                           "site_on_demand()\n" + code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_standard_librarys_own_probes_do_not_pull_in_site_packages():
    # subprocess probes `msvcrt`, copy probes Jython's `org.python.core`: both miss on Linux.
    out = run_s("import subprocess, copy, sys\n"
                "print(any('site-packages' in p for p in sys.path), 'site' in sys.modules)")
    assert out == "False False"


def test_an_installed_package_is_found_at_its_first_import():
    out = run_s("import sys\nbefore = any('site-packages' in p for p in sys.path)\n"
                "import yaml\nprint(before, 'site-packages' in yaml.__file__)")
    assert out == "False True"


def test_a_module_that_exists_nowhere_is_still_an_import_error():
    out = run_s("try:\n    import amlr_no_such_module\nexcept ImportError as e:\n    print(type(e).__name__)")
    assert out == "ModuleNotFoundError"


def test_a_plain_local_submit_imports_neither_site_nor_what_it_does_not_use(tmp_path):
    """The bridge's hot path: a one-step local submit with no data assets, registrations or bad options."""
    import json
    import shutil

    import pytest

    if shutil.which("Rscript") is None:
        pytest.skip("Rscript is not installed")
    (tmp_path / "hello.R").write_text('cat("hi\\n")\n')
    request = json.dumps({"method": "submit", "params": {
        "spec": {"name": "hello", "steps": [{"name": "hello", "script": "hello.R", "source_dir": str(tmp_path)}]},
        "options": {}}})
    probe = ("import sys, runpy\n"
             "seen = set()\n"
             "sys.addaudithook(lambda ev, args: seen.add(args[0]) if ev == 'import' else None)\n"
             "sys.argv = ['amlr', 'call']\n"
             "try:\n    runpy.run_module('amlr', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "sys.stderr.write(' '.join(sorted(m for m in ('site', 'amlr.store', 'difflib', 'amlr.assets', 'traceback', 'random') "
             "if m in seen)) + '\\n')\n")
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR), AMLR_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-S", "-c", probe], input=request, env=env, capture_output=True,
                          text=True, timeout=60)
    assert '"status"' in done.stdout, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines()[-1:] in ([], [""]), done.stderr
