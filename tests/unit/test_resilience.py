"""Resilience wrappers on the scripted provider: retry, timeout, breaker, fallback, streams."""

from __future__ import annotations

import random
import re

import pytest

from tether import Result, Tether
from tether.config import parse_config
from tether.config.models import BreakerConfig, RetryConfig
from tether.errors import CircuitOpen, RateLimited, Timeout, UpstreamError
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.resilience import CircuitBreaker, RetryBudget
from tether.resilience.retry import backoff_delay


def make(
    primary: ScriptedProvider,
    backup: ScriptedProvider | None = None,
    *,
    extra: str = "",
    retry: str = "",
    on_failure: str = '{respond: "sorry"}',
) -> Tether:
    fallbacks = "    fallbacks: [b:m2]\n" if backup is not None else ""
    text = (
        "providers:\n  a: {kind: scripted}\n  b: {kind: scripted}\n"
        "features:\n  f:\n    prompt: {template: hi}\n    model: a:m1\n"
        + fallbacks
        + "    timeout_s: 0.5\n"
        + f"    retry: {{backoff_base_s: 0.001, backoff_max_s: 0.002{retry}}}\n"
        + extra
        + f"    on_failure: {on_failure}\n"
    )
    providers = {"a": primary, "b": backup or ScriptedProvider(name="b")}
    return Tether(parse_config(text, "t.yaml", {}), providers=providers)


def kinds(result_trace: object) -> list[str]:
    return [e.kind for e in result_trace.events]  # type: ignore[attr-defined]


async def answer(tether: Tether, streamed: bool) -> Result:
    """The result of one call to feature ``f``, made in one piece or streamed."""
    if not streamed:
        return await tether.run("f")
    chunks = [c async for c in tether.stream("f")]
    assert chunks[-1].result is not None
    return chunks[-1].result


def limit_s(error: str | None) -> float:
    """The limit a Timeout names: "... no answer within 0.3s; raise timeout_s ..."."""
    found = re.search(r"within ([0-9.]+)s", error or "")
    assert found is not None, error
    return float(found.group(1))


async def test_retry_then_success_records_both_attempts() -> None:
    a = ScriptedProvider([Fail(UpstreamError("boom", status_code=503)), Reply("ok")], name="a")
    result = await make(a).run("f")
    assert result.output == "ok" and not result.degraded
    assert result.trace is not None
    assert [x.status for x in result.trace.attempts] == ["error", "ok"]
    assert result.trace.attempts[0].status_code == 503
    assert kinds(result.trace) == ["retry"]


async def test_non_retryable_error_goes_straight_to_fallback() -> None:
    a = ScriptedProvider([Fail(UpstreamError("bad", status_code=400, retryable=False))], name="a")
    b = ScriptedProvider([Reply("from b")], name="b")
    result = await make(a, b).run("f")
    assert result.output == "from b" and result.model == "b:m2"
    assert result.trace is not None
    assert len(a.calls) == 1
    assert [x.chain_position for x in result.trace.attempts] == [0, 1]
    assert kinds(result.trace) == ["fallback"]


