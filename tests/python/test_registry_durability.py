"""The registry under WAL + synchronous=NORMAL: a crashed process loses nothing; every lookup uses an index."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from amlr.registry import Registry

PY_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "inst", "python")


def test_a_commit_survives_the_process_being_killed_right_after(tmp_path):
    home = tmp_path / "home"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {PY_ROOT!r})
        from amlr.registry import Registry
        reg = Registry({str(home)!r})
        for i in range(50):
            reg.insert_run({{"id": f"run{{i}}", "experiment": "e", "pipeline": "p", "backend": "local",
                             "status": "Queued", "run_dir": None}}, [{{"name": "s", "outputs": {{}}}}])
            reg.update_step(f"run{{i}}", "s", status="Completed", exit_code=0)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint, no atexit
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    reg = Registry(str(home))
    runs = reg.list_runs(limit=0)
    assert len(runs) == 50
    assert all(reg.get_step(r["id"], "s")["status"] == "Completed" for r in runs)


def test_every_run_lookup_is_an_index_search_not_a_scan(tmp_path):
    reg = Registry(str(tmp_path / "home"))
    reg.insert_run({"id": "a", "experiment": "e", "pipeline": "p", "backend": "azureml_v2", "status": "Queued",
                    "run_dir": None, "remote_id": "job-1"}, [])
    plans = {
        "by id": ("SELECT id FROM runs WHERE id = ?", ("a",)),
        "by remote id": ("SELECT id FROM runs WHERE remote_id = ? LIMIT 1", ("job-1",)),
        "latest": ("SELECT id FROM runs ORDER BY created DESC, rowid DESC LIMIT 1", ()),
        "by experiment": ("SELECT * FROM runs WHERE experiment = ? ORDER BY created DESC, rowid DESC", ("e",)),
        "steps of a run": ("SELECT * FROM steps WHERE run_id = ? ORDER BY position", ("a",)),
        "reusable step": ("SELECT s.* FROM steps s JOIN runs r ON r.id = s.run_id WHERE s.fingerprint = ? AND "
                          "s.status = 'Completed' AND s.run_id != ? AND r.backend = 'local'", ("f", "a")),
        "metrics of a run": ("SELECT * FROM metrics WHERE run_id = ? AND step = ?", ("a", "s")),
    }
    with reg.read() as con:
        for what, (sql, args) in plans.items():
            steps = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql, args)]
            # A SCAN is a full pass over the table unless it walks an index (ORDER BY ... LIMIT 1 does).
            assert not [s for s in steps if s.startswith("SCAN") and "USING" not in s], (what, steps)
    assert reg.resolve("job-1") == "a" and reg.resolve("a") == "a"
