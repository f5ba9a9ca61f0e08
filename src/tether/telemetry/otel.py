"""OpenTelemetry export: each finished :class:`~tether.telemetry.trace.Trace` becomes GenAI
semantic-convention spans and metrics, after the fact, with the call's real timestamps.

::

    chat gpt-4o-mini     INTERNAL  the whole call (tether.feature, tether.degraded, usage, cost)
    ├─ chat gpt-4o-mini  CLIENT    attempt 1: error.type=Timeout, status ERROR
    ├─ chat gpt-4o-mini  CLIENT    attempt 2 (after a retry)
    └─ chat llama3.1     CLIENT    attempt 3 (after a fallback); INTERNAL for in-process models
    root span events: tether.retry, tether.fallback, tether.breaker_open, tether.failure_path ...
                      and guard verdicts and online scorers' results as gen_ai.evaluation.result

Metrics, one data point per attempt: ``gen_ai.client.operation.duration`` (s),
``gen_ai.client.token.usage`` ({token}, ``gen_ai.token.type`` input/output) and, for streams,
``gen_ai.client.operation.time_to_first_chunk`` (s).

Names follow the OpenTelemetry semantic conventions v1.41.0 for generative AI (status:
development): https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ and
.../gen-ai-metrics/ (``gen_ai.system`` was renamed ``gen_ai.provider.name``). The OTel trace
id of a call is its tether trace id, so a trace found in a backend opens with
``tether traces show <id>``.

``write`` only appends the trace to a bounded buffer; one background thread builds the spans
and records the measurements, and the SDK's ``BatchSpanProcessor`` and
``PeriodicExportingMetricReader`` export them from their own threads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from tether.telemetry.trace import Attempt, Trace, TraceEvent

if TYPE_CHECKING:
    from tether.config.models import TetherConfig
    from tether.config.telemetry import TelemetryConfig

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
SCOPE = "tether"

# -- GenAI semantic conventions v1.41.0 (registry: attributes-registry/gen-ai.md)
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_TTFC = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT = "gen_ai.usage.input_tokens"
USAGE_OUTPUT = "gen_ai.usage.output_tokens"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOKEN_TYPE = "gen_ai.token.type"
EVALUATION_RESULT = "gen_ai.evaluation.result"
EVALUATION_NAME = "gen_ai.evaluation.name"
EVALUATION_SCORE_VALUE = "gen_ai.evaluation.score.value"
EVALUATION_SCORE_LABEL = "gen_ai.evaluation.score.label"
EVALUATION_EXPLANATION = "gen_ai.evaluation.explanation"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
HTTP_STATUS_CODE = "http.response.status_code"
METRIC_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKENS = "gen_ai.client.token.usage"
METRIC_TTFC = "gen_ai.client.operation.time_to_first_chunk"
CHAT = "chat"

# Explicit bucket boundaries the conventions ask for.
# fmt: off
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64,
    1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096,
    16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
# fmt: on

_MAX_TEXT = 1000
logger = logging.getLogger("tether.telemetry.otel")


def provider_name(kind: str) -> str:
    """A provider kind (``providers.<name>.kind``) as a ``gen_ai.provider.name`` value: the
    well-known value when the conventions have one (``openai``, ``anthropic``), ``llama.cpp``
    for the embedded model, ``tether.scripted`` for the test double, else the kind itself."""
    match kind:
        case "openai" | "anthropic":
            return kind
        case "local":
            return "llama.cpp"  # the embedded model runs on llama.cpp; no well-known value
        case "scripted":
            return "tether.scripted"
        case _:
            return kind


def _in_process(kind: str) -> bool:
    return kind in ("local", "scripted")


@dataclass(frozen=True, slots=True)
class Upstream:
    """What the sink knows about a configured provider: its kind and, if remote, its URL."""

    kind: str
    base_url: str | None = None

    @property
    def server(self) -> tuple[str, int] | None:
        if not self.base_url:
            return None
        parts = urlsplit(self.base_url)
        if not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname, port


def upstreams_from(config: TetherConfig) -> dict[str, Upstream]:
    """Provider name -> :class:`Upstream`, from the declared providers."""
    return {
        name: Upstream(provider.kind, getattr(provider, "base_url", None))
        for name, provider in config.providers.items()
    }


class _CallTraceIds(IdGenerator):
    """Random ids, except that a root span may take the tether trace id of its call."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._next = threading.local()

    def use_trace_id(self, trace_id: int | None) -> None:
        self._next.trace_id = trace_id

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        trace_id: int | None = getattr(self._next, "trace_id", None)
        self._next.trace_id = None
        return trace_id if trace_id else self._random.generate_trace_id()


