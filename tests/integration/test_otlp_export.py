"""OTLP/HTTP export end to end: spans and metrics reach a real receiver on loopback, where the
protobuf is decoded and checked against the GenAI semantic conventions (v1.41)."""

from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tether import Tether
from tether.config import parse_config
from tether.config.telemetry import TelemetryConfig
from tether.errors import Timeout
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.telemetry.otel import OtelSink, Upstream
from tether.telemetry.trace import Attempt, Trace, TraceEvent
from tether.testing.otlp import OtlpReceiver, ReceivedSpan
from tether.types import Usage


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def fallback_trace() -> Trace:
    trace = Trace(feature="support-reply", variant="candidate")
    trace.attempts = [
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            1,
            status="error",
            error_class="Timeout",
            error="no answer in 8s",
            start_ms=1.0,
            end_ms=80.0,
        ),
        Attempt(
            "local:smollm2",
            "local",
            2,
            chain_position=1,
            start_ms=81.0,
            end_ms=300.0,
            usage=Usage(42, 7),
            cost_usd=0.0,
        ),
    ]
    trace.events = [
        TraceEvent("fallback", 80.5, {"frm": "openai:gpt-4o-mini", "to": "local:smollm2"}),
    ]
    trace.status, trace.model, trace.usage, trace.latency_ms = (
        "ok",
        "local:smollm2",
        Usage(42, 7),
        301.0,
    )
    return trace


def degraded_trace() -> Trace:
    trace = Trace(feature="support-reply")
    trace.attempts = [
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            1,
            status="error",
            error_class="RateLimited",
            status_code=429,
            start_ms=1.0,
            end_ms=20.0,
        )
    ]
    trace.events = [TraceEvent("failure_path", 21.0, {"via": "respond", "reason": "rate_limited"})]
    trace.status, trace.degraded, trace.reason, trace.latency_ms = (
        "degraded",
        True,
        "rate_limited",
        22.0,
    )
    return trace


def by_trace(spans: list[ReceivedSpan], trace_id: str) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    mine = [s for s in spans if s.trace_id == trace_id]
    (root,) = [s for s in mine if s.parent_span_id is None]
    children = sorted(
        (s for s in mine if s.parent_span_id == root.span_id), key=lambda s: s.start_ns
    )
    assert len(children) == len(mine) - 1
    return root, children


def test_spans_and_metrics_arrive_with_semconv_names(receiver: OtlpReceiver) -> None:
    upstreams = {
        "openai": Upstream("openai", "https://api.openai.com/v1"),
        "local": Upstream("local"),
    }
    good, degraded = fallback_trace(), degraded_trace()
    with OtelSink.otlp(receiver.endpoint, service_name="support-gw", upstreams=upstreams) as sink:
        sink.record(good)
        sink.record(degraded)
        assert sink.force_flush(10.0)
        spans = receiver.wait_for_spans(5)
        duration = receiver.wait_for_metric("gen_ai.client.operation.duration")
        tokens = receiver.wait_for_metric("gen_ai.client.token.usage")

    root, (first, second) = by_trace(spans, good.id)
    assert root.name == "chat gpt-4o-mini" and root.kind == "INTERNAL"
    assert root.resource["service.name"] == "support-gw"
    assert root.scope == "tether" and root.schema_url == "https://opentelemetry.io/schemas/1.41.0"
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["gen_ai.provider.name"] == "openai"
    assert root.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert root.attributes["gen_ai.response.model"] == "smollm2"
    assert root.attributes["gen_ai.usage.input_tokens"] == 42
    assert root.attributes["gen_ai.usage.output_tokens"] == 7
    assert root.attributes["tether.feature"] == "support-reply"
    assert root.attributes["tether.variant"] == "candidate"
    assert root.attributes["tether.degraded"] is False
    assert root.attributes["tether.trace_id"] == good.id
    assert root.attributes["tether.cost_usd"] == 0.0
    assert root.event("tether.fallback").attributes == {
        "tether.from": "openai:gpt-4o-mini",
        "tether.to": "local:smollm2",
    }
    assert root.end_ns - root.start_ns == 301_000_000

    assert (first.name, first.kind, first.status) == ("chat gpt-4o-mini", "CLIENT", "ERROR")
    assert first.attributes["error.type"] == "Timeout"
    assert first.attributes["server.address"] == "api.openai.com"
    assert first.attributes["server.port"] == 443
    assert first.status_message == "no answer in 8s"
    assert (second.name, second.kind, second.status) == ("chat smollm2", "INTERNAL", "UNSET")
    assert second.attributes["gen_ai.provider.name"] == "llama.cpp"
    assert second.attributes["gen_ai.response.model"] == "smollm2"
    assert second.end_ns - second.start_ns == 219_000_000

    droot, (dattempt,) = by_trace(spans, degraded.id)
    assert droot.attributes["tether.degraded"] is True
    assert droot.attributes["tether.reason"] == "rate_limited"
    assert droot.event("tether.failure_path").attributes["tether.via"] == "respond"
    assert dattempt.attributes["http.response.status_code"] == 429

    assert duration.type == "histogram" and duration.unit == "s"
    errors = sorted(str(p.attributes.get("error.type")) for p in duration.points)
    assert errors == ["None", "RateLimited", "Timeout"]
    assert tokens.type == "histogram" and tokens.unit == "{token}"
    counted = {p.attributes["gen_ai.token.type"]: p.sum for p in tokens.points}
    assert counted == {"input": 42.0, "output": 7.0}
    assert {p.attributes["gen_ai.provider.name"] for p in tokens.points} == {"llama.cpp"}
    assert all(path and encoding == "gzip" for path, encoding in receiver.requests)


