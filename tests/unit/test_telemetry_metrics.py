"""PrometheusMetrics: finished traces update counters; /metrics renders the text format."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tether import Tether
from tether.config import parse_config
from tether.config.models import BreakerConfig
from tether.errors import UpstreamError
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.resilience.chain import UpstreamHealth
from tether.store.writer import WriterStats
from tether.telemetry.metrics import PrometheusMetrics, breaker_state_value
from tether.telemetry.trace import Attempt, Trace, TraceEvent
from tether.types import Usage

Labels = tuple[tuple[str, str], ...]


def samples(metrics: PrometheusMetrics) -> dict[tuple[str, Labels], float]:
    """Parse the exposition text: (sample name, sorted labels) -> value."""
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def fallback_trace() -> Trace:
    trace = Trace(feature="support", variant="candidate")
    trace.attempts = [
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            1,
            status="error",
            error_class="Timeout",
            start_ms=0.0,
            end_ms=800.0,
        ),
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            2,
            status="error",
            error_class="Timeout",
            start_ms=900.0,
            end_ms=1700.0,
        ),
        Attempt(
            "local:smollm2",
            "local",
            3,
            start_ms=1700.0,
            end_ms=2200.0,
            usage=Usage(100, 20),
            cost_usd=0.002,
        ),
    ]
    trace.events = [
        TraceEvent("retry", 800.0, {"model": "openai:gpt-4o-mini", "delay_s": 0.1}),
        TraceEvent("fallback", 1700.0, {"frm": "openai:gpt-4o-mini", "to": "local:smollm2"}),
    ]
    trace.status, trace.latency_ms = "ok", 2203.0
    return trace


def degraded_trace(reason: str = "timeout") -> Trace:
    trace = Trace(feature="support")
    trace.attempts = [
        Attempt(
            "openai:gpt-4o-mini",
            "openai",
            1,
            status="error",
            error_class="Timeout",
            start_ms=0.0,
            end_ms=50.0,
        )
    ]
    trace.events = [TraceEvent("breaker_wait", 50.0, {"wait_s": 0.02})]
    trace.status, trace.degraded, trace.reason, trace.latency_ms = "degraded", True, reason, 75.0
    return trace


def test_requests_tokens_cost_fallbacks_retries() -> None:
    metrics = PrometheusMetrics()
    metrics.record(fallback_trace())
    metrics.record(fallback_trace())
    assert (
        value(metrics, "tether_requests_total", feature="support", variant="candidate", status="ok")
        == 2
    )
    assert (
        value(
            metrics, "tether_tokens_total", feature="support", model="local:smollm2", type="input"
        )
        == 200
    )
    assert (
        value(
            metrics, "tether_tokens_total", feature="support", model="local:smollm2", type="output"
        )
        == 40
    )
    assert value(
        metrics, "tether_cost_usd_total", feature="support", model="local:smollm2"
    ) == pytest.approx(0.004)
    assert (
        value(
            metrics,
            "tether_fallbacks_total",
            feature="support",
            **{"from": "openai:gpt-4o-mini", "to": "local:smollm2"},
        )
        == 2
    )
    assert value(metrics, "tether_retries_total", model="openai:gpt-4o-mini") == 2
    assert (
        value(
            metrics,
            "tether_upstream_errors_total",
            model="openai:gpt-4o-mini",
            error_type="Timeout",
        )
        == 4
    )
    assert ("tether_errors_total", (("feature", "support"), ("reason", "timeout"))) not in (
        samples(metrics)
    )


def test_latency_histograms() -> None:
    metrics = PrometheusMetrics()
    metrics.record(fallback_trace())
    assert value(metrics, "tether_request_duration_seconds_count", feature="support") == 1
    assert value(
        metrics, "tether_request_duration_seconds_sum", feature="support"
    ) == pytest.approx(2.203)
    assert (
        value(metrics, "tether_request_duration_seconds_bucket", feature="support", le="2.56") == 1
    )
    assert (
        value(metrics, "tether_request_duration_seconds_bucket", feature="support", le="1.28") == 0
    )
    assert (
        value(
            metrics,
            "tether_attempt_duration_seconds_count",
            model="openai:gpt-4o-mini",
            status="error",
        )
        == 2
    )
    assert value(
        metrics, "tether_attempt_duration_seconds_sum", model="local:smollm2", status="ok"
    ) == pytest.approx(0.5)


def test_overhead_excludes_upstream_time_and_designed_waits() -> None:
    metrics = PrometheusMetrics()
    metrics.record(fallback_trace())  # 2203 - (800 + 800 + 500) - 100 (retry backoff) = 3 ms
    assert value(metrics, "tether_gateway_overhead_seconds_sum") == pytest.approx(0.003)
    metrics.record(degraded_trace())  # 75 - 50 - 20 (breaker wait) = 5 ms
    assert value(metrics, "tether_gateway_overhead_seconds_sum") == pytest.approx(0.008)
    assert value(metrics, "tether_gateway_overhead_seconds_bucket", le="0.005") == 2


def test_errors_by_reason() -> None:
    metrics = PrometheusMetrics()
    metrics.record(degraded_trace("timeout"))
    metrics.record(degraded_trace("timeout"))
    failed = degraded_trace("rate_limited")
    failed.status = "error"
    metrics.record(failed)
    assert value(metrics, "tether_errors_total", feature="support", reason="timeout") == 2
    assert value(metrics, "tether_errors_total", feature="support", reason="rate_limited") == 1
    assert (
        value(
            metrics,
            "tether_requests_total",
            feature="support",
            variant="default",
            status="degraded",
        )
        == 2
    )
    assert (
        value(
            metrics, "tether_requests_total", feature="support", variant="default", status="error"
        )
        == 1
    )


def test_breaker_state_is_read_at_scrape_time() -> None:
    health = UpstreamHealth()
    metrics = PrometheusMetrics(health=health)
    assert not [k for k in samples(metrics) if k[0] == "tether_breaker_state"]
    closed = health.breaker("openai:gpt-4o-mini", BreakerConfig())
    flaky = health.breaker("ollama:llama3.1", BreakerConfig(min_calls=2, window=2))
    for _ in range(2):
        flaky.record(False, probe=False)
    assert flaky.state == "open" and closed.state == "closed"
    assert value(metrics, "tether_breaker_state", upstream="openai:gpt-4o-mini") == 0
    assert value(metrics, "tether_breaker_state", upstream="ollama:llama3.1") == 2
    flaky.state = "half_open"
    assert value(metrics, "tether_breaker_state", upstream="ollama:llama3.1") == 1
    assert [breaker_state_value(s) for s in ("closed", "half_open", "open", "?")] == [0, 1, 2, 2]


def test_trace_queue_gauges_from_a_callable() -> None:
    stats = WriterStats(depth=7, queue_full=3)
    metrics = PrometheusMetrics()
    metrics.watch(queue=lambda: stats)
    assert value(metrics, "tether_trace_queue_depth") == 7
    assert value(metrics, "tether_trace_queue_full_total") == 3
    stats.depth = 0
    assert value(metrics, "tether_trace_queue_depth") == 0


def test_a_broken_queue_callback_does_not_break_the_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> WriterStats:
        raise RuntimeError("writer gone")

    metrics = PrometheusMetrics(queue=broken)
    metrics.record(fallback_trace())
    with caplog.at_level(logging.ERROR, "tether.telemetry.metrics"):
        names = {name for name, _ in samples(metrics)}
    assert "tether_requests_total" in names and "tether_trace_queue_depth" not in names
    assert "could not read the trace queue stats" in caplog.text


def test_record_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    metrics = PrometheusMetrics()
    broken = fallback_trace()
    broken.attempts = [None]  # type: ignore[list-item]
    with caplog.at_level(logging.ERROR, "tether.telemetry.metrics"):
        metrics.record(broken)
    assert f"could not record metrics for trace {broken.id}" in caplog.text


def test_own_registry_per_instance() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.record(fallback_trace())
    assert value(first, "tether_retries_total", model="openai:gpt-4o-mini") == 1
    assert ("tether_retries_total", (("model", "openai:gpt-4o-mini"),)) not in samples(second)
    assert REGISTRY.get_sample_value("tether_requests_total") is None
    assert first.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE tether_requests_total counter" in first.render()


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


async def test_as_the_sink_of_the_real_pipeline() -> None:
    metrics = PrometheusMetrics()
    providers = {
        "up": ScriptedProvider([Fail(UpstreamError("down", status_code=503))], name="up"),
        "spare": ScriptedProvider([Reply("from spare")], name="spare"),
    }
    tether = Tether(parse_config(CONFIG, "t.yaml", {}), providers=providers, sink=metrics)
    metrics.watch(health=tether.health)
    await tether.run("answer", {"message": "hi"})
    assert (
        value(metrics, "tether_requests_total", feature="answer", variant="default", status="ok")
        == 1
    )
    assert (
        value(
            metrics,
            "tether_fallbacks_total",
            feature="answer",
            **{"from": "up:big", "to": "spare:small"},
        )
        == 1
    )
    assert value(metrics, "tether_breaker_state", upstream="up:big") == 0
    assert (
        value(metrics, "tether_upstream_errors_total", model="up:big", error_type="UpstreamError")
        == 1
    )


def test_budget_rate_limit_cache_and_state_counters_come_from_the_trace() -> None:
    metrics = PrometheusMetrics()
    soft = Trace(feature="support", variant="default")
    soft.cache = "miss"
    soft.attempts = [Attempt("acme:house-model", "acme", 1, start_ms=0.0, end_ms=5.0)]
    soft.attempts[0].cost_unknown = True
    soft.event("budget_soft_exceeded", scope="user", limit=1.0, spent=1.2)
    soft.event("budget_settled", tokens=120, cost_usd=0.25)
    soft.status = "ok"
    hit = Trace(feature="support", variant="default")
    hit.cache, hit.status = "hit", "ok"
    hit.event("budget_settled", tokens=0, cost_usd=0.0)  # a hit is free: nothing counted
    refused = Trace(feature="support", variant="default")
    refused.event("rate_limited", scope="user", retry_after_s=2.5)
    refused.status, refused.reason = "error", "rate_limit_exceeded"
    over = Trace(feature="support", variant="default")
    over.event("budget_exceeded", scope="tenant", limit=5, spent=5, reserved=0, mode="hard")
    over.status, over.reason = "degraded", "budget_exceeded"
    opened = Trace(feature="support", variant="default")
    opened.event("state_unavailable", what="rate_limit", policy="fail_open")
    closed = Trace(feature="support", variant="default")  # fail_closed: the reason alone
    closed.status, closed.reason = "degraded", "state_unavailable"
    for trace in (soft, hit, refused, over, opened, closed):
        metrics.record(trace)
    assert (
        value(metrics, "tether_budget_exceeded_total", feature="support", scope="user", mode="soft")
        == 1
    )
    assert (
        value(
            metrics, "tether_budget_exceeded_total", feature="support", scope="tenant", mode="hard"
        )
        == 1
    )
    assert value(metrics, "tether_budget_spent_usd_total", feature="support") == 0.25
    assert value(metrics, "tether_cache_requests_total", feature="support", result="hit") == 1
    assert value(metrics, "tether_cache_requests_total", feature="support", result="miss") == 1
    assert value(metrics, "tether_rate_limited_total", feature="support", scope="user") == 1
    assert (
        value(metrics, "tether_state_unavailable_total", what="rate_limit", policy="fail_open") == 1
    )
    assert value(metrics, "tether_state_unavailable_total", what="call", policy="fail_closed") == 1
    assert value(metrics, "tether_cost_unknown_total", model="acme:house-model") == 1
    assert ("tether_cache_requests_total", (("feature", "support"), ("result", "bypass"))) not in (
        samples(metrics)
    )


def test_upstream_pacing_is_a_designed_wait_not_overhead() -> None:
    metrics = PrometheusMetrics()
    trace = Trace(feature="support", variant="default")
    trace.latency_ms = 300.0  # 290 ms of it paced before the upstream was asked
    trace.event("upstream_paced", model="acme:m", waited_s=0.29)
    trace.status = "ok"
    metrics.record(trace)
    assert value(metrics, "tether_gateway_overhead_seconds_bucket", le="0.025") == 1