def _otel_trace_id(trace_id: str) -> int | None:
    if len(trace_id) != 32:
        return None
    try:
        value = int(trace_id, 16)
    except ValueError:
        return None
    return value or None


def _ns(trace: Trace, offset_ms: float) -> int:
    return int(trace.started_at * 1e9) + int(max(0.0, offset_ms) * 1e6)


def _model_only(ref: str) -> str:
    """``"openai:gpt-4o-mini"`` -> ``"gpt-4o-mini"``."""
    _, sep, model = ref.partition(":")
    return model if sep else ref


def _value(value: Any) -> AttributeValue | None:
    """A trace event value as an OTel attribute value (None: leave the attribute out)."""
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    if isinstance(value, list | tuple) and value:
        first = type(value[0])
        if first in (str, bool, int, float) and all(type(v) is first for v in value):
            return tuple(value)
    return json.dumps(value, default=str)[:_MAX_TEXT]


def _attempt_failed(attempt: Attempt) -> bool:
    return attempt.status == "error" or attempt.error_class is not None


class GenAiSpans:
    """Turns a finished trace into spans on ``tracer``."""

    def __init__(
        self,
        tracer: trace_api.Tracer,
        ids: _CallTraceIds | None,
        upstreams: Mapping[str, Upstream],
        capture_content: bool,
    ) -> None:
        self._tracer = tracer
        self._ids = ids
        self._upstreams = upstreams
        self._capture_content = capture_content

    def upstream(self, provider: str) -> Upstream:
        return self._upstreams.get(provider) or Upstream(provider)

    def emit(self, trace: Trace) -> None:
        if self._ids is not None:
            self._ids.use_trace_id(_otel_trace_id(trace.id))
        primary = trace.attempts[0] if trace.attempts else None
        model = _model_only(primary.model) if primary else _model_only(trace.model or "")
        operation = primary.operation if primary else CHAT
        root = self._tracer.start_span(
            f"{operation} {model}" if model else operation,
            kind=SpanKind.INTERNAL,
            attributes=self._root_attributes(trace, primary, model),
            start_time=_ns(trace, 0.0),
        )
        if self._ids is not None:
            self._ids.use_trace_id(None)
        parent = trace_api.set_span_in_context(root)
        for attempt in trace.attempts:
            self._attempt_span(trace, attempt, parent)
        for event in trace.events:
            name, attributes = event_attributes(event)
            root.add_event(name, attributes, timestamp=_ns(trace, event.at_ms))
        if trace.status == "error":
            root.set_status(Status(StatusCode.ERROR, f"{trace.reason or 'error'}"))
        last_end = max((a.end_ms for a in trace.attempts), default=0.0)
        root.end(end_time=_ns(trace, max(trace.latency_ms, last_end)))

    def _root_attributes(
        self, trace: Trace, primary: Attempt | None, model: str
    ) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {
            OPERATION_NAME: primary.operation if primary else CHAT,
            USAGE_INPUT: trace.usage.input_tokens,
            USAGE_OUTPUT: trace.usage.output_tokens,
            "tether.trace_id": trace.id,
            "tether.feature": trace.feature,
            "tether.variant": trace.variant,
            "tether.status": trace.status,
            "tether.degraded": trace.degraded,
            "tether.cost_usd": trace.cost_usd,
            "tether.attempts": len(trace.attempts),
        }
        if model:
            attrs[REQUEST_MODEL] = model
        if primary is not None:
            attrs[PROVIDER_NAME] = provider_name(self.upstream(primary.provider).kind)
        answered = next((a for a in reversed(trace.attempts) if not _attempt_failed(a)), None)
        if answered is not None and trace.status != "error":
            attrs[RESPONSE_MODEL] = _response_model(answered)
            attrs["tether.model"] = answered.model
        if trace.reason:
            attrs["tether.reason"] = trace.reason
        if trace.status == "error":
            attrs[ERROR_TYPE] = trace.reason or "error"
        chat = attrs[OPERATION_NAME] == CHAT  # an embedding call's output is no message
        if self._capture_content and chat and trace.status == "ok" and trace.output is not None:
            attrs[OUTPUT_MESSAGES] = _output_messages(trace.output)
        return attrs

    def _attempt_span(self, trace: Trace, attempt: Attempt, parent: Context) -> None:
        upstream = self.upstream(attempt.provider)
        model = _model_only(attempt.model)
        span = self._tracer.start_span(
            f"{attempt.operation} {model}",
            context=parent,
            kind=SpanKind.INTERNAL if _in_process(upstream.kind) else SpanKind.CLIENT,
            attributes=attempt_attributes(attempt, upstream),
            start_time=_ns(trace, attempt.start_ms),
        )
        if _attempt_failed(attempt):
            span.set_status(Status(StatusCode.ERROR, (attempt.error or "")[:_MAX_TEXT]))
        span.end(end_time=_ns(trace, max(attempt.end_ms, attempt.start_ms)))


