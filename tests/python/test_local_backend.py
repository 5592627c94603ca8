"""The local backend end to end: real Rscript processes, a real SQLite registry."""
import json
import os
import shutil
import signal
import sys
import time
from multiprocessing import Pool

import pytest


from bridge_calls import call, call_error
from bridge_calls import wait_run as wait
from amlr import api, procs
from amlr.registry import Registry

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not installed")






def step(src, name, outputs=(), inputs=None, args=(), allow_reuse=True, script=None):
    return {"name": name, "script": script or f"{name}.R", "source_dir": str(src), "outputs": list(outputs),
            "inputs": inputs or {}, "args": list(args), "allow_reuse": allow_reuse}


def ref(s, o):
    return {"type": "step_output", "step": s, "output": o}


def write(src, name, code):
    (src / name).write_text(code)




def submit(home, src_steps, name="p", **options):
    return call(home, "submit", spec={"name": name, "steps": src_steps}, options=options)


def test_single_step_runs_and_streams_to_a_log(home, src):
    write(src, "hello.R", 'cat("hello", commandArgs(TRUE), "\\n"); message("to stderr")\n')
    run = submit(home, [step(src, "hello", args=["a b", "ü"])])
    assert run["status"] in ("Queued", "Running")
    done = wait(home, run["id"])
    assert done["status"] == "Completed"
    logs = call(home, "logs", run=run["id"])["hello"]
    assert logs[0] == "hello a b ü "
    assert "to stderr" in logs
    assert logs[-1] == "Pipeline step execution returned 0"
    [s] = call(home, "steps", run=run["id"])
    assert s["exit_code"] == 0 and s["reused"] is False


def test_data_flows_between_steps_and_metrics_are_recorded(home, src):
    write(src, "prepare.R", 'writeLines("42", file.path(Sys.getenv("AMLR_OUTPUT_data"), "n.txt"))\n')
    write(src, "train.R", (
        'n <- as.numeric(readLines(file.path(Sys.getenv("AMLR_INPUT_data"), "n.txt")))\n'
        'f <- Sys.getenv("AMLR_METRICS_FILE")\n'
        'for (i in 1:3) cat(sprintf(\'{"name":"loss","value":%d}\\n\', n + i), file = f, append = TRUE)\n'
        'cat(\'{"name":"note","value":"ok"}\\n\', file = f, append = TRUE)\n'
    ))
    run = submit(home, [step(src, "prepare", outputs=["data"]),
                        step(src, "train", inputs={"data": ref("prepare", "data")})])
    assert wait(home, run["id"])["status"] == "Completed"
    metrics = call(home, "metrics", run=run["id"])
    loss = [m for m in metrics if m["name"] == "loss"]
    assert [m["value_num"] for m in loss] == [43, 44, 45]
    assert [m["idx"] for m in loss] == [0, 1, 2]
    assert [m["value_str"] for m in metrics if m["name"] == "note"] == ["ok"]


def test_independent_steps_run_in_parallel(home, src):
    code = 'cat(format(Sys.time(), "%s"), "\\n"); Sys.sleep(1.5); writeLines("x", file.path(Sys.getenv("AMLR_OUTPUT_o"), "x"))\n'
    write(src, "a.R", code)
    write(src, "b.R", code)
    run = submit(home, [step(src, "a", outputs=["o"]), step(src, "b", outputs=["o"])], max_parallel=2)
    assert wait(home, run["id"])["status"] == "Completed"
    a, b = call(home, "steps", run=run["id"])
    assert a["started"] < b["ended"] and b["started"] < a["ended"], "the two steps did not overlap"


def test_max_parallel_one_serialises(home, src):
    write(src, "a.R", "Sys.sleep(0.5)\n")
    write(src, "b.R", "Sys.sleep(0.5)\n")
    run = submit(home, [step(src, "a"), step(src, "b")], max_parallel=1)
    assert wait(home, run["id"])["status"] == "Completed"
    a, b = sorted(call(home, "steps", run=run["id"]), key=lambda s: s["started"])
    assert b["started"] >= a["ended"] - 0.05


