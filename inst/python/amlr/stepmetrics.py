"""Forward the metrics a step's R code logs to the run's tracking service.

The bootstrapper's companion in every job snapshot (``_amlr/stepmetrics.py``),
imported only when a step's metrics go somewhere (``--metrics-sink`` other than
``none``), so a plain step does not pay for it. Standard library only (Python
>= 3.8), like the bootstrapper; the SDKs (azureml-core, mlflow) are imported
on the first metric.

``log_metric()`` in R appends one JSON object per line to
``$AMLR_METRICS_FILE``; :class:`MetricsForwarder` tails that file on a thread
and hands each complete line to a sink: AML run history (:class:`AzureMLSink`)
or MLflow (:class:`MLflowSink`). Every failure is one warning line and never
changes the step's outcome; no secret from the environment reaches a warning
(:func:`redact`).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Union

POLL_INTERVAL = 1.0
# A hung metrics service must not hold a finished step hostage forever.
FLUSH_TIMEOUT = 60.0


class Metric(NamedTuple):
    name: str
    value: Union[int, float, str]
    time: Optional[str]
    # 0-based count of earlier values with the same name: MLflow's `step`.
    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose: the field's name


Sink = Callable[[Metric], None]
Warn = Callable[[str], None]


_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL|CONN", re.IGNORECASE)


def redact(text: str, env: Optional[Mapping[str, str]] = None) -> str:
    """Keep SDK error messages useful without leaking credentials into logs.

    SDK exceptions may quote a tracking URI with user:password@ in it or a
    token from the environment; both are masked, and the message is capped.
    """
    env = os.environ if env is None else env
    text = _URL_USERINFO.sub("***@", text)
    for key, value in env.items():
        if value and len(value) >= 4 and _SECRET_NAME.search(key):
            text = text.replace(value, "***")
    text = " ".join(text.split())
    return text[:300]


def _module_available(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve_sink(choice: str, env: Optional[Mapping[str, str]] = None) -> str:
    """Turn ``auto`` into a concrete sink without importing the heavy SDKs."""
    if choice != "auto":
        return choice
    env = os.environ if env is None else env
    if env.get("AZUREML_RUN_ID") and _module_available("azureml.core"):
        return "azureml"
    if env.get("MLFLOW_TRACKING_URI") and _module_available("mlflow"):
        return "mlflow"
    return "none"


def _timestamp_ms(time: Optional[str]) -> Optional[int]:
    if not time:
        return None
    text = time.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        import datetime  # metrics only: a plain step does not pay for the import

        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp() * 1000)


class AzureMLSink:
    """AML run history (the classic ``azureml`` backend).

    The SDK is imported on the first metric, so a step that logs nothing never
    pays for (or fails on) the import.
    """

    def __init__(self) -> None:
        self._run: Any = None

    def __call__(self, metric: Metric) -> None:
        if self._run is None:
            from azureml.core import Run

            self._run = Run.get_context()
        self._run.log(metric.name, metric.value)

    def close(self) -> None:
        # Run history batches in the background; flush before the job ends.
        flush = getattr(self._run, "flush", None)
        if callable(flush):
            flush()


MLFLOW_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


class MLflowSink:
    """MLflow (the ``azureml_v2`` backend, or any MLFLOW_TRACKING_URI).

    MLflow metrics must be numbers, so string values become tags.
    """

    def __init__(self) -> None:
        self._mlflow: Any = None
        # MLflow's own defaults (120 s per request, 7 retries with back-off) stall a
        # step for minutes when the server is unreachable; bound them unless set.
        for name, value in MLFLOW_BOUNDS.items():
            os.environ.setdefault(name, value)

    def describe(self, exc: BaseException) -> str:
        uri = redact(os.environ.get("MLFLOW_TRACKING_URI", "") or "(MLFLOW_TRACKING_URI not set)")
        return (f"the MLflow tracking server {uri} did not take the metric; check that it is reachable "
                f"(requests give up after {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT')} s, "
                f"{os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES')} retries: MLFLOW_HTTP_REQUEST_TIMEOUT and "
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES change that)")

    def __call__(self, metric: Metric) -> None:
        if self._mlflow is None:
            import mlflow

            self._mlflow = mlflow
        if isinstance(metric.value, str):
            self._mlflow.set_tag(metric.name, metric.value)
            return
        ts = _timestamp_ms(metric.time)
        if ts is None:
            self._mlflow.log_metric(metric.name, metric.value, step=metric.index)
        else:
            self._mlflow.log_metric(metric.name, metric.value, step=metric.index, timestamp=ts)


def make_sink(name: str) -> Optional[Sink]:
    if name == "azureml":
        return AzureMLSink()
    if name == "mlflow":
        return MLflowSink()
    return None


def parse_metric_line(line: bytes) -> "tuple[str, Union[int, float, str], Optional[str]]":
    """Validate one JSON line; raise ValueError with a reason that quotes no data."""
    try:
        import json  # metrics only

        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    name = record.get("name")
    value = record.get("value")
    time = record.get("time")
    if not isinstance(name, str) or not name:
        raise ValueError('"name" is missing or not a non-empty string')
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f'"value" of metric {name!r} is not a number or a string')
    if time is not None and not isinstance(time, str):
        raise ValueError(f'"time" of metric {name!r} is not a string')
    return name, value, time


class MetricsForwarder:
    """Tail the metrics file and hand each new complete line to a sink.

    R appends whole lines; a line without its newline yet is left for the next
    poll, except at the final drain, when R has exited and nothing more comes.
    Every failure is one warning line and never affects the step: a bad line
    is skipped (only the first is reported), a failing sink is disabled.
    """

    def __init__(
        self,
        path: str,
        sink: Sink,
        warn: Warn,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.path = path
        self.sink: Optional[Sink] = sink
        self.warn = warn
        self.poll_interval = poll_interval
        self.forwarded = 0
        self.skipped = 0
        self._offset = 0
        self._partial = b""
        self._line_no = 0
        self._counts: Dict[str, int] = {}
        self._quiet = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _warn(self, message: str) -> None:
        if not self._quiet:
            self.warn(message)

    def _read_new(self) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                if size < self._offset:  # truncated or replaced: start over
                    self._offset = 0
                    self._partial = b""
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            if self.sink is not None:
                self._warn(f"cannot read the metrics file {self.path}: {exc.strerror or exc}; metrics are not forwarded")
                self.sink = None
            return b""
        self._offset += len(data)
        return data

    def _forward(self, line: bytes) -> None:
        self._line_no += 1
        if not line.strip() or self.sink is None:
            return
        try:
            name, value, time = parse_metric_line(line)
        except ValueError as exc:
            self.skipped += 1
            if self.skipped == 1:
                self._warn(
                    f"skipped metric line {self._line_no} of {self.path}: {exc} "
                    "(further bad lines are skipped silently)"
                )
            return
        index = self._counts.get(name, 0)
        self._counts[name] = index + 1
        try:
            self.sink(Metric(name, value, time, index))
        except Exception as exc:  # noqa: BLE001 - any SDK failure must not end the step
            describe = getattr(self.sink, "describe", None)
            self.sink = None
            detail = redact(str(exc))
            why = (describe(exc) + "; ") if callable(describe) else ""
            self._warn(
                f"forwarding metrics failed: {why}{type(exc).__name__}{': ' + detail if detail else ''}; "
                "further metrics of this step are not forwarded"
            )
            return
        self.forwarded += 1

    def poll(self, final: bool = False) -> None:
        """Forward the complete lines written since the last call."""
        with self._lock:
            if self.sink is None:
                return
            data = self._partial + self._read_new()
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if final and self._partial:
                lines.append(self._partial)
                self._partial = b""
            for line in lines:
                self._forward(line)

    def close(self) -> None:
        """Final drain, then let the sink flush what it batched."""
        self.poll(final=True)
        close = getattr(self.sink, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # noqa: BLE001
                self._warn(f"flushing metrics failed ({type(exc).__name__}: {redact(str(exc))})")

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.poll()
        self.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="amlr-metrics", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Drain and flush; give up after `timeout` so a hung service cannot block the step."""
        self._stop.set()
        if self._thread is None:
            self.close()
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            where = ""
            if isinstance(self.sink, MLflowSink):
                uri = redact(os.environ.get("MLFLOW_TRACKING_URI", "") or "(MLFLOW_TRACKING_URI not set)")
                where = f" to the MLflow tracking server {uri}, which is slow or unreachable"
            elif isinstance(self.sink, AzureMLSink):
                where = " to Azure ML run history, which is slow or unreachable"
            self._warn(f"metrics were still being forwarded{where} after {timeout:g} s; the step goes on without "
                       "waiting, and some metrics may be missing")
            self._quiet = True  # nothing may follow the final line
            return False
        return True


def start(choice: str, path: str, warn: Warn) -> Optional[MetricsForwarder]:
    """Forward the metrics file at ``path`` to the sink ``choice`` names (``auto`` resolved here)."""
    try:
        sink = make_sink(resolve_sink(choice))
    except Exception as exc:  # noqa: BLE001 - metrics never stop a step
        warn(f"metrics are not forwarded ({type(exc).__name__}: {redact(str(exc))})")
        return None
    if sink is None:
        return None
    forwarder = MetricsForwarder(path, sink, warn)
    forwarder.start()
    return forwarder