def _response_model(attempt: Attempt) -> str:
    """The model that answered, as the provider named it when the trace knows it."""
    named = getattr(attempt, "response_model", None)
    return named if isinstance(named, str) and named else _model_only(attempt.model)


def _output_messages(text: str) -> str:
    message = {"role": "assistant", "parts": [{"type": "text", "content": text}]}
    return json.dumps([{**message, "finish_reason": "stop"}])


def semconv_attributes(attempt: Attempt, upstream: Upstream) -> dict[str, AttributeValue]:
    """The attribute set the GenAI metrics and the attempt span share."""
    attrs: dict[str, AttributeValue] = {
        OPERATION_NAME: attempt.operation,
        PROVIDER_NAME: provider_name(upstream.kind),
        REQUEST_MODEL: _model_only(attempt.model),
    }
    if _attempt_failed(attempt):
        attrs[ERROR_TYPE] = attempt.error_class or "error"
    else:
        attrs[RESPONSE_MODEL] = _response_model(attempt)
    server = upstream.server
    if server is not None:
        attrs[SERVER_ADDRESS], attrs[SERVER_PORT] = server
    return attrs


def attempt_attributes(attempt: Attempt, upstream: Upstream) -> dict[str, AttributeValue]:
    attrs = semconv_attributes(attempt, upstream)
    attrs.update(
        {
            USAGE_INPUT: attempt.usage.input_tokens,
            USAGE_OUTPUT: attempt.usage.output_tokens,
            REQUEST_STREAM: attempt.streamed,
            "tether.upstream": attempt.model,
            "tether.attempt": attempt.number,
            "tether.chain_position": attempt.chain_position,
            "tether.cost_usd": attempt.cost_usd,
        }
    )
    if attempt.ttft_ms is not None:
        attrs[RESPONSE_TTFC] = attempt.ttft_ms / 1000.0
    if attempt.status_code is not None:
        attrs[HTTP_STATUS_CODE] = attempt.status_code
    return attrs


def event_attributes(event: TraceEvent) -> tuple[str, dict[str, AttributeValue]]:
    """A trace decision as a span event: ``tether.<kind>`` with ``tether.<key>`` attributes;
    guard verdicts (``guard`` or ``gen_ai.evaluation.result``) and online scorers' results
    (``evaluation``, :mod:`tether.evals.online`) as ``gen_ai.evaluation.result``."""
    if event.kind in ("guard", EVALUATION_RESULT):
        return EVALUATION_RESULT, _evaluation_attributes(event.data)
    if event.kind == "evaluation":
        return EVALUATION_RESULT, _evaluation_attributes(event.data, "tether.evaluation.")
    attrs: dict[str, AttributeValue] = {}
    for key, raw in event.data.items():
        value = _value(raw)
        if value is not None:
            attrs[f"tether.{'from' if key == 'frm' else key}"] = value
    return f"tether.{event.kind}", attrs