def test_failed_step_cancels_dependants_but_not_independent_branches(home, src):
    write(src, "bad.R", 'cat("about to fail\\n"); quit(status = 3)\n')
    write(src, "after.R", 'cat("never\\n")\n')
    write(src, "other.R", 'Sys.sleep(0.5); cat("independent\\n")\n')
    run = submit(home, [
        step(src, "bad", outputs=["o"]),
        step(src, "after", inputs={"x": ref("bad", "o")}),
        step(src, "other"),
    ])
    done = wait(home, run["id"])
    assert done["status"] == "Failed"
    steps = {s["name"]: s for s in call(home, "steps", run=run["id"])}
    assert steps["bad"]["status"] == "Failed" and steps["bad"]["exit_code"] == 3
    assert steps["after"]["status"] == "Canceled"
    assert "upstream step `bad`" in steps["after"]["error"]
    assert steps["other"]["status"] == "Completed"


def test_reuse_reruns_only_the_changed_step_and_downstream(home, src):
    write(src, "a.R", 'writeLines("a", file.path(Sys.getenv("AMLR_OUTPUT_o"), "a.txt"))\n')
    other = src.parent / "src_b"
    other.mkdir()
    write(other, "b.R", 'x <- readLines(file.path(Sys.getenv("AMLR_INPUT_i"), "a.txt"))\n'
                        'writeLines(paste(x, "b"), file.path(Sys.getenv("AMLR_OUTPUT_o"), "b.txt"))\n')
    third = src.parent / "src_c"
    third.mkdir()
    write(third, "c.R", 'cat(readLines(file.path(Sys.getenv("AMLR_INPUT_i"), "b.txt")), "\\n")\n')
    steps = [step(src, "a", outputs=["o"]),
             step(other, "b", inputs={"i": ref("a", "o")}, outputs=["o"]),
             step(third, "c", inputs={"i": ref("b", "o")})]
    first = submit(home, steps)
    assert wait(home, first["id"])["status"] == "Completed"
    second = submit(home, steps)
    assert wait(home, second["id"])["status"] == "Completed"
    reused = {s["name"]: (s["reused"], s["reused_from"]) for s in call(home, "steps", run=second["id"])}
    assert reused == {"a": (True, first["id"]), "b": (True, first["id"]), "c": (True, first["id"])}
    assert any("reused step `a`" in line for line in call(home, "logs", run=second["id"], step="a")["a"])
    # Change b: a is reused, b and c run again.
    write(other, "b.R", (other / "b.R").read_text() + "# changed\n")
    third_run = submit(home, steps)
    assert wait(home, third_run["id"])["status"] == "Completed"
    reused = {s["name"]: s["reused"] for s in call(home, "steps", run=third_run["id"])}
    assert reused == {"a": True, "b": False, "c": False}
    # Reused outputs are the earlier run's folders, not copies.
    a1 = call(home, "steps", run=first["id"])[0]["outputs"]["o"]
    a3 = call(home, "steps", run=third_run["id"])[0]["outputs"]["o"]
    assert a1 == a3


def test_a_prior_step_whose_outputs_were_deleted_runs_again(home, src):
    """Reusing a step whose output folder is gone would hand the next step a path that does not exist."""
    write(src, "a.R", 'writeLines("a", file.path(Sys.getenv("AMLR_OUTPUT_o"), "a.txt"))\n')
    write(src, "b.R", 'cat(readLines(file.path(Sys.getenv("AMLR_INPUT_i"), "a.txt")), "\\n")\n')
    steps = [step(src, "a", outputs=["o"]), step(src, "b", inputs={"i": ref("a", "o")})]
    first = submit(home, steps)
    assert wait(home, first["id"])["status"] == "Completed"
    shutil.rmtree(call(home, "steps", run=first["id"])[0]["outputs"]["o"])
    second = submit(home, steps)
    assert wait(home, second["id"])["status"] == "Completed"
    got = {s["name"]: s["reused"] for s in call(home, "steps", run=second["id"])}
    assert got["a"] is False
    assert os.path.isfile(os.path.join(call(home, "steps", run=second["id"])[0]["outputs"]["o"], "a.txt"))