CONFIG = """\
providers:
  up: {kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: unused}
  spare: {kind: scripted}
features:
  answer:
    prompt: {template: "{{ message }}"}
    model: up:gpt-4o-mini
    fallbacks: [spare:small]
    retry: {max_attempts: 1}
    on_failure: {respond: "Sorry, later."}
"""


async def test_from_config_with_the_real_pipeline(receiver: OtlpReceiver) -> None:
    config = parse_config(CONFIG, "t.yaml", {})
    telemetry = TelemetryConfig(
        otlp_endpoint=receiver.endpoint + "/",
        otlp_headers={"x-team": "support"},
        otlp_compression="none",
        service_name="gw",
    )
    sink = OtelSink.from_config(telemetry, config)
    assert sink is not None
    with sink:
        providers = {
            "up": ScriptedProvider([Fail(Timeout("slow"))], name="up"),
            "spare": ScriptedProvider([Reply("from spare")], name="spare"),
        }
        tether = Tether(config, providers=providers, sink=sink)
        result = await tether.run("answer", {"message": "hi"})
        assert sink.force_flush(10.0)
        spans = receiver.wait_for_spans(3)
    root, (primary, spare) = by_trace(spans, result.trace_id)
    assert root.name == "chat gpt-4o-mini" and root.resource["service.name"] == "gw"
    assert primary.attributes["gen_ai.provider.name"] == "openai"
    assert primary.attributes["server.address"] == "127.0.0.1"
    assert primary.attributes["server.port"] == 9
    assert spare.attributes["gen_ai.provider.name"] == "tether.scripted"
    assert {encoding for _, encoding in receiver.requests} == {""}


def post(receiver: OtlpReceiver, path: str, body: bytes, **headers: str) -> int:
    host, port = receiver.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_receiver_decodes_gzip_and_rejects_what_it_cannot_read(receiver: OtlpReceiver) -> None:
    proto = {"Content-Type": "application/x-protobuf"}
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.name, span.trace_id, span.span_id = "hand made", b"\x01" * 16, b"\x02" * 8
    body = gzip.compress(request.SerializeToString())
    assert post(receiver, "/v1/traces", body, **proto, **{"Content-Encoding": "gzip"}) == 200
    (received,) = receiver.wait_for_spans(1)
    assert received.name == "hand made" and received.trace_id == "01" * 16
    assert received.kind == "UNSPECIFIED" and received.parent_span_id is None
    assert post(receiver, "/v1/traces", b"\xff\xff\xff", **proto) == 400
    assert post(receiver, "/v1/logs", b"", **proto) == 404
    assert post(receiver, "/v1/traces", b"{}", **{"Content-Type": "application/json"}) == 415
    receiver.clear()
    assert receiver.spans == [] and receiver.requests == []
    with pytest.raises(TimeoutError, match="1 spans"):
        receiver.wait_for_spans(1, timeout=0.05)


def test_endpoint_needs_a_started_receiver() -> None:
    idle = OtlpReceiver()
    with pytest.raises(RuntimeError, match="not started"):
        _ = idle.endpoint
    idle.close()  # closing an idle receiver is fine


def test_receiver_decodes_sums_and_gauges(receiver: OtlpReceiver) -> None:
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    scope.scope.name = "hand"
    total = scope.metrics.add(name="requests", unit="{request}")
    point = total.sum.data_points.add(as_int=3)
    point.attributes.add(key="route", value=AnyValue(string_value="/v1/chat"))
    scope.metrics.add(name="depth").gauge.data_points.add(as_double=0.5)
    body = request.SerializeToString()
    assert post(receiver, "/v1/metrics", body, **{"Content-Type": "application/x-protobuf"}) == 200
    counted = receiver.wait_for_metric("requests")
    assert (counted.type, counted.unit, counted.scope) == ("sum", "{request}", "hand")
    assert [(p.attributes, p.value) for p in counted.points] == [({"route": "/v1/chat"}, 3)]
    assert [p.value for p in receiver.metric("depth").points] == [0.5]
    with pytest.raises(KeyError, match="nothing"):
        receiver.metric("nothing")