def _evaluation_attributes(
    data: Mapping[str, Any], prefix: str = "tether.guard."
) -> dict[str, AttributeValue]:
    """Guard data -> evaluation attributes. Understood keys: ``name`` / ``guard`` (evaluation
    name), ``score`` (value), ``label`` or ``passed`` (label ``pass``/``fail``), ``reason`` /
    ``explanation``; ``gen_ai.*`` and ``error.*`` keys pass through, any other key becomes
    ``<prefix><key>`` (``tether.guard.*``)."""
    attrs: dict[str, AttributeValue] = {}
    known = {"name", "guard", "score", "label", "passed", "reason", "explanation"}
    name = data.get("name", data.get("guard"))
    if name is not None:
        attrs[EVALUATION_NAME] = str(name)
    score = data.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        attrs[EVALUATION_SCORE_VALUE] = float(score)
    label = data.get("label")
    if label is None and isinstance(data.get("passed"), bool):
        label = "pass" if data["passed"] else "fail"
    if label is not None:
        attrs[EVALUATION_SCORE_LABEL] = str(label)
    explanation = data.get("explanation", data.get("reason"))
    if explanation:
        attrs[EVALUATION_EXPLANATION] = str(explanation)[:_MAX_TEXT]
    for key, raw in data.items():
        value = _value(raw)
        if value is None or key in known:
            continue
        attrs[key if key.startswith(("gen_ai.", "error.")) else f"{prefix}{key}"] = value
    return attrs


class GenAiMetrics:
    """The GenAI client metrics, recorded once per attempt."""

    def __init__(self, meter_provider: MeterProvider, upstream: Callable[[str], Upstream]) -> None:
        meter = meter_provider.get_meter(SCOPE, schema_url=SCHEMA_URL)
        self._upstream = upstream
        self._duration = meter.create_histogram(
            METRIC_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            METRIC_TOKENS,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._ttfc = meter.create_histogram(
            METRIC_TTFC,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def record(self, trace: Trace) -> None:
        for attempt in trace.attempts:
            attrs = semconv_attributes(attempt, self._upstream(attempt.provider))
            self._duration.record(max(0.0, attempt.duration_ms) / 1000.0, attrs)
            if attempt.streamed and attempt.ttft_ms is not None:
                self._ttfc.record(attempt.ttft_ms / 1000.0, attrs)
            if _attempt_failed(attempt) and attempt.usage.total_tokens == 0:
                continue  # no usage reported: the conventions say not to guess
            for token_type, count in _token_counts(attempt):
                self._tokens.record(count, {**attrs, TOKEN_TYPE: token_type})


def _token_counts(attempt: Attempt) -> Iterator[tuple[str, int]]:
    yield "input", attempt.usage.input_tokens
    yield "output", attempt.usage.output_tokens


class _Worker:
    """Converts traces on one background thread, so the request path only appends to a
    bounded buffer. When the buffer is full the trace is dropped from telemetry (it still
    reaches the store), counted in ``dropped`` and logged at most every ``warn_every_s``."""

    def __init__(
        self, convert: Callable[[Trace], None], capacity: int, warn_every_s: float = 10.0
    ) -> None:
        self._convert = convert
        self._capacity = capacity
        self._warn_every = warn_every_s
        self._items: deque[Trace] = deque()
        self._ready = threading.Condition()
        self._busy = False
        self._closing = False
        self._last_warning = float("-inf")
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="tether-otel", daemon=True)
        self._thread.start()

    def put(self, trace: Trace) -> None:
        with self._ready:
            if self._closing:
                return
            if len(self._items) < self._capacity:
                self._items.append(trace)
                self._ready.notify()
                return
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warning < self._warn_every:
                return
            self._last_warning = now
        logger.warning(
            "OpenTelemetry conversion is behind (%d traces waiting): trace %s not exported "
            "(%d dropped in total); the store still has it",
            self._capacity,
            trace.id,
            self.dropped,
        )

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._items) or self._closing)
                if not self._items:
                    return
                trace = self._items.popleft()
                self._busy = True
            try:
                self._convert(trace)
            except Exception:
                logger.exception("could not convert trace %s to OpenTelemetry; skipped", trace.id)
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()
            time.sleep(0)  # let the event loop's thread take the GIL between traces

    def drain(self, timeout_s: float) -> bool:
        """Wait until every trace handed over so far is converted."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._items and not self._busy, timeout_s)

    def close(self, timeout_s: float) -> None:
        """Convert what is waiting, then stop the thread."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        self._thread.join(timeout_s)