def test_arguments_with_dollars_quotes_commas_and_backslashes_reach_r_unchanged(home, src):
    tricky = ["$HOME", "${HOME}", "$(id)", "`id`", "it's", 'say "hi"', "a,b", "back\\slash", "trailing\\", "a b",
              "", "new\nline", "*", ";", "ü✓"]
    write(src, "echo.R", 'a <- commandArgs(trailingOnly = TRUE)\n'
                         'saveRDS(a, file.path(Sys.getenv("AMLR_OUTPUT_o"), "args.rds"))\n')
    run = submit(home, [step(src, "echo", outputs=["o"], args=tricky)])
    assert wait(home, run["id"])["status"] == "Completed"
    out = call(home, "steps", run=run["id"])[0]["outputs"]["o"]
    import subprocess
    got = subprocess.run(["Rscript", "-e", f'writeLines(jsonlite::toJSON(readRDS("{out}/args.rds")))'],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(got) == tricky


def test_allow_reuse_false_always_runs(home, src):
    write(src, "a.R", "cat(1)\n")
    first = submit(home, [step(src, "a", allow_reuse=False)])
    wait(home, first["id"])
    second = submit(home, [step(src, "a", allow_reuse=False)])
    wait(home, second["id"])
    assert call(home, "steps", run=second["id"])[0]["reused"] is False


def test_changed_input_file_reruns(home, src, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("1\n")
    write(src, "a.R", 'cat(readLines(Sys.getenv("AMLR_INPUT_d")), "\\n")\n')
    s = [step(src, "a", inputs={"d": str(data)})]
    wait(home, submit(home, s)["id"])
    again = submit(home, s)
    wait(home, again["id"])
    assert call(home, "steps", run=again["id"])[0]["reused"] is True
    data.write_text("2\n")
    changed = submit(home, s)
    wait(home, changed["id"])
    assert call(home, "steps", run=changed["id"])[0]["reused"] is False
    assert call(home, "logs", run=changed["id"])["a"][0].strip() == "2"


def r_pids(run_dir):
    pids = []
    for f in os.listdir(run_dir):
        if f.startswith("pid-"):
            pids.append(int(open(os.path.join(run_dir, f)).read().strip()))
    return pids


def test_cancel_stops_every_r_process(home, src, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    code = (f'writeLines(as.character(Sys.getpid()), file.path("{pid_dir}", paste0("pid-", Sys.getpid())))\n'
            'Sys.sleep(60)\n')
    write(src, "a.R", code)
    write(src, "b.R", code)
    write(src, "c.R", 'cat("never\\n")\n')
    run = submit(home, [step(src, "a", outputs=["o"]), step(src, "b"), step(src, "c", inputs={"i": ref("a", "o")})],
                 max_parallel=2)
    deadline = time.monotonic() + 30
    while len(r_pids(pid_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = r_pids(pid_dir)
    assert len(pids) == 2
    started = time.monotonic()
    out = call(home, "cancel", run=run["id"])
    assert time.monotonic() - started < 20
    assert out["status"] == "Canceled"
    assert not any(procs.pid_alive(p) for p in pids), "an R process survived run_cancel"
    statuses = {s["name"]: s["status"] for s in call(home, "steps", run=run["id"])}
    assert statuses == {"a": "Canceled", "b": "Canceled", "c": "Canceled"}
    err = call_error(home, "cancel", run=run["id"])
    assert err["class"] == "run_not_active"


def test_dead_runner_marks_the_run_failed(home, src, tmp_path):
    pid_file = tmp_path / "pid"
    write(src, "a.R", f'writeLines(as.character(Sys.getpid()), "{pid_file}"); Sys.sleep(60)\n')
    run = submit(home, [step(src, "a")])
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    runner = Registry(str(home)).get_run(run["id"])["runner_pid"]
    os.kill(runner, signal.SIGKILL)
    while procs.pid_alive(runner):
        time.sleep(0.05)
    status = call(home, "status", run=run["id"])
    assert status["status"] == "Failed"
    assert "runner process" in status["error"]
    r_pid = int(pid_file.read_text().strip())
    deadline = time.monotonic() + 5
    while procs.pid_alive(r_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procs.pid_alive(r_pid), "the orphaned R process was left running"
    assert call(home, "steps", run=run["id"])[0]["status"] == "Failed"


def test_download_refuses_to_overwrite(home, src, tmp_path):
    write(src, "a.R", 'writeLines("hi", file.path(Sys.getenv("AMLR_OUTPUT_o"), "hi.txt"))\n')
    run = submit(home, [step(src, "a", outputs=["o"])])
    wait(home, run["id"])
    dest = tmp_path / "dl"
    written = call(home, "download", run=run["id"], dest=str(dest))
    assert (dest / "a" / "o" / "hi.txt").read_text() == "hi\n"
    assert (dest / "a" / "logs" / "a.log").exists()
    assert len(written) == 2
    err = call_error(home, "download", run=run["id"], dest=str(dest))
    assert err["class"] == "file_exists"
    call(home, "download", run=run["id"], dest=str(dest), overwrite=True)
    err = call_error(home, "download", run=run["id"], dest=str(dest), output="nope")
    assert "no output `nope`" in err["message"]


def test_latest_and_list(home, src):
    write(src, "a.R", "cat(1)\n")
    first = submit(home, [step(src, "a")], name="one")
    wait(home, first["id"])
    second = submit(home, [step(src, "a")], name="two")
    wait(home, second["id"])
    assert call(home, "status")["id"] == second["id"]
    runs = call(home, "list", limit=20)
    assert [r["id"] for r in runs[:2]] == [second["id"], first["id"]]
    assert [r["id"] for r in call(home, "list", experiment="one")] == [first["id"]]
    err = call_error(home, "status", run="nope")
    assert err["class"] == "run_not_found"


def _submit_in_process(args):
    home, src, i = args
    (open(os.path.join(src, f"s{i}.R"), "w")).write(f"cat({i})\n")
    out = json.loads(api.handle_json(json.dumps({"method": "submit", "params": {
        "home": home, "spec": {"name": f"p{i}", "steps": [
            {"name": "s", "script": f"s{i}.R", "source_dir": src}]}}})))
    if "error" in out:
        return out["error"]["message"]
    for _ in range(40):
        api.handle_json(json.dumps({"method": "list", "params": {"home": home}}))
    return out["result"]["id"]


def test_concurrent_sessions_lose_no_run(home, src):
    with Pool(6) as pool:
        ids = pool.map(_submit_in_process, [(str(home), str(src), i) for i in range(12)])
    assert all(i.startswith("amlr_") for i in ids), ids
    for run_id in ids:
        assert wait(home, run_id, timeout=120)["status"] == "Completed"
    assert len({r["id"] for r in call(home, "list", limit=0)}) == 12


def stream(home, method, **params):
    params["home"] = str(home)
    return [json.loads(line) for line in api.stream_json(json.dumps({"method": method, "params": params}))]


def test_submit_stream_delivers_logs_step_changes_and_heartbeats(home, src):
    write(src, "quiet.R", 'cat("first\\n"); Sys.sleep(0.8); cat("second\\n")\n')
    events = stream(home, "submit", spec={"name": "p", "steps": [step(src, "quiet")]}, wait=True)
    kinds = [e.get("event") for e in events[:-1]]
    assert kinds[0] == "submitted"
    assert "tick" in kinds, "a silent step must still produce heartbeats"
    text = "".join(e["text"] for e in events if e.get("event") == "log")
    lines = text.splitlines()
    assert lines[:2] == ["first", "second"]
    assert lines[-1] == "Pipeline step execution returned 0"
    statuses = [e["steps"][0]["status"] for e in events if e.get("event") == "steps" and e["steps"]]
    assert statuses[-1] == "Completed" and len(statuses) >= 2
    assert events[-1]["result"]["status"] == "Completed"
    # The end of the step comes after its last line.
    last_log = max(i for i, e in enumerate(events) if e.get("event") == "log")
    assert any(e.get("event") == "steps" for e in events[last_log:])


def test_a_streamed_log_loses_no_byte_and_each_event_is_bounded(home, src):
    """20 lines of 1 MB, then a last line: every byte arrives, in events of at most LOG_CHUNK_BYTES."""
    write(src, "big.R", 'for (i in 1:20) cat(strrep("x", 1e6), "\\n", sep = ""); cat("LAST LINE\\n")\n')
    events = stream(home, "submit", spec={"name": "p", "steps": [step(src, "big")]}, wait=True)
    texts = [e["text"] for e in events if e.get("event") == "log"]
    assert max(len(t.encode()) for t in texts) <= api.LOG_CHUNK_BYTES
    lines = "".join(texts).splitlines()
    assert lines[:20] == ["x" * 1_000_000] * 20
    assert lines[20] == "LAST LINE"
    assert lines[-1] == "Pipeline step execution returned 0"
    # quiet: the follower reads no log at all, and still reports the steps.
    quiet = stream(home, "submit", spec={"name": "p", "steps": [step(src, "big", allow_reuse=False)]}, wait=True,
                   quiet=True)
    assert not [e for e in quiet if e.get("event") == "log"]
    assert quiet[-1]["result"]["status"] == "Completed"


def test_wait_stream_resumes_from_a_cursor_and_stops_at_timeout(home, src):
    write(src, "slow.R", 'cat("a\\n"); Sys.sleep(30)\n')
    run = submit(home, [step(src, "slow")])
    deadline = time.monotonic() + 20
    while not call(home, "logs", run=run["id"])["slow"] and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    events = stream(home, "wait", run=run["id"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert events[-1]["result"]["status"] == "Running"
    cursor = events[-1]["result"]["cursor"]
    again = stream(home, "wait", run=run["id"], timeout=0.3, cursor=cursor)
    assert not [e for e in again if e.get("event") == "log"], "lines before the cursor came again"
    call(home, "cancel", run=run["id"])


def test_a_plain_method_streams_as_its_response(home):
    assert stream(home, "ping")[-1]["result"]["amlr"]
    assert stream(home, "nope")[-1]["error"]["class"] == "bad_request"


def test_the_forked_runner_does_not_hold_the_bridge_pipe(home, src):
    """R reads `python -m amlr stream` to EOF: a runner that kept the pipe would block R for the whole run."""
    import subprocess

    write(src, "slow.R", "Sys.sleep(30)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "inst", "python"))
    request = {"method": "submit", "params": {"home": str(home), "spec": {"name": "p", "steps": [step(src, "slow")]}}}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "amlr", "stream"], input=json.dumps(request).encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=25)
    assert time.monotonic() - t0 < 10
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[0]["event"] == "hello"
    run = lines[-1]["result"]
    assert call(home, "status", run=run["id"])["status"] in ("Queued", "Running")
    assert procs.pid_alive(Registry(str(home)).get_run(run["id"])["runner_pid"])
    assert call(home, "cancel", run=run["id"])["status"] == "Canceled"


def test_editing_one_script_in_a_shared_folder_reruns_only_it_and_its_dependants(home, src):
    write(src, "prepare.R", 'writeLines("1", file.path(Sys.getenv("AMLR_OUTPUT_o"), "v"))\n')
    write(src, "train.R", 'x <- readLines(file.path(Sys.getenv("AMLR_INPUT_i"), "v")); '
                          'writeLines(x, file.path(Sys.getenv("AMLR_OUTPUT_o"), "v"))\n')
    write(src, "summarise.R", 'cat(readLines(file.path(Sys.getenv("AMLR_INPUT_i"), "v")), "\\n")\n')
    write(src, "report.R", 'cat(readLines(file.path(Sys.getenv("AMLR_INPUT_i"), "v")), "\\n")\n')
    steps = [step(src, "prepare", outputs=["o"]),
             step(src, "train", inputs={"i": ref("prepare", "o")}, outputs=["o"]),
             step(src, "summarise", inputs={"i": ref("prepare", "o")}),
             step(src, "report", inputs={"i": ref("train", "o")})]
    wait(home, submit(home, steps)["id"])
    write(src, "train.R", (src / "train.R").read_text() + "# tuned\n")
    again = submit(home, steps)
    assert wait(home, again["id"])["status"] == "Completed"
    reused = {s["name"]: s["reused"] for s in call(home, "steps", run=again["id"])}
    assert reused == {"prepare": True, "train": False, "summarise": True, "report": False}
    # A helper no step sources is nobody's code; once train sources it, it is train's.
    write(src, "helpers.R", "f <- function() 1\n")
    third = submit(home, steps)
    wait(home, third["id"])
    assert all(s["reused"] for s in call(home, "steps", run=third["id"]))
    write(src, "train.R", 'source("helpers.R")\n' + (src / "train.R").read_text())
    wait(home, submit(home, steps)["id"])
    write(src, "helpers.R", "f <- function() 2\n")
    fifth = submit(home, steps)
    wait(home, fifth["id"])
    reused = {s["name"]: s["reused"] for s in call(home, "steps", run=fifth["id"])}
    assert reused == {"prepare": True, "train": False, "summarise": True, "report": False}
    # A source() that cannot be resolved makes every R file (but other steps' scripts) train's code.
    write(src, "train.R", 'f <- "helpers.R"; source(f)\n' + (src / "train.R").read_text())
    wait(home, submit(home, steps)["id"])
    write(src, "unrelated.R", "g <- 1\n")
    sixth = submit(home, steps)
    wait(home, sixth["id"])
    reused = {s["name"]: s["reused"] for s in call(home, "steps", run=sixth["id"])}
    assert reused == {"prepare": True, "train": False, "summarise": True, "report": False}


def test_an_embedded_caller_does_the_sleeping(home, src):
    """With caller_sleeps, the stream never blocks in Python: R sleeps, so R gets the interrupts."""
    write(src, "slow.R", "Sys.sleep(2)\n")
    t0 = time.monotonic()
    gen = api.stream_json(json.dumps({"method": "submit", "params": {
        "home": str(home), "spec": {"name": "p", "steps": [step(src, "slow")]}, "wait": True, "caller_sleeps": True}}))
    longest = 0.0
    events = []
    while True:
        start = time.monotonic()
        try:
            line = next(gen)
        except StopIteration:
            break
        longest = max(longest, time.monotonic() - start)
        event = json.loads(line)
        events.append(event)
        if event.get("event") == "idle":
            time.sleep(event["seconds"])
    assert any(e.get("event") == "idle" for e in events)
    assert events[-1]["result"]["status"] == "Completed"
    assert longest < 1.0, f"a single step of the stream blocked for {longest:.2f}s"
    assert time.monotonic() - t0 < 30


def test_a_run_submitted_through_the_bridge_process_completes_in_its_forked_runner(home, src):
    """`python -m amlr call` forks the runner: the child must not inherit the parent's SQLite connection."""
    import subprocess

    write(src, "quick.R", 'cat("quick\\n")\n')
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "inst", "python"))
    request = {"method": "submit", "params": {"home": str(home), "spec": {"name": "p", "steps": [step(src, "quick")]}}}
    proc = subprocess.run([sys.executable, "-S", "-m", "amlr", "call"], input=json.dumps(request).encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    run = json.loads(proc.stdout)["result"]
    assert wait(home, run["id"])["status"] == "Completed"
    assert call(home, "logs", run=run["id"])["quick"][0] == "quick"


def test_a_step_that_overwrites_a_source_file_does_not_change_the_next_run(home, src):
    """The snapshot a step runs in is hard-linked from amlr's content store; a step writing to a file of it
    must not change what the store holds, or the next run would read the step's output as its input."""
    write(src, "data.txt", "original\n")
    write(src, "s.R", 'cat("read:", readLines("data.txt"), "\\n"); writeLines("changed by the step", "data.txt")\n')
    runs = []
    for _ in range(2):
        runs.append(call(home, "submit", spec={"name": "p", "steps": [step(src, "s", allow_reuse=False)]}, options={}))
        assert wait(home, runs[-1]["id"])["status"] == "Completed"
    for run in runs:
        assert "read: original" in "\n".join(call(home, "logs", run=run["id"])["s"])
    assert (src / "data.txt").read_text() == "original\n"