async def test_retry_after_is_honoured() -> None:
    a = ScriptedProvider(
        [Fail(RateLimited("slow down", retry_after_s=0.05)), Reply("ok")], name="a"
    )
    result = await make(a).run("f")
    assert result.output == "ok"
    assert result.trace is not None
    (retry,) = result.trace.events
    assert retry.data["delay_s"] == 0.05
    # a lower bound on a sleep, which cannot flake: the wait was taken, not only recorded
    assert result.trace.attempts[1].start_ms - result.trace.attempts[0].end_ms >= 45


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "stream"])
async def test_retry_after_beyond_the_deadline_is_not_waited(streamed: bool) -> None:
    a = ScriptedProvider(
        [Fail(RateLimited("slow down", retry_after_s=0.5)), Reply("late")], name="a"
    )
    tether = make(a, extra="    total_timeout_s: 0.3\n", retry=", max_attempts: 3")
    result = await answer(tether, streamed)
    assert result.degraded and result.reason == "rate_limited" and result.output == "sorry"
    assert result.trace is not None
    assert len(a.calls) == 1
    assert [x.error_class for x in result.trace.attempts] == ["RateLimited"]
    assert kinds(result.trace) == ["retry_skipped", "failure_path"]
    assert result.trace.events[0].data == {"model": "a:m1", "why": "deadline", "delay_s": 0.5}


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "stream"])
async def test_retry_budget_grows_with_the_calls_made(streamed: bool) -> None:
    a = ScriptedProvider([Fail(UpstreamError("boom", status_code=503)), Reply("ok")], name="a")
    tether = make(a, retry=", budget_ratio: 1.0, budget_min_retries: 0")
    result = await answer(tether, streamed)  # one call made: one retry allowed, no floor
    assert result.output == "ok" and not result.degraded
    assert result.trace is not None and kinds(result.trace) == ["retry"]


async def test_retry_after_longer_than_allowed_moves_to_fallback() -> None:
    a = ScriptedProvider([Fail(RateLimited("later", retry_after_s=60))], name="a")
    b = ScriptedProvider([Reply("from b")], name="b")
    result = await make(a, b).run("f")
    assert result.output == "from b"
    assert result.trace is not None
    assert kinds(result.trace) == ["retry_skipped", "fallback"]
    assert result.trace.events[0].data["why"] == "retry_after_too_long"


async def test_retry_budget_caps_retries() -> None:
    a = ScriptedProvider([Fail(UpstreamError("boom"))], name="a")
    tether = make(a, retry=", budget_ratio: 0.0, budget_min_retries: 1")
    first = await tether.run("f")
    second = await tether.run("f")
    assert first.trace is not None and second.trace is not None
    assert "retry" in kinds(first.trace)
    assert second.trace.events[0].data["why"] == "retry_budget_exhausted"
    assert second.degraded and second.reason == "upstream_error"


def test_backoff_is_full_jitter_within_cap() -> None:
    config = RetryConfig(backoff_base_s=0.1, backoff_max_s=0.3)
    rng = random.Random(7)
    delays = [backoff_delay(config, n, rng) for n in range(6) for _ in range(50)]
    assert all(0 <= d <= 0.3 for d in delays)
    assert max(backoff_delay(config, 0, rng) for _ in range(50)) <= 0.1
    assert len(set(delays)) > 100


def test_budget_floor_and_ratio() -> None:
    now = [0.0]
    budget = RetryBudget(ratio=0.5, min_retries=1, clock=lambda: now[0])
    for _ in range(10):
        budget.record_call()
    assert sum(budget.try_spend() for _ in range(10)) == 5
    now[0] = 100.0
    assert budget.try_spend()
    assert not budget.try_spend()


def test_budget_forgets_calls_older_than_its_window_without_retries() -> None:
    now = [0.0]
    budget = RetryBudget(clock=lambda: now[0])
    for second in range(1000):  # a healthy upstream: calls, never a retry
        now[0] = float(second)
        budget.record_call()
    assert len(budget._calls) <= budget.window_s + 1  # bounded memory


async def test_per_attempt_timeout_then_failure_path() -> None:
    a = ScriptedProvider([Reply("late", delay_s=2.0)], name="a")
    result = await make(a).run("f")
    assert result.degraded and result.reason == "timeout"
    assert result.output == "sorry"
    assert result.trace is not None
    attempts = result.trace.attempts
    assert [x.error_class for x in attempts] == ["Timeout", "Timeout"]
    assert [limit_s(x.error) for x in attempts] == [0.5, 0.5]  # timeout_s, per attempt