class OtelSink:
    """A :class:`~tether.telemetry.sink.TraceSink` that exports every call to OpenTelemetry.

    The sink owns its ``TracerProvider`` and ``MeterProvider`` (never the global ones): spans go
    to ``span_exporter`` through a ``BatchSpanProcessor``; metrics are read by
    ``metric_reader``. Use :meth:`otlp` (or :meth:`from_config`) for OTLP/HTTP export, and
    call :meth:`shutdown` when the process stops taking calls.

    ``write`` only appends the trace to a bounded buffer (``queue_size``); a background thread
    builds the spans and records the metrics, and the SDK exports them from its own threads.
    """

    def __init__(
        self,
        *,
        span_exporter: SpanExporter | None = None,
        metric_reader: MetricReader | None = None,
        service_name: str = "tether",
        upstreams: Mapping[str, Upstream] | None = None,
        capture_content: bool = False,
        schedule_delay_s: float = 1.0,
        queue_size: int = 10_000,
    ) -> None:
        resource = Resource.create({"service.name": service_name})
        self._ids = _CallTraceIds()
        self.tracer_provider = TracerProvider(resource=resource, id_generator=self._ids)
        if span_exporter is not None:
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(span_exporter, schedule_delay_millis=schedule_delay_s * 1000)
            )
        readers = [metric_reader] if metric_reader is not None else []
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        tracer = self.tracer_provider.get_tracer(SCOPE, schema_url=SCHEMA_URL)
        self._spans = GenAiSpans(tracer, self._ids, dict(upstreams or {}), capture_content)
        self._metrics = GenAiMetrics(self.meter_provider, self._spans.upstream)
        self._closed = False
        self._worker = _Worker(self.convert, queue_size)

    @classmethod
    def otlp(
        cls,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        compression: Literal["none", "gzip"] = "gzip",
        timeout_s: float = 10.0,
        export_interval_s: float = 30.0,
        service_name: str = "tether",
        upstreams: Mapping[str, Upstream] | None = None,
        capture_content: bool = False,
    ) -> OtelSink:
        """Export to an OTLP/HTTP (protobuf) endpoint: ``endpoint`` is the base URL
        (``http://127.0.0.1:4318``); ``/v1/traces`` and ``/v1/metrics`` are appended."""
        # Imported here: the exporter pulls in requests and protobuf, needed only for OTLP.
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")
        common: dict[str, Any] = {
            "headers": dict(headers or {}),
            "timeout": timeout_s,
            "compression": Compression(compression),
        }
        spans = OTLPSpanExporter(endpoint=f"{base}/v1/traces", **common)
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", **common),
            export_interval_millis=export_interval_s * 1000,
            export_timeout_millis=timeout_s * 1000,
        )
        return cls(
            span_exporter=spans,
            metric_reader=reader,
            service_name=service_name,
            upstreams=upstreams,
            capture_content=capture_content,
        )

    @classmethod
    def from_config(
        cls, telemetry: TelemetryConfig, config: TetherConfig | None = None
    ) -> OtelSink | None:
        """The sink ``telemetry`` asks for, or None when no ``otlp_endpoint`` is set.
        ``config`` names the providers, so spans say ``openai`` for a provider called ``ollama``
        of kind ``openai`` and carry ``server.address``."""
        if telemetry.otlp_endpoint is None:
            return None
        return cls.otlp(
            telemetry.otlp_endpoint,
            headers=telemetry.otlp_headers,
            compression=telemetry.otlp_compression,
            timeout_s=telemetry.otlp_timeout_s,
            export_interval_s=telemetry.metrics_export_interval_s,
            service_name=telemetry.service_name,
            upstreams=upstreams_from(config) if config is not None else None,
            capture_content=telemetry.capture_content,
        )

    async def write(self, trace: Trace) -> None:
        """The :class:`~tether.telemetry.sink.TraceSink` method: same as :meth:`record`."""
        self.record(trace)

    def record(self, trace: Trace) -> None:
        """Hand a finished trace over for export; returns at once and never raises."""
        if not self._closed:
            self._worker.put(trace)

    def convert(self, trace: Trace) -> None:
        """Build the call's spans and record its metrics now, on this thread."""
        self._spans.emit(trace)
        self._metrics.record(trace)

    @property
    def dropped(self) -> int:
        """Traces not exported because the conversion buffer was full."""
        return self._worker.dropped

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Convert and export everything handed over so far; False if not done in time."""
        deadline = time.monotonic() + timeout_s
        if not self._worker.drain(timeout_s):
            return False
        millis = max(0, int((deadline - time.monotonic()) * 1000))
        spans = self.tracer_provider.force_flush(millis)
        metrics = self.meter_provider.force_flush(millis)
        return bool(spans and metrics)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Convert what is waiting, flush, and stop the threads. Later traces are ignored."""
        if self._closed:
            return
        self._closed = True
        self._worker.close(timeout_s)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def __enter__(self) -> OtelSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
