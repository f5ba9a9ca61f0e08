"""Prometheus metrics for ``/metrics``, updated from each finished trace.

==================================  =========  =============================================
metric                              type       labels
==================================  =========  =============================================
tether_requests_total               counter    feature, variant, status (ok/degraded/error)
tether_errors_total                 counter    feature, reason (calls that took the failure
                                               path or failed)
tether_request_duration_seconds     histogram  feature
tether_attempt_duration_seconds     histogram  model, status (ok/error)
tether_upstream_errors_total        counter    model, error_type
tether_tokens_total                 counter    feature, model, type (input/output)
tether_cost_usd_total               counter    feature, model
tether_fallbacks_total              counter    feature, from, to
tether_retries_total                counter    model
tether_gateway_overhead_seconds     histogram  (none): call time not spent upstream or in a
                                               designed wait (retry backoff, breaker wait)
tether_breaker_state                gauge      upstream: 0 closed, 1 half-open, 2 open
tether_trace_queue_depth            gauge      traces waiting for the trace writer
tether_trace_queue_full_total       counter    times a request waited for room in the queue
tether_client_disconnects_total     counter    (none): clients that went away before their
                                               request body was read (the gateway)
tether_budget_exceeded_total        counter    feature, scope, mode (hard: refused or failure
                                               path; soft: let through)
tether_budget_spent_usd_total       counter    feature: cost settled against its budgets
tether_cache_requests_total         counter    feature, result (hit/miss/bypass)
tether_rate_limited_total           counter    feature, scope (key/user/tenant/feature)
tether_state_unavailable_total      counter    what, policy (fail_closed/fail_open): the
                                               shared state (Redis) could not be reached
tether_cost_unknown_total           counter    model: attempts of a model with no price
tether_eval_online_total            counter    feature, variant, scorer, result (pass/fail/
                                               error): online scorers' results
tether_eval_online_score            histogram  feature, variant, scorer: their scores (0..1)
tether_eval_online_dropped_total    counter    feature: sampled calls not scored (overloaded)
==================================  =========  =============================================

Everything lives in the instance's own ``CollectorRegistry`` (never the process default), so
several instances (tests, several apps in one process) do not collide. Breaker state and queue
depth are read when ``/metrics`` is scraped, from the objects given to :meth:`watch`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from tether.telemetry.trace import Trace

# fmt: off
LATENCY_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64,
    1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
# fmt: on

logger = logging.getLogger("tether.telemetry.metrics")
M = TypeVar("M", bound=MetricWrapperBase)


def breaker_state_value(state: str) -> int:
    """0 closed, 1 half-open, 2 open (an unknown state reads as open: the safe side)."""
    match state:
        case "closed":
            return 0
        case "half_open":
            return 1
        case _:
            return 2


class HasState(Protocol):
    @property
    def state(self) -> str: ...


class HasBreakers(Protocol):
    """What the breaker gauge reads (``UpstreamHealth`` has it)."""

    @property
    def breakers(self) -> Mapping[str, HasState]: ...


class QueueStats(Protocol):
    """What the queue gauges read (``TraceWriter.stats`` has it)."""

    @property
    def depth(self) -> int: ...

    @property
    def queue_full(self) -> int: ...


class _Watched:
    """Read at scrape time: breaker states and trace-queue stats."""

    def __init__(self) -> None:
        self.health: HasBreakers | None = None
        self.queue: Callable[[], QueueStats] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.health is not None:
            yield self._breakers(self.health)
        if self.queue is not None:
            yield from self._queue(self.queue)

    @staticmethod
    def _breakers(health: HasBreakers) -> Metric:
        gauge = GaugeMetricFamily(
            "tether_breaker_state",
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
            labels=["upstream"],
        )
        for upstream, breaker in sorted(dict(health.breakers).items()):
            gauge.add_metric([upstream], breaker_state_value(breaker.state))
        return gauge

    @staticmethod
    def _queue(read: Callable[[], QueueStats]) -> Iterable[Metric]:
        try:
            stats = read()
        except Exception:  # a broken callback must not take /metrics down
            logger.exception("could not read the trace queue stats")
            return
        yield GaugeMetricFamily(
            "tether_trace_queue_depth", "Traces waiting for the trace writer.", value=stats.depth
        )
        yield CounterMetricFamily(
            "tether_trace_queue_full",
            "Times a request waited because the trace queue was full.",
            value=stats.queue_full,
        )


class PrometheusMetrics:
    """A :class:`~tether.telemetry.sink.TraceSink` that keeps Prometheus metrics.

    ``write`` (or ``record``) updates counters in memory (no I/O, tens of microseconds);
    :meth:`render` returns the text exposition for ``/metrics`` (serve it with
    :attr:`content_type`).
    """

    content_type = CONTENT_TYPE_PLAIN_0_0_4  # what render() writes; every Prometheus reads it

    def __init__(
        self,
        *,
        health: HasBreakers | None = None,
        queue: Callable[[], QueueStats] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        self._watched = _Watched()
        self.registry.register(self._watched)
        self.watch(health=health, queue=queue)
        r = self.registry
        self.requests = Counter(
            "tether_requests", "Calls by outcome.", ["feature", "variant", "status"], registry=r
        )
        self.errors = Counter(
            "tether_errors",
            "Calls that failed or degraded, by reason.",
            ["feature", "reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "tether_request_duration_seconds",
            "Call latency, end to end.",
            ["feature"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.attempt_duration = Histogram(
            "tether_attempt_duration_seconds",
            "Upstream attempt latency.",
            ["model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "tether_upstream_errors",
            "Failed upstream attempts by error type.",
            ["model", "error_type"],
            registry=r,
        )
        self.tokens = Counter(
            "tether_tokens", "Tokens used.", ["feature", "model", "type"], registry=r
        )
        self.cost = Counter(
            "tether_cost_usd", "Spend in US dollars.", ["feature", "model"], registry=r
        )
        self.fallbacks = Counter(
            "tether_fallbacks",
            "Moves down a fallback chain.",
            ["feature", "from", "to"],
            registry=r,
        )
        self.retries = Counter("tether_retries", "Retries of an upstream.", ["model"], registry=r)
        self.client_disconnects = Counter(
            "tether_client_disconnects",
            "Clients that closed the connection before their request body was read.",
            registry=r,
        )
        self._limits(r)
        self.overhead = Histogram(
            "tether_gateway_overhead_seconds",
            "Call time spent in tether itself: latency minus upstream attempts and designed "
            "waits (retry backoff, breaker wait).",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )

    def _limits(self, r: CollectorRegistry) -> None:
        """The budget, rate-limit, cache and state counters (read from trace events)."""
        self.budget_exceeded = Counter(
            "tether_budget_exceeded",
            "Calls over a budget, by scope and mode (hard: refused; soft: let through).",
            ["feature", "scope", "mode"],
            registry=r,
        )
        self.budget_spent = Counter(
            "tether_budget_spent_usd",
            "Cost settled against a feature's budgets, in US dollars.",
            ["feature"],
            registry=r,
        )
        self.cache_requests = Counter(
            "tether_cache_requests",
            "Calls of features with a cache, by result (hit, miss, bypass).",
            ["feature", "result"],
            registry=r,
        )
        self.rate_limited = Counter(
            "tether_rate_limited",
            "Calls refused by a rate limit, by scope.",
            ["feature", "scope"],
            registry=r,
        )
        self.state_unavailable = Counter(
            "tether_state_unavailable",
            "Times the shared state could not be reached, by operation and policy.",
            ["what", "policy"],
            registry=r,
        )
        self.cost_unknown = Counter(
            "tether_cost_unknown",
            "Attempts of a model the price table does not know (counted as $0).",
            ["model"],
            registry=r,
        )
        self._evals(r)

    def _evals(self, r: CollectorRegistry) -> None:
        """Online evaluation (read from the trace's ``evaluation`` events)."""
        labels = ["feature", "variant", "scorer"]
        self.eval_online = Counter(
            "tether_eval_online",
            "Online scorers' results on sampled calls, by result (pass, fail, error).",
            [*labels, "result"],
            registry=r,
        )
        self.eval_online_score = Histogram(
            "tether_eval_online_score",
            "Online scorers' scores (0..1) on sampled calls.",
            labels,
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.eval_online_dropped = Counter(
            "tether_eval_online_dropped",
            "Sampled calls not scored because online evaluation was behind.",
            ["feature"],
            registry=r,
        )

    def watch(
        self,
        *,
        health: HasBreakers | None = None,
        queue: Callable[[], QueueStats] | None = None,
    ) -> None:
        """Report breaker states from ``health`` (an ``UpstreamHealth``) and the trace queue
        from ``queue`` (e.g. ``lambda: writer.stats``); read at each scrape."""
        if health is not None:
            self._watched.health = health
        if queue is not None:
            self._watched.queue = queue

    async def write(self, trace: Trace) -> None:
        """The :class:`~tether.telemetry.sink.TraceSink` method: same as :meth:`record`."""
        self.record(trace)

    def record(self, trace: Trace) -> None:
        """Update the metrics from a finished call (in memory; never raises)."""
        try:
            self._record(trace)
        except Exception:
            logger.exception("could not record metrics for trace %s; skipped", trace.id)

    def _at(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, remembered: a call updates about ten labelled series,
        and the client's own lookup (locking, validation) costs more than the update."""
        child = self._children.get((metric, labels))
        if child is None:
            child = self._children[(metric, labels)] = metric.labels(*labels)
        return child  # type: ignore[return-value]  # labels() returns the metric's own type

    def _record(self, trace: Trace) -> None:
        feature, at = trace.feature, self._at
        at(self.requests, feature, trace.variant, trace.status).inc()
        if trace.status != "ok":
            at(self.errors, feature, trace.reason or trace.status).inc()
        at(self.request_duration, feature).observe(trace.latency_ms / 1000.0)
        upstream_ms = 0.0
        for attempt in trace.attempts:
            failed = attempt.status == "error" or attempt.error_class is not None
            duration_ms = max(0.0, attempt.duration_ms)
            upstream_ms += duration_ms
            at(self.attempt_duration, attempt.model, "error" if failed else "ok").observe(
                duration_ms / 1000.0
            )
            if failed:
                at(self.upstream_errors, attempt.model, attempt.error_class or "error").inc()
            for kind, count in (
                ("input", attempt.usage.input_tokens),
                ("output", attempt.usage.output_tokens),
            ):
                if count:
                    at(self.tokens, feature, attempt.model, kind).inc(count)
            if attempt.cost_usd:
                at(self.cost, feature, attempt.model).inc(attempt.cost_usd)
            if attempt.cost_unknown:
                at(self.cost_unknown, attempt.model).inc()
        if trace.cache is not None:
            at(self.cache_requests, feature, trace.cache).inc()
        self._limit_events(trace)
        waited_ms = self._decisions(trace)
        overhead_ms = trace.latency_ms - upstream_ms - waited_ms
        self.overhead.observe(max(0.0, overhead_ms) / 1000.0)

    def _decisions(self, trace: Trace) -> float:
        """Count fallbacks and retries; return the milliseconds spent in designed waits."""
        waited_ms = 0.0
        for event in trace.events:
            data = event.data
            if event.kind == "fallback":
                frm, to = str(data.get("frm", "")), str(data.get("to", ""))
                self._at(self.fallbacks, trace.feature, frm, to).inc()
            elif event.kind == "retry":
                self._at(self.retries, str(data.get("model", ""))).inc()
                waited_ms += _seconds(data.get("delay_s")) * 1000.0
            elif event.kind == "breaker_wait":
                waited_ms += _seconds(data.get("wait_s")) * 1000.0
            elif event.kind == "upstream_paced":
                waited_ms += _seconds(data.get("waited_s")) * 1000.0
        return waited_ms

    def _limit_events(self, trace: Trace) -> None:
        """Count what budgets, rate limits, the shared state and online scorers did to the
        call. A call sent to its failure path by an unreachable state (fail_closed) counts even
        when no stage recorded a ``state_unavailable`` event."""
        feature, at = trace.feature, self._at
        state_events = 0
        for event in trace.events:
            data, kind = event.data, event.kind
            if kind == "budget_exceeded":
                at(self.budget_exceeded, feature, str(data.get("scope", "")), "hard").inc()
            elif kind == "budget_soft_exceeded":
                at(self.budget_exceeded, feature, str(data.get("scope", "")), "soft").inc()
            elif kind == "budget_settled" and _seconds(data.get("cost_usd")) > 0:
                at(self.budget_spent, feature).inc(_seconds(data.get("cost_usd")))
            elif kind == "rate_limited":
                at(self.rate_limited, feature, str(data.get("scope", ""))).inc()
            elif kind == "state_unavailable":
                state_events += 1
                what, policy = str(data.get("what", "")), str(data.get("policy", "fail_closed"))
                at(self.state_unavailable, what, policy).inc()
            elif kind == "evaluation":
                self._evaluation(trace, data)
            elif kind == "evaluation_dropped":
                at(self.eval_online_dropped, feature).inc()
        if trace.reason == "state_unavailable" and not state_events:
            at(self.state_unavailable, "call", "fail_closed").inc()

    def _evaluation(self, trace: Trace, data: Mapping[str, object]) -> None:
        labels = (trace.feature, trace.variant, str(data.get("name", "")))
        score = data.get("score")
        if data.get("error") is not None or not isinstance(score, int | float):
            self._at(self.eval_online, *labels, "error").inc()
            return
        result = "pass" if data.get("passed") else "fail"
        self._at(self.eval_online, *labels, result).inc()
        self._at(self.eval_online_score, *labels).observe(float(score))

    def render(self) -> bytes:
        """The text exposition format, for ``GET /metrics``."""
        return generate_latest(self.registry)


def _seconds(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
