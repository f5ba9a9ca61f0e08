"""OtelSink: finished traces become GenAI semantic-convention spans and metrics (in memory)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tether import Tether
from tether.config import parse_config
from tether.config.telemetry import TelemetryConfig
from tether.errors import UpstreamError
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.telemetry.otel import OtelSink, Upstream, provider_name, upstreams_from
from tether.telemetry.trace import Attempt, Trace, TraceEvent
from tether.types import Usage

UPSTREAMS = {
    "openai": Upstream("openai", "https://api.openai.com/v1"),
    "ollama": Upstream("openai", "http://127.0.0.1:11434/v1"),
    "local": Upstream("local"),
}
STARTED = 1_700_000_000.0
NS = 1_000_000_000
START_NS = 1_700_000_000 * NS


def fallback_trace() -> Trace:
    """A timeout on the primary, a retry, then a fallback that answers."""
    trace = Trace(feature="support-reply", variant="candidate", started_at=STARTED)
    trace.attempts = [
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            1,
            status="error",
            error_class="Timeout",
            error="openai:gpt-4o-mini: no answer in 8.0s",
            start_ms=2.0,
            end_ms=8002.0,
        ),
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            2,
            status="error",
            error_class="UpstreamError",
            error="502 bad gateway",
            status_code=502,
            start_ms=8102.0,
            end_ms=8150.0,
        ),
        Attempt(
            "ollama:llama3.1",
            "ollama",
            3,
            chain_position=1,
            start_ms=8151.0,
            end_ms=9151.0,
            usage=Usage(120, 30),
            cost_usd=0.0004,
        ),
    ]
    trace.events = [
        TraceEvent(
            "retry",
            8002.5,
            {"model": "openai:gpt-4o-mini", "attempt": 2, "delay_s": 0.1, "error": "Timeout"},
        ),
        TraceEvent(
            "fallback",
            8150.5,
            {"frm": "openai:gpt-4o-mini", "to": "ollama:llama3.1", "reason": "upstream_error"},
        ),
    ]
    trace.status, trace.output, trace.model = "ok", "Reset it from Settings.", "ollama:llama3.1"
    trace.usage, trace.cost_usd, trace.latency_ms = Usage(120, 30), 0.0004, 9160.0
    return trace


def degraded_trace() -> Trace:
    """Every upstream failed; the feature answered from its failure path."""
    trace = Trace(feature="support-reply", started_at=STARTED)
    trace.attempts = [
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            1,
            status="error",
            error_class="RateLimited",
            error="429",
            status_code=429,
            start_ms=1.0,
            end_ms=40.0,
        ),
    ]
    trace.events = [
        TraceEvent("breaker_open", 41.0, {"model": "ollama:llama3.1", "retry_in_s": 12.5}),
        TraceEvent(
            "failure_path", 42.0, {"via": "respond", "reason": "rate_limited", "error": "429"}
        ),
    ]
    trace.status, trace.degraded, trace.reason = "degraded", True, "rate_limited"
    trace.output, trace.latency_ms = "Sorry, I can't answer that right now.", 45.0
    return trace


@pytest.fixture
def exported() -> Iterator[tuple[OtelSink, InMemorySpanExporter, InMemoryMetricReader]]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    sink = OtelSink(span_exporter=spans, metric_reader=metrics, upstreams=UPSTREAMS)
    yield sink, spans, metrics
    sink.shutdown()


def finished(sink: OtelSink, exporter: InMemorySpanExporter) -> dict[str, Any]:
    """Flush and index spans: ``root`` plus ``attempts`` in start order."""
    assert sink.force_flush(5.0)
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1
    attempts = sorted((s for s in spans if s.parent is not None), key=lambda s: s.start_time or 0)
    return {"root": roots[0], "attempts": attempts}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_fallback_call_becomes_root_and_attempt_spans(exported: Any) -> None:
    sink, exporter, _ = exported
    trace = fallback_trace()
    sink.record(trace)
    got = finished(sink, exporter)
    root, attempts = got["root"], got["attempts"]

    assert root.name == "chat gpt-4o-mini" and root.kind is SpanKind.INTERNAL
    assert format(root.context.trace_id, "032x") == trace.id
    assert root.start_time == START_NS and root.end_time == START_NS + 9160 * 10**6
    assert root.status.status_code is StatusCode.UNSET
    assert attrs(root) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "llama3.1",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "tether.trace_id": trace.id,
        "tether.feature": "support-reply",
        "tether.variant": "candidate",
        "tether.status": "ok",
        "tether.degraded": False,
        "tether.cost_usd": 0.0004,
        "tether.attempts": 3,
        "tether.model": "ollama:llama3.1",
    }

    assert [s.name for s in attempts] == ["chat gpt-4o-mini"] * 2 + ["chat llama3.1"]
    assert all(s.kind is SpanKind.CLIENT for s in attempts)
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in attempts)
    first, second, third = attempts
    assert first.start_time == START_NS + 2 * 10**6
    assert first.end_time == START_NS + 8002 * 10**6
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "openai:gpt-4o-mini: no answer in 8.0s"
    assert attrs(first)["error.type"] == "Timeout"
    assert "gen_ai.response.model" not in attrs(first)
    assert attrs(second)["http.response.status_code"] == 502
    assert attrs(third) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "llama3.1",
        "gen_ai.response.model": "llama3.1",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.request.stream": False,
        "server.address": "127.0.0.1",
        "server.port": 11434,
        "tether.upstream": "ollama:llama3.1",
        "tether.attempt": 3,
        "tether.chain_position": 1,
        "tether.cost_usd": 0.0004,
    }
    assert third.status.status_code is StatusCode.UNSET


def test_decisions_become_root_span_events(exported: Any) -> None:
    sink, exporter, _ = exported
    sink.record(fallback_trace())
    root = finished(sink, exporter)["root"]
    retry, fallback = root.events
    assert retry.name == "tether.retry"
    assert retry.timestamp == START_NS + int(8002.5 * 10**6)
    assert dict(retry.attributes) == {
        "tether.model": "openai:gpt-4o-mini",
        "tether.attempt": 2,
        "tether.delay_s": 0.1,
        "tether.error": "Timeout",
    }
    assert fallback.name == "tether.fallback"
    assert dict(fallback.attributes) == {
        "tether.from": "openai:gpt-4o-mini",
        "tether.to": "ollama:llama3.1",
        "tether.reason": "upstream_error",
    }


def test_degraded_call_is_marked_but_not_an_error(exported: Any) -> None:
    sink, exporter, _ = exported
    sink.record(degraded_trace())
    got = finished(sink, exporter)
    root = got["root"]
    assert attrs(root)["tether.degraded"] is True
    assert attrs(root)["tether.reason"] == "rate_limited"
    assert attrs(root)["tether.status"] == "degraded"
    assert "gen_ai.response.model" not in attrs(root) and "error.type" not in attrs(root)
    assert root.status.status_code is StatusCode.UNSET
    assert [e.name for e in root.events] == ["tether.breaker_open", "tether.failure_path"]
    assert dict(root.events[1].attributes or {})["tether.via"] == "respond"
    (attempt,) = got["attempts"]
    assert attrs(attempt)["error.type"] == "RateLimited"


def test_failed_call_sets_error_status_and_type(exported: Any) -> None:
    sink, exporter, _ = exported
    trace = degraded_trace()
    trace.status, trace.reason = "error", "rate_limited"
    sink.record(trace)
    root = finished(sink, exporter)["root"]
    assert root.status.status_code is StatusCode.ERROR
    assert attrs(root)["error.type"] == "rate_limited"


def test_streamed_attempt_and_in_process_model(exported: Any) -> None:
    sink, exporter, _ = exported
    trace = Trace(feature="chat", started_at=STARTED)
    trace.attempts = [
        Attempt(
            "local:smollm2",
            "local",
            1,
            start_ms=1.0,
            end_ms=900.0,
            ttft_ms=150.0,
            streamed=True,
            usage=Usage(12, 40),
        )
    ]
    trace.status, trace.latency_ms, trace.usage = "ok", 905.0, Usage(12, 40)
    sink.record(trace)
    (attempt,) = finished(sink, exporter)["attempts"]
    assert attempt.kind is SpanKind.INTERNAL  # same-process model, per the conventions
    assert attrs(attempt)["gen_ai.provider.name"] == "llama.cpp"
    assert attrs(attempt)["gen_ai.request.stream"] is True
    assert attrs(attempt)["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.15)
    assert "server.address" not in attrs(attempt)


def test_guard_verdicts_become_evaluation_results(exported: Any) -> None:
    sink, exporter, _ = exported
    trace = fallback_trace()
    trace.events = [
        TraceEvent(
            "guard",
            1.0,
            {  # the shape tether.guards.runner records
                "guard": "prompt_injection",
                "stage": "input",
                "passed": False,
                "score": 0.93,
                "action": "block",
                "reason": "override",
                "findings": [{"type": "override", "start": 0, "end": 6}],
                "latency_ms": 0.21,
                "over_budget": False,
                "error": None,
            },
        ),
        TraceEvent(
            "gen_ai.evaluation.result",
            2.0,
            {"gen_ai.evaluation.name": "pii_redact", "label": "redacted", "findings": ["EMAIL"]},
        ),
    ]
    sink.record(trace)
    first, second = finished(sink, exporter)["root"].events
    assert first.name == second.name == "gen_ai.evaluation.result"
    assert dict(first.attributes or {}) == {
        "gen_ai.evaluation.name": "prompt_injection",
        "gen_ai.evaluation.score.value": 0.93,
        "gen_ai.evaluation.score.label": "fail",
        "gen_ai.evaluation.explanation": "override",
        "tether.guard.stage": "input",
        "tether.guard.action": "block",
        "tether.guard.findings": '[{"type": "override", "start": 0, "end": 6}]',
        "tether.guard.latency_ms": 0.21,
        "tether.guard.over_budget": False,
    }
    assert dict(second.attributes or {}) == {
        "gen_ai.evaluation.name": "pii_redact",
        "gen_ai.evaluation.score.label": "redacted",
        "tether.guard.findings": ("EMAIL",),
    }


def test_event_values_are_made_attribute_safe(exported: Any) -> None:
    sink, exporter, _ = exported
    trace = fallback_trace()
    trace.events = [
        TraceEvent(
            "custom", 1.0, {"nested": {"a": 1}, "mixed": [1, "x"], "none": None, "long": "y" * 5000}
        )
    ]
    sink.record(trace)
    (event,) = finished(sink, exporter)["root"].events
    values = dict(event.attributes or {})
    assert values["tether.nested"] == '{"a": 1}'
    assert values["tether.mixed"] == '[1, "x"]'
    assert "tether.none" not in values and len(values["tether.long"]) == 1000


def test_content_is_captured_only_when_opted_in() -> None:
    for capture in (False, True):
        exporter = InMemorySpanExporter()
        with OtelSink(span_exporter=exporter, capture_content=capture) as sink:
            sink.record(fallback_trace())
            root = finished(sink, exporter)["root"]
        if not capture:
            assert "gen_ai.output.messages" not in attrs(root)
            continue
        (message,) = json.loads(attrs(root)["gen_ai.output.messages"])
        assert message == {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Reset it from Settings."}],
            "finish_reason": "stop",
        }


def points(
    reader: InMemoryMetricReader, name: str
) -> list[tuple[dict[str, Any], HistogramDataPoint]]:
    """The histogram points of ``name``, each with its attributes as a plain dict."""
    data = reader.get_metrics_data()  # the sink was flushed: every trace is converted
    assert data is not None
    found: list[tuple[dict[str, Any], HistogramDataPoint]] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(
                        (dict(p.attributes or {}), p)
                        for p in metric.data.data_points
                        if isinstance(p, HistogramDataPoint)
                    )
    return found


def test_genai_metrics_per_attempt(exported: Any) -> None:
    sink, _, reader = exported
    sink.record(fallback_trace())
    assert sink.force_flush(5.0)
    durations = {
        a.get("error.type"): (a, p) for a, p in points(reader, "gen_ai.client.operation.duration")
    }
    assert set(durations) == {"Timeout", "UpstreamError", None}
    assert durations["Timeout"][1].sum == pytest.approx(8.0)
    assert durations[None][0] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "llama3.1",
        "gen_ai.response.model": "llama3.1",
        "server.address": "127.0.0.1",
        "server.port": 11434,
    }
    assert durations[None][1].explicit_bounds[:3] == (0.01, 0.02, 0.04)
    tokens = {
        a["gen_ai.token.type"]: (a, p) for a, p in points(reader, "gen_ai.client.token.usage")
    }
    assert tokens["input"][1].sum == 120 and tokens["output"][1].sum == 30
    assert tokens["input"][1].count == 1  # failed attempts without usage are not counted
    assert tokens["input"][0]["gen_ai.request.model"] == "llama3.1"
    assert points(reader, "gen_ai.client.operation.time_to_first_chunk") == []


def test_time_to_first_chunk_metric_for_streams(exported: Any) -> None:
    sink, _, reader = exported
    trace = Trace(feature="chat", started_at=STARTED)
    trace.attempts = [
        Attempt(
            "local:smollm2", "local", 1, start_ms=0.0, end_ms=500.0, ttft_ms=80.0, streamed=True
        )
    ]
    trace.status = "ok"
    sink.record(trace)
    assert sink.force_flush(5.0)
    ((attributes, point),) = points(reader, "gen_ai.client.operation.time_to_first_chunk")
    assert point.sum == pytest.approx(0.08)
    assert attributes["gen_ai.provider.name"] == "llama.cpp"


def test_provider_names_follow_the_conventions() -> None:
    assert provider_name("openai") == "openai"
    assert provider_name("anthropic") == "anthropic"
    assert provider_name("local") == "llama.cpp"
    assert provider_name("scripted") == "tether.scripted"
    config = parse_config(
        """