async def test_total_deadline_bounds_the_attempt_and_stops_the_retries() -> None:
    a = ScriptedProvider([Reply("late", delay_s=2.0)], name="a")
    tether = make(a, extra="    total_timeout_s: 0.3\n", retry=", max_attempts: 5")
    result = await tether.run("f")
    assert result.degraded and result.reason == "timeout"
    assert result.trace is not None
    attempts = result.trace.attempts
    assert [x.error_class for x in attempts] == ["Timeout"]  # no time left for a retry
    assert limit_s(attempts[0].error) <= 0.3  # cut at the total deadline, not timeout_s (0.5)
    assert kinds(result.trace) == ["retry_skipped", "failure_path"]
    assert result.trace.events[0].data["why"] == "deadline"


def test_breaker_opens_half_opens_and_closes() -> None:
    now = [0.0]
    config = BreakerConfig(
        window=4, min_calls=2, failure_rate=0.5, cooldown_s=10, half_open_probes=2
    )
    breaker = CircuitBreaker("a:m1", config, clock=lambda: now[0])
    breaker.record(False, breaker.acquire())
    assert breaker.state == "closed"
    breaker.record(False, breaker.acquire())
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire()
    assert info.value.retry_in_s == pytest.approx(10)
    now[0] = 10.5
    probe1, probe2 = breaker.acquire(), breaker.acquire()
    assert probe1 and probe2 and breaker.state == "half_open"
    with pytest.raises(CircuitOpen):
        breaker.acquire()  # only two probes at a time
    breaker.record(True, probe1)
    breaker.record(True, probe2)
    assert breaker.state == "closed"
    breaker.record(False, breaker.acquire())
    breaker.record(True, breaker.acquire())
    assert breaker.state == "open"  # 1 of 2 failed = 50 %
    now[0] = 30.0
    breaker.record(False, breaker.acquire())
    assert breaker.state == "open" and breaker.retry_in() == pytest.approx(10)


def test_breaker_failure_rate_is_over_the_last_window_calls() -> None:
    config = BreakerConfig(window=4, min_calls=4, failure_rate=0.5, cooldown_s=10)
    breaker = CircuitBreaker("a:m1", config, clock=lambda: 0.0)
    for ok in (True, True, True, False):
        breaker.record(ok, breaker.acquire())
    assert breaker.state == "closed"  # 1 failure in 4: below the rate
    breaker.record(False, breaker.acquire())
    assert breaker.state == "open"  # the oldest success left the window: 2 failures in 4


def test_half_open_probes_free_their_slots_as_they_end() -> None:
    now = [0.0]
    config = BreakerConfig(window=1, min_calls=1, cooldown_s=10, half_open_probes=2)
    breaker = CircuitBreaker("a:m1", config, clock=lambda: now[0])
    breaker.record(False, breaker.acquire())
    now[0] = 10.0
    first, second = breaker.acquire(), breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.record(True, first)
    assert breaker.state == "half_open"  # one success of the two needed
    third = breaker.acquire()  # the first probe's slot is free again
    breaker.release(second)  # ended saying nothing about the upstream (say, a 400)
    fourth = breaker.acquire()
    assert third and fourth and breaker.state == "half_open"
    breaker.record(False, third)
    assert breaker.state == "open" and breaker.retry_in() == pytest.approx(10)


async def test_open_breaker_skips_upstream_and_client_errors_do_not_count() -> None:
    a = ScriptedProvider(
        [Fail(UpstreamError("bad request", status_code=400, retryable=False))], name="a"
    )
    b = ScriptedProvider([Reply("from b")], name="b")
    tether = make(a, b, extra="    breaker: {min_calls: 2, window: 2, cooldown_s: 60}\n")
    for _ in range(4):
        await tether.run("f")
    assert tether.health.breakers["a:m1"].state == "closed"
    a.script = [Fail(UpstreamError("down", status_code=503))]
    for _ in range(2):
        await tether.run("f")
    assert tether.health.breakers["a:m1"].state == "open"
    calls_before = len(a.calls)
    result = await tether.run("f")
    assert len(a.calls) == calls_before
    assert result.output == "from b"
    assert result.trace is not None
    assert kinds(result.trace) == ["breaker_open", "fallback"]  # an open circuit is not retried


