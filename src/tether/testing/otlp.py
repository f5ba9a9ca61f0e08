"""A real OTLP/HTTP receiver on loopback, for testing telemetry end to end.

::

    with OtlpReceiver() as receiver:
        sink = OtelSink.otlp(receiver.endpoint)
        ...                                   # make calls
        sink.force_flush()
        spans = receiver.wait_for_spans(2)
        assert spans[0].attributes["gen_ai.operation.name"] == "chat"
        duration = receiver.wait_for_metric("gen_ai.client.operation.duration")

It accepts ``POST /v1/traces`` and ``POST /v1/metrics`` with protobuf bodies (plain, gzip or
deflate), decodes them with ``opentelemetry-proto`` and keeps plain-Python views of every span
and metric (the raw requests too). It runs ``http.server`` in a background thread.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

PROTOBUF = "application/x-protobuf"


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as a Python value (arrays become tuples, kvlists dicts)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """A decoded span. Ids are lower-case hex; ``kind`` is ``INTERNAL``, ``CLIENT`` ...;
    ``status`` is ``UNSET``, ``OK`` or ``ERROR``."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: tuple[ReceivedEvent, ...]
    status: str
    status_message: str
    resource: dict[str, Any]
    scope: str
    schema_url: str

    @classmethod
    def decode(cls, span: Span, resource: dict[str, Any], scope: str, schema: str) -> ReceivedSpan:
        return cls(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex() or None,
            kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            attributes=attributes(span.attributes),
            events=tuple(
                ReceivedEvent(e.name, e.time_unix_nano, attributes(e.attributes))
                for e in span.events
            ),
            status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
            status_message=span.status.message,
            resource=resource,
            scope=scope,
            schema_url=schema,
        )

    def event(self, name: str) -> ReceivedEvent:
        return next(e for e in self.events if e.name == name)


@dataclass(frozen=True, slots=True)
class DataPoint:
    """One point: ``value`` for sums and gauges; ``count``/``sum``/``bucket_counts`` for
    histograms."""

    attributes: dict[str, Any]
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceivedMetric:
    """A decoded metric from one export (``type``: ``histogram``, ``sum``, ``gauge`` ...)."""

    name: str
    unit: str
    description: str
    type: str
    points: tuple[DataPoint, ...]
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""

    @classmethod
    def decode(cls, metric: Metric, resource: dict[str, Any], scope: str) -> ReceivedMetric:
        kind = metric.WhichOneof("data") or ""
        return cls(
            metric.name,
            metric.unit,
            metric.description,
            kind,
            _points(metric, kind),
            resource,
            scope,
        )


def _points(metric: Metric, kind: str) -> tuple[DataPoint, ...]:
    if kind == "histogram":
        return tuple(
            DataPoint(
                attributes(p.attributes),
                count=p.count,
                sum=p.sum,
                bucket_counts=tuple(p.bucket_counts),
                explicit_bounds=tuple(p.explicit_bounds),
            )
            for p in metric.histogram.data_points
        )
    if kind in ("sum", "gauge"):
        numbers = metric.sum.data_points if kind == "sum" else metric.gauge.data_points
        return tuple(
            DataPoint(attributes(p.attributes), value=getattr(p, p.WhichOneof("value") or "as_int"))
            for p in numbers
        )
    return ()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: OtlpReceiver) -> None:
        super().__init__(address, _Handler)
        self.receiver = receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        route = self.server.receiver.route(self.path)
        if route is None:
            self._reply(404, b"", "text/plain")
            return
        if not self.headers.get("Content-Type", "").startswith(PROTOBUF):
            self._reply(415, b"only application/x-protobuf is supported", "text/plain")
            return
        encoding = self.headers.get("Content-Encoding", "")
        self.server.receiver.seen(self.path, encoding)
        try:
            response = route(_decompress(self._body(), encoding))
        except (DecodeError, OSError, ValueError, zlib.error) as exc:
            self._reply(400, str(exc).encode(), "text/plain")
            return
        self._reply(200, response, PROTOBUF)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test's output is not the place for an access log."""