providers:
  ollama: {kind: openai, base_url: "http://127.0.0.1:11434/v1"}
  claude: {kind: anthropic}
features: {}
""",
        "t.yaml",
        {},
    )
    upstreams = upstreams_from(config)
    assert upstreams["ollama"] == Upstream("openai", "http://127.0.0.1:11434/v1")
    assert upstreams["claude"].server == ("api.anthropic.com", 443)
    assert upstreams["local"] == Upstream("local", None)


def test_unknown_provider_and_odd_trace_id(exported: Any) -> None:
    sink, exporter, _ = exported
    trace = fallback_trace()
    trace.id = "not-a-hex-id"
    trace.attempts = [Attempt("custom:m1", "custom", 1, start_ms=0.0, end_ms=1.0)]
    trace.events = []
    sink.record(trace)
    got = finished(sink, exporter)
    assert attrs(got["root"])["tether.trace_id"] == "not-a-hex-id"
    assert got["root"].context.trace_id != 0
    assert attrs(got["attempts"][0])["gen_ai.provider.name"] == "custom"


def test_root_trace_ids_are_not_reused_across_calls(exported: Any) -> None:
    sink, exporter, _ = exported
    first, second = fallback_trace(), fallback_trace()
    sink.record(first)
    sink.record(second)
    assert sink.force_flush(5.0)
    ids = {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()}
    assert ids == {first.id, second.id}


def test_record_never_raises_and_logs(exported: Any, caplog: pytest.LogCaptureFixture) -> None:
    sink, exporter, _ = exported
    broken = fallback_trace()
    broken.attempts = [None]  # type: ignore[list-item]
    with caplog.at_level(logging.ERROR, "tether.telemetry.otel"):
        sink.record(broken)
        assert sink.force_flush(5.0)
    assert f"could not convert trace {broken.id}" in caplog.text
    sink.record(fallback_trace())  # the sink still works
    assert len(finished(sink, exporter)["attempts"]) == 3


class Gate(SpanProcessor):
    """Holds the conversion thread inside ``on_end`` until opened."""

    def __init__(self) -> None:
        self.entered, self.opened = threading.Event(), threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        self.entered.set()
        self.opened.wait(5.0)


async def test_write_only_hands_off_and_a_full_buffer_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = InMemorySpanExporter()
    with OtelSink(span_exporter=exporter, queue_size=1) as sink:
        gate = Gate()
        sink.tracer_provider.add_span_processor(gate)
        first, second, third = fallback_trace(), fallback_trace(), fallback_trace()
        await sink.write(first)  # the thread takes it and waits at the gate
        assert gate.entered.wait(5.0)
        with caplog.at_level(logging.WARNING, "tether.telemetry.otel"):
            await sink.write(second)  # waits in the buffer
            await sink.write(third)  # buffer full: dropped, counted, logged
        assert sink.dropped == 1
        assert f"trace {third.id} not exported" in caplog.text
        gate.opened.set()
        assert sink.force_flush(5.0)
    trace_ids = {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()}
    assert trace_ids == {first.id, second.id}


def test_convert_runs_on_the_calling_thread() -> None:
    exporter = InMemorySpanExporter()
    with OtelSink(span_exporter=exporter) as sink:
        sink.convert(fallback_trace())
        sink.tracer_provider.force_flush()
        assert len(exporter.get_finished_spans()) == 4


def test_shutdown_is_idempotent_and_later_traces_are_ignored() -> None:
    exporter = InMemorySpanExporter()
    sink = OtelSink(span_exporter=exporter)
    sink.record(fallback_trace())
    sink.shutdown()
    count = len(exporter.get_finished_spans())
    assert count == 4
    sink.record(fallback_trace())
    sink.shutdown()
    assert len(exporter.get_finished_spans()) == count


def test_from_config_without_endpoint_exports_nothing() -> None:
    assert OtelSink.from_config(TelemetryConfig()) is None


def test_telemetry_config_is_strict() -> None:
    config = TelemetryConfig.model_validate(
        {"otlp_endpoint": "http://127.0.0.1:4318", "otlp_headers": {"x-key": "k"}}
    )
    assert config.service_name == "tether" and config.capture_content is False
    assert config.prometheus is True and config.otlp_compression == "gzip"
    with pytest.raises(ValueError, match="otlp_endpiont"):
        TelemetryConfig.model_validate({"otlp_endpiont": "http://x"})


CONFIG = """\
providers:
  up: {kind: scripted}
  spare: {kind: scripted}