async def test_all_breakers_open_waits_for_shortest_cooldown() -> None:
    a = ScriptedProvider([Fail(UpstreamError("down")), Reply("recovered")], name="a")
    tether = make(
        a,
        retry=", max_attempts: 1",
        extra="    breaker: {min_calls: 1, window: 1, cooldown_s: 0.2, half_open_probes: 1}\n",
    )
    first = await tether.run("f")
    assert first.degraded
    second = await tether.run("f")
    assert second.output == "recovered" and not second.degraded
    assert second.trace is not None
    assert kinds(second.trace) == ["breaker_open", "breaker_wait"]


async def test_all_breakers_open_fails_when_cooldown_exceeds_deadline() -> None:
    a = ScriptedProvider([Fail(UpstreamError("down"))], name="a")
    tether = make(
        a,
        retry=", max_attempts: 1",
        extra="    total_timeout_s: 1\n    breaker: {min_calls: 1, window: 1, cooldown_s: 30}\n",
    )
    await tether.run("f")
    result = await tether.run("f")
    assert result.degraded and result.reason == "circuit_open"
    assert result.trace is not None
    assert kinds(result.trace) == ["breaker_open", "failure_path"]  # no breaker_wait


async def test_stream_falls_back_before_first_token() -> None:
    a = ScriptedProvider([Fail(Timeout("no first token"))], name="a")
    b = ScriptedProvider([Reply("hello from b")], name="b")
    chunks = [c async for c in make(a, b).stream("f")]
    assert "".join(c.text for c in chunks) == "hello from b"
    final = chunks[-1]
    assert final.done and final.result is not None and final.error is None
    assert final.result.model == "b:m2" and not final.result.degraded


async def test_stream_never_switches_after_first_token() -> None:
    a = ScriptedProvider([Reply("one two three four", cut_after_chunks=2)], name="a")
    b = ScriptedProvider([Reply("from b")], name="b")
    chunks = [c async for c in make(a, b).stream("f")]
    assert "".join(c.text for c in chunks) == "one two"
    final = chunks[-1]
    assert final.done and final.error is not None and "broke" in final.error
    assert final.result is not None
    assert final.result.degraded and final.result.reason == "stream_interrupted"
    assert final.result.output == "one two"
    assert b.calls == []  # never switched provider
    assert final.result.trace is not None
    assert "stream_interrupted" in kinds(final.result.trace)


async def test_stream_first_token_timeout() -> None:
    # the first token would come within timeout_s (0.5) but not within first_token_timeout_s
    a = ScriptedProvider([Reply("slow", delay_s=0.3)], name="a")
    b = ScriptedProvider([Reply("fast")], name="b")
    tether = make(a, b, extra="    first_token_timeout_s: 0.05\n", retry=", max_attempts: 1")
    chunks = [c async for c in tether.stream("f")]
    assert "".join(c.text for c in chunks) == "fast"
    result = chunks[-1].result
    assert result is not None and result.trace is not None
    assert result.trace.attempts[0].error_class == "Timeout"
    assert "first token" in (result.trace.attempts[0].error or "")
    assert limit_s(result.trace.attempts[0].error) == 0.05


async def test_stream_chunks_after_the_first_token_get_timeout_s() -> None:
    # each later chunk comes after first_token_timeout_s (0.05) but within timeout_s (0.5)
    a = ScriptedProvider([Reply("one two three", chunk_delay_s=0.2)], name="a")
    tether = make(a, extra="    first_token_timeout_s: 0.05\n", retry=", max_attempts: 1")
    chunks = [c async for c in tether.stream("f")]
    assert "".join(c.text for c in chunks) == "one two three"
    result = chunks[-1].result
    assert result is not None and not result.degraded
    assert result.trace is not None
    assert [x.status for x in result.trace.attempts] == ["ok"]
