"""The embedded bridge's warm spare runner (procs.SpareRunner), with real processes and a real Rscript.

Under reticulate the local backend cannot fork its runner (that would copy R), so
it hands each run to a runner started ahead of time. These tests make this pytest
process play the embedded Python (``api.embedded``) and check: the run's runner is
the spare, it runs with the environment of the submit (not of its own start), the
next spare is ready, a dead or foreign spare falls back to a new runner, and a
spare whose session closes its stdin exits.
"""
from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
from bridge_calls import call
from bridge_calls import wait_run as wait
from test_local_backend import step, stream, write

from amlr import api, procs

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed")


@pytest.fixture
def embedded(monkeypatch):
    """This process as an embedded Python with spare runners on; the spare is stopped afterwards."""
    monkeypatch.setattr(procs, "FORK_RUNNER", False)
    api.embedded(True)
    yield procs.SPARE_RUNNER
    procs.SPARE_RUNNER.stop()
    procs.USE_SPARE_RUNNER = False


def submit_hello(home, src):
    write(src, "hello.R", 'cat("TZ is", Sys.getenv("TZ"), "\\n")\n')
    return call(home, "submit", spec={"name": "p", "steps": [step(src, "hello", allow_reuse=False)]}, options={})


def log_of(home, run_id):
    return "\n".join(call(home, "logs", run=run_id)["hello"])


def test_each_run_takes_the_waiting_spare_with_the_submitting_environment(home, src, embedded, monkeypatch):
    first = embedded.proc.pid
    assert embedded.ready()
    monkeypatch.setenv("TZ", "Pacific/Chatham")  # set after the spare started: the run must still see it
    run = submit_hello(home, src)
    assert run["runner_pid"] == first
    done = wait(home, run["id"])
    assert done["status"] == "Completed", done
    assert "TZ is Pacific/Chatham" in log_of(home, run["id"])
    # No second spare starts while the run does (it would compete with R's start-up); R's
    # waiting over the embedded bridge starts it once the run is over, and the next run takes it.
    assert embedded.proc is None
    events = stream(home, "wait", run=run["id"], caller_sleeps=True)
    assert events[-1]["result"]["status"] == "Completed"
    second = embedded.proc.pid
    assert second != first and embedded.ready()
    again = submit_hello(home, src)
    assert again["runner_pid"] == second
    assert wait(home, again["id"])["status"] == "Completed"


def test_a_dead_spare_means_a_new_runner_not_a_lost_run(home, src, embedded):
    dead = embedded.proc.pid
    os.kill(dead, signal.SIGKILL)
    embedded.proc.wait(10)
    run = submit_hello(home, src)
    assert run["runner_pid"] != dead
    assert wait(home, run["id"])["status"] == "Completed"
    assert embedded.ready()  # and a fresh spare for the next run


def test_a_forked_child_does_not_hand_its_run_to_the_parents_spare(home, src, embedded, monkeypatch):
    parents = embedded.proc
    monkeypatch.setattr(embedded, "owner", os.getpid() + 1)  # as if this process were a fork of the owner
    run = submit_hello(home, src)
    assert run["runner_pid"] != parents.pid
    assert wait(home, run["id"])["status"] == "Completed"
    assert parents.poll() is None  # still waiting for its own session's run
    parents.stdin.close()
    assert parents.wait(10) == 0


def test_a_spare_exits_when_its_session_goes(embedded):
    spare = embedded.proc
    embedded.stop()
    assert spare.poll() == 0
    assert not embedded.ready()


def test_spares_are_off_unless_the_embedded_bridge_asks(home, src, monkeypatch):
    monkeypatch.setattr(procs, "FORK_RUNNER", False)
    assert procs.USE_SPARE_RUNNER is False
    assert procs.SPARE_RUNNER.start() is None
    run = submit_hello(home, src)
    assert wait(home, run["id"])["status"] == "Completed"
    assert procs.SPARE_RUNNER.proc is None
    api.embedded(False)
    assert procs.SPARE_RUNNER.start() is None


def test_a_spare_started_then_left_alone_costs_nothing_but_waiting(embedded):
    spare = embedded.proc
    time.sleep(0.5)
    assert spare.poll() is None  # no busy loop ending it, no job: it just waits on stdin
    with open(f"/proc/{spare.pid}/stat") as fh:
        state = fh.read().rsplit(")", 1)[1].split()[0]
    assert state == "S"  # sleeping in read(), not running