features:
  answer:
    prompt: {template: "{{ message }}"}
    model: up:big
    fallbacks: [spare:small]
    retry: {max_attempts: 1}
    on_failure: {respond: "Sorry, later."}
"""


async def test_traces_from_the_real_pipeline() -> None:
    config = parse_config(CONFIG, "t.yaml", {})
    exporter = InMemorySpanExporter()
    with OtelSink(span_exporter=exporter, upstreams=upstreams_from(config)) as sink:
        providers = {
            "up": ScriptedProvider([Fail(UpstreamError("down", status_code=503))], name="up"),
            "spare": ScriptedProvider([Reply("from spare")], name="spare"),
        }
        tether = Tether(config, providers=providers, sink=sink)
        result = await tether.run("answer", {"message": "hi"})
        got = finished(sink, exporter)
    root, attempts = got["root"], got["attempts"]
    assert format(root.context.trace_id, "032x") == result.trace_id
    assert root.name == "chat big"
    assert attrs(root)["gen_ai.response.model"] == "small"
    assert attrs(root)["gen_ai.provider.name"] == "tether.scripted"
    assert [a.name for a in attempts] == ["chat big", "chat small"]
    assert attrs(attempts[0])["error.type"] == "UpstreamError"
    assert attrs(attempts[0])["http.response.status_code"] == 503
    assert [e.name for e in root.events] == ["tether.fallback"]
    assert root.end_time is not None and attempts[-1].end_time is not None
    assert root.end_time >= attempts[-1].end_time