def _decompress(body: bytes, encoding: str) -> bytes:
    match encoding.strip().lower():
        case "gzip":
            return gzip.decompress(body)
        case "deflate":
            return zlib.decompress(body)
        case "" | "identity":
            return body
        case other:
            raise ValueError(f"unsupported Content-Encoding {other!r}")


class OtlpReceiver:
    """An OTLP/HTTP collector stand-in on ``127.0.0.1`` (a free port unless ``port`` is given).

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        self.trace_requests: list[ExportTraceServiceRequest] = []
        self.metric_requests: list[ExportMetricsServiceRequest] = []
        self.requests: list[tuple[str, str]] = []
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetric] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> OtlpReceiver:
        if self._server is None:
            self._server = _Server(self._address, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="tether-otlp-receiver",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP base URL (``http://127.0.0.1:<port>``); signal paths go after it."""
        if self._server is None:
            raise RuntimeError("the receiver is not started: use `with OtlpReceiver() as r:`")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------------ what arrived

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._changed:
            return list(self._spans)

    @property
    def metrics(self) -> list[ReceivedMetric]:
        """Every metric of every export, oldest first (cumulative metrics repeat)."""
        with self._changed:
            return list(self._metrics)

    def span(self, name: str) -> ReceivedSpan:
        """The first span called ``name`` (KeyError if none arrived)."""
        for span in self.spans:
            if span.name == name:
                return span
        raise KeyError(f"no span named {name!r} arrived (got {[s.name for s in self.spans]})")

    def metric(self, name: str) -> ReceivedMetric:
        """The latest export of the metric called ``name`` (KeyError if none arrived)."""
        for metric in reversed(self.metrics):
            if metric.name == name:
                return metric
        raise KeyError(f"no metric named {name!r} arrived")

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """Block until at least ``count`` spans arrived; TimeoutError after ``timeout`` s."""
        self._wait(lambda: len(self._spans) >= count, timeout, f"{count} spans")
        return self.spans

    def wait_for_metric(self, name: str, timeout: float = 5.0) -> ReceivedMetric:
        """Block until a metric called ``name`` arrived and return its latest export."""
        self._wait(lambda: any(m.name == name for m in self._metrics), timeout, repr(name))
        return self.metric(name)

    def clear(self) -> None:
        with self._changed:
            self.trace_requests.clear()
            self.metric_requests.clear()
            self.requests.clear()
            self._spans.clear()
            self._metrics.clear()

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"OTLP receiver: waited {timeout}s for {what}; got {len(self._spans)} "
                        f"spans, metrics {sorted({m.name for m in self._metrics})}"
                    )
                self._changed.wait(remaining)

    # ------------------------------------------------------------------ decoding

    def seen(self, path: str, encoding: str) -> None:
        """Note a request: ``requests`` holds ``(path, Content-Encoding)`` of each POST."""
        with self._changed:
            self.requests.append((path, encoding))

    def route(self, path: str) -> Callable[[bytes], bytes] | None:
        match path.split("?", 1)[0].rstrip("/"):
            case "/v1/traces":
                return self._traces
            case "/v1/metrics":
                return self._metrics_export
            case _:
                return None

    def _traces(self, body: bytes) -> bytes:
        request = ExportTraceServiceRequest.FromString(body)
        spans = [
            ReceivedSpan.decode(
                span,
                attributes(rs.resource.attributes),
                ss.scope.name,
                ss.schema_url or rs.schema_url,
            )
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        with self._changed:
            self.trace_requests.append(request)
            self._spans.extend(spans)
            self._changed.notify_all()
        return bytes(ExportTraceServiceResponse().SerializeToString())

    def _metrics_export(self, body: bytes) -> bytes:
        request = ExportMetricsServiceRequest.FromString(body)
        metrics = [
            ReceivedMetric.decode(metric, attributes(rm.resource.attributes), sm.scope.name)
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        ]
        with self._changed:
            self.metric_requests.append(request)
            self._metrics.extend(metrics)
            self._changed.notify_all()
        return bytes(ExportMetricsServiceResponse().SerializeToString())
