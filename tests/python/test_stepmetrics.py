"""amlr.stepmetrics, the bootstrapper's companion: parsing, sinks and the forwarder, in-process.

(The whole path -- a job's snapshot alone forwarding to a loopback MLflow server --
is in test_runtime_emulation.py; the bootstrapper's use of it in test_bootstrapper.py.)
"""
from __future__ import annotations

import os

import pytest

from amlr import stepmetrics as sm


def test_timestamps_are_utc_milliseconds_whatever_their_spelling():
    assert sm._timestamp_ms("1970-01-01T00:00:01Z") == 1000
    assert sm._timestamp_ms("1970-01-01T00:00:01z") == 1000
    assert sm._timestamp_ms("1970-01-01T00:00:01") == 1000  # no zone: UTC, not the machine's zone
    assert sm._timestamp_ms("1970-01-01T01:00:01+01:00") == 1000
    assert sm._timestamp_ms(" 1970-01-01T00:00:02.5Z ") == 2500
    assert sm._timestamp_ms("yesterday") is None and sm._timestamp_ms(None) is None and sm._timestamp_ms("") is None


@pytest.mark.parametrize("line, reason", [
    (b"[1]", "not a JSON object"),
    (b'{"value": 1}', '"name" is missing or not a non-empty string'),
    (b'{"name": "", "value": 1}', '"name" is missing or not a non-empty string'),
    (b'{"name": "a", "value": true}', "\"value\" of metric 'a' is not a number or a string"),
    (b'{"name": "a", "value": 1, "time": 5}', "\"time\" of metric 'a' is not a string"),
    (b"{torn", "not valid JSON"),
    (b"\xff", "not UTF-8"),
])
def test_a_bad_metric_line_is_refused_with_a_reason_that_quotes_no_value(line, reason):
    with pytest.raises(ValueError) as err:
        sm.parse_metric_line(line)
    assert str(err.value) == reason


def test_the_mlflow_failure_says_which_server_and_how_to_change_the_bounds(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in sm.MLFLOW_BOUNDS:
        monkeypatch.delenv(name, raising=False)
    sink = sm.MLflowSink()
    assert sink.describe(RuntimeError("x")) == (
        "the MLflow tracking server (MLFLOW_TRACKING_URI not set) did not take the metric; check that it is "
        "reachable (requests give up after 10 s, 1 retries: MLFLOW_HTTP_REQUEST_TIMEOUT and "
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES change that)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:pw@tracking.example/x")
    assert sink.describe(RuntimeError("x")).startswith("the MLflow tracking server https://***@tracking.example/x ")


class Failing:
    """A sink that refuses every metric and says where it was sending them."""

    def __call__(self, metric: sm.Metric) -> None:
        raise ConnectionError("refused")

    def describe(self, exc: BaseException) -> str:
        return "the tracking server at 127.0.0.1:9 did not take the metric"


def forwarder(tmp_path, text: bytes, sink) -> tuple[sm.MetricsForwarder, list[str]]:
    path = tmp_path / "m.jsonl"
    path.write_bytes(text)
    said: list[str] = []
    return sm.MetricsForwarder(str(path), sink, warn=said.append), said


def test_the_first_bad_line_is_reported_once_with_its_number(tmp_path):
    got: list[sm.Metric] = []
    fwd, said = forwarder(tmp_path, b'{"name": "a", "value": 1}\n[2]\n{torn\n{"name": "a", "value": 3}\n', got.append)
    fwd.close()
    assert [m.value for m in got] == [1, 3] and [m.index for m in got] == [0, 1]
    assert said == [f"skipped metric line 2 of {tmp_path / 'm.jsonl'}: not a JSON object "
                    "(further bad lines are skipped silently)"]
    assert (fwd.forwarded, fwd.skipped) == (2, 2)


def test_a_failing_sink_is_described_once_and_dropped(tmp_path):
    fwd, said = forwarder(tmp_path, b'{"name": "a", "value": 1}\n{"name": "b", "value": 2}\n', Failing())
    fwd.close()
    assert said == ["forwarding metrics failed: the tracking server at 127.0.0.1:9 did not take the metric; "
                    "ConnectionError: refused; further metrics of this step are not forwarded"]
    assert fwd.sink is None and fwd.forwarded == 0


def test_a_sink_without_a_description_is_named_by_its_error(tmp_path):
    def sink(metric: sm.Metric) -> None:
        raise RuntimeError("")

    fwd, said = forwarder(tmp_path, b'{"name": "a", "value": 1}\n', sink)
    fwd.close()
    assert said == ["forwarding metrics failed: RuntimeError; further metrics of this step are not forwarded"]


def test_a_flush_that_fails_is_one_warning(tmp_path):
    class Flaky:
        def __call__(self, metric: sm.Metric) -> None:
            pass

        def close(self) -> None:
            raise OSError("buffer lost")

    fwd, said = forwarder(tmp_path, b'{"name": "a", "value": 1}\n', Flaky())
    fwd.close()
    assert said == ["flushing metrics failed (OSError: buffer lost)"]


def test_the_final_drain_takes_a_last_line_without_newline_and_polling_after_it_is_harmless(tmp_path):
    got: list[sm.Metric] = []
    fwd, said = forwarder(tmp_path, b'{"name": "a", "value": 1}\n{"name": "b", "value": 2}', got.append)
    fwd.poll()
    assert [m.name for m in got] == ["a"]  # the second line may still be being written
    fwd.poll(final=True)
    assert [m.name for m in got] == ["a", "b"]
    with open(tmp_path / "m.jsonl", "ab") as fh:
        fh.write(b'\n{"name": "c", "value": 3}\n')
    fwd.poll()
    assert [m.name for m in got] == ["a", "b", "c"] and said == []


def test_the_forwarding_thread_never_keeps_a_finished_step_alive(tmp_path):
    got: list[sm.Metric] = []
    fwd, _ = forwarder(tmp_path, b'{"name": "a", "value": 1}\n', got.append)
    fwd.poll_interval = 0.01
    fwd.start()
    assert fwd._thread is not None and fwd._thread.daemon and fwd._thread.name == "amlr-metrics"
    assert fwd.stop(timeout=10) is True
    assert [m.name for m in got] == ["a"]


def test_start_picks_the_sink_and_none_forwards_nothing(tmp_path, monkeypatch):
    for name in sm.MLFLOW_BOUNDS:  # MLflowSink sets them: let monkeypatch put them back
        monkeypatch.delenv(name, raising=False)
    said: list[str] = []
    assert sm.start("none", str(tmp_path / "m"), said.append) is None
    monkeypatch.delenv("AZUREML_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert sm.start("auto", str(tmp_path / "m"), said.append) is None
    fwd = sm.start("mlflow", str(tmp_path / "m"), said.append)
    try:
        assert isinstance(fwd, sm.MetricsForwarder) and isinstance(fwd.sink, sm.MLflowSink)
        assert fwd._thread is not None and fwd._thread.is_alive()
    finally:
        assert fwd is not None
        fwd.sink = None  # nothing to flush to
        fwd.stop(timeout=10)
    assert said == [] and os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") == "10"


@pytest.mark.parametrize("kind", ["mlflow", "mlflow-unset", "azureml"])
def test_a_hung_service_is_left_behind_with_one_warning_naming_it(tmp_path, monkeypatch, kind):
    import threading

    release = threading.Event()
    base = sm.AzureMLSink if kind == "azureml" else sm.MLflowSink

    class Hung(base):  # type: ignore[valid-type,misc]
        def __call__(self, metric: sm.Metric) -> None:
            release.wait(30)

    for name in sm.MLFLOW_BOUNDS:
        monkeypatch.delenv(name, raising=False)
    if kind == "mlflow":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://me:secret@127.0.0.1:9")
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fwd, said = forwarder(tmp_path, b'{"name": "a", "value": 1}\n', Hung())
    fwd.poll_interval = 0.01
    fwd.start()
    try:
        assert fwd.stop(timeout=0.3) is False
    finally:
        release.set()
    where = {"mlflow": " to the MLflow tracking server http://***@127.0.0.1:9, which is slow or unreachable",
             "mlflow-unset": " to the MLflow tracking server (MLFLOW_TRACKING_URI not set), which is slow or "
                             "unreachable",
             "azureml": " to Azure ML run history, which is slow or unreachable"}[kind]
    assert said == [f"metrics were still being forwarded{where} after 0.3 s; the step goes on without waiting, "
                    "and some metrics may be missing"]
    fwd._thread.join(10)
    assert said[1:] == []  # nothing more: the final line must stay the last


def test_a_metrics_file_that_was_truncated_is_read_again_from_its_start(tmp_path):
    got: list[sm.Metric] = []
    fwd, said = forwarder(tmp_path, b'{"name": "a", "value": 1}\n{"name": "b", "value": 2}\n', got.append)
    fwd.poll()
    (tmp_path / "m.jsonl").write_bytes(b'{"name": "c", "value": 3}\n')  # replaced by a shorter file
    fwd.poll()
    assert [(m.name, m.value) for m in got] == [("a", 1), ("b", 2), ("c", 3)] and said == []
