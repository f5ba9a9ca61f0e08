"""One conformance suite for both state backends: the in-process one and the real Redis on
127.0.0.1:6379 (each test under its own key prefix). Whatever a budget, a rate limit, a breaker
or the cache relies on must hold the same on both."""

from __future__ import annotations

import asyncio
import math

import pytest

from tests.state_backends import Backend
from tether.config.features import BreakerConfig
from tether.state import Bucket, Counter, Level, key_part


async def test_reserve_is_all_or_nothing(backend: Backend) -> None:
    s = backend.state
    day, user = Counter("budget:f:day", 10.0), Counter("budget:f:user:u1", 1.0)
    first = await s.reserve([day, user], [0.6, 0.6])
    assert first.ok and first.refused is None
    assert first.levels == (Level(0.0, 0.6), Level(0.0, 0.6))
    second = await s.reserve([day, user], [0.6, 0.6])
    assert not second.ok and second.refused == 1  # the user's counter is full
    assert second.levels == (Level(0.0, 0.6), Level(0.0, 0.6))  # as they stood
    assert await s.levels([day.key, user.key]) == (Level(0.0, 0.6), Level(0.0, 0.6))
    assert (await s.reserve([day, user], [0.3, 0.4])).ok  # what fits still goes


async def test_float_amounts_fill_a_limit_exactly(backend: Backend) -> None:
    s, counter = backend.state, Counter("budget:f:cents", 1.0)
    results = [(await s.reserve([counter], [0.1])).ok for _ in range(11)]
    assert results == [True] * 10 + [False]


async def test_soft_counters_take_what_is_over_the_limit(backend: Backend) -> None:
    s = backend.state
    hard, soft = Counter("budget:h", 1.0), Counter("budget:s", 1.0, hard=False)
    assert (await s.reserve([soft], [5.0])).ok
    assert (await s.reserve([soft, hard], [1.0, 1.0])).ok
    assert await s.levels([soft.key]) == (Level(0.0, 6.0),)
    refused = await s.reserve([soft, hard], [1.0, 0.5])
    assert not refused.ok and refused.refused == 1
    assert await s.levels([soft.key]) == (Level(0.0, 6.0),)  # the soft one took nothing


async def test_settle_to_actual_and_release(backend: Backend) -> None:
    s, counter = backend.state, Counter("budget:tokens", 1000.0)
    assert (await s.reserve([counter], [400.0])).ok
    assert (await s.reserve([counter], [400.0])).ok
    assert await s.settle([counter], [400.0], [123.0]) == (Level(123.0, 400.0),)
    assert await s.settle([counter], [400.0], [0.0]) == (Level(123.0, 0.0),)  # a release
    assert (await s.reserve([counter], [877.0])).ok  # 123 spent + 877 = the limit
    assert not (await s.reserve([counter], [1.0])).ok


async def test_counters_expire_after_their_ttl(backend: Backend) -> None:
    s, counter = backend.state, Counter("budget:minute", 1.0, ttl_s=0.3)
    assert (await s.reserve([counter], [1.0])).ok
    assert not (await s.reserve([counter], [1.0])).ok
    await backend.advance(0.4)
    assert await s.levels([counter.key]) == (Level(),)
    assert (await s.reserve([counter], [1.0])).ok


async def test_missing_counters_read_as_zero(backend: Backend) -> None:
    assert await backend.state.levels(["budget:never", "budget:nor"]) == (Level(), Level())


async def test_buckets_refill_and_are_all_or_nothing(backend: Backend) -> None:
    s = backend.state
    rpm, tpm = Bucket("rl:rpm", capacity=2, per_s=10), Bucket("rl:tpm", capacity=100, per_s=1)
    assert await s.take([rpm, tpm], [1, 40]) == (0.0, None)
    assert await s.take([rpm, tpm], [1, 40]) == (0.0, None)
    wait, refused = await s.take([rpm, tpm], [1, 10])
    assert refused == 0 and 0 < wait <= 0.1 + 1e-9  # one request back in 1/10 s
    if backend.exact:
        assert wait == pytest.approx(0.1)
    await backend.advance(0.15)
    wait, refused = await s.take([rpm, tpm], [1, 30])  # rpm has one again; tpm holds ~20
    assert refused == 1 and 9 < wait <= 10.1
    assert await s.take([rpm], [1]) == (0.0, None)  # the refused take took nothing from rpm


async def test_bucket_waits_for_the_slowest_and_never_for_too_much(backend: Backend) -> None:
    s = backend.state
    a, b = Bucket("rl:a", capacity=1, per_s=1), Bucket("rl:b", capacity=1, per_s=0.5)
    assert await s.take([a, b], [1, 1]) == (0.0, None)
    wait, refused = await s.take([a, b], [1, 1])
    assert refused == 0 and 1.5 < wait <= 2.0  # b refills at half the speed
    wait, refused = await s.take([a], [5])
    assert math.isinf(wait) and refused == 0  # more than it can ever hold


async def test_adjust_corrects_an_estimate_both_ways(backend: Backend) -> None:
    s, tpm = backend.state, Bucket("rl:tpm", capacity=100, per_s=0.001)
    assert await s.take([tpm], [80]) == (0.0, None)
    await s.adjust([tpm], [-50])  # the call used 50 fewer tokens than estimated
    assert await s.take([tpm], [70]) == (0.0, None)
    await s.adjust([tpm], [40])  # ... and this one 40 more: the bucket owes them
    wait, refused = await s.take([tpm], [1])
    assert refused == 0 and wait > 10_000  # at 0.001 a second


async def test_first_is_true_once_per_ttl(backend: Backend) -> None:
    s = backend.state
    assert await s.first("alert:f:80", 0.3)
    assert not await s.first("alert:f:80", 0.3)
    assert await s.first("alert:f:50", 0.3)  # another marker
    await backend.advance(0.4)
    assert await s.first("alert:f:80", 0.3)


async def test_get_put_and_ttl(backend: Backend) -> None:
    s = backend.state
    assert await s.get("cache:k") is None
    await s.put("cache:k", b"\x00answer\xff", 0.3)
    assert await s.get("cache:k") == b"\x00answer\xff"
    await s.put("cache:k", b"newer", 0.3)
    assert await s.get("cache:k") == b"newer"
    await backend.advance(0.4)
    assert await s.get("cache:k") is None


POLICY = BreakerConfig(window=4, min_calls=2, failure_rate=0.5, cooldown_s=0.3, half_open_probes=2)


async def test_breaker_opens_half_opens_and_closes(backend: Backend) -> None:
    s, up = backend.state, "a:m1"
    for _ in range(2):
        admission = await s.breaker_admit(up, POLICY)
        assert admission.admitted and not admission.probe
        await s.breaker_record(up, POLICY, "failure", admission.probe)
    assert (await s.breaker_states())[up] == "open"
    refused = await s.breaker_admit(up, POLICY)
    assert not refused.admitted and 0.2 < refused.retry_in_s <= 0.3 + 1e-6
    await backend.advance(0.35)
    probe1, probe2 = await s.breaker_admit(up, POLICY), await s.breaker_admit(up, POLICY)
    assert probe1.probe and probe2.probe
    assert not (await s.breaker_admit(up, POLICY)).admitted  # only two probes at a time
    await s.breaker_record(up, POLICY, "ok", True)
    assert (await s.breaker_states())[up] == "half_open"
    await s.breaker_record(up, POLICY, "ok", True)
    assert (await s.breaker_states())[up] == "closed"
    for outcome in ("failure", "ok"):
        admission = await s.breaker_admit(up, POLICY)
        await s.breaker_record(up, POLICY, outcome, admission.probe)  # type: ignore[arg-type]
    # 1 of 2 failed = 50 %: open by the next admission (a success may be told with it)
    assert not (await s.breaker_admit(up, POLICY)).admitted
    assert (await s.breaker_states())[up] == "open"


async def test_breaker_window_slides_and_neutral_outcomes_do_not_count(backend: Backend) -> None:
    s, up = backend.state, "b:m"
    policy = BreakerConfig(window=4, min_calls=4, failure_rate=0.5, cooldown_s=60)
    for outcome in ("ok", "ok", "ok", "failure", "neutral", "neutral"):
        await s.breaker_record(up, policy, outcome, False)  # type: ignore[arg-type]
    assert (await s.breaker_states())[up] == "closed"  # 1 failure in 4
    await s.breaker_record(up, policy, "failure", False)
    assert (await s.breaker_states())[up] == "open"  # the oldest success left: 2 in 4


async def test_a_failed_probe_opens_again_and_freed_slots_are_reused(backend: Backend) -> None:
    s, up = backend.state, "c:m"
    policy = BreakerConfig(window=1, min_calls=1, cooldown_s=0.2, half_open_probes=2)
    await s.breaker_record(up, policy, "failure", False)
    await backend.advance(0.25)
    first, second = await s.breaker_admit(up, policy), await s.breaker_admit(up, policy)
    assert first.probe and second.probe
    await s.breaker_record(up, policy, "neutral", True)  # a probe that said nothing (a 400)
    third = await s.breaker_admit(up, policy)
    assert third.probe  # its slot is free again
    await s.breaker_record(up, policy, "failure", True)
    assert (await s.breaker_states())[up] == "open"
    assert not (await s.breaker_admit(up, policy)).admitted


async def test_retry_budget_is_a_fraction_of_the_calls(backend: Backend) -> None:
    s, up = backend.state, "d:m"
    for _ in range(10):  # ten calls, one attempt each
        assert (await s.breaker_admit(up, BreakerConfig())).admitted
    retried = 0
    for _ in range(10):  # each retry the budget allows is another attempt
        if await s.retry_spend(up, 0.5, 1, 10.0):
            retried += 1
            await s.breaker_admit(up, BreakerConfig())
    assert retried == 5
    assert not await s.retry_spend(up, 0.5, 1, 10.0)
    assert await s.retry_spend("quiet:m", 0.5, 2, 10.0)  # the floor, with no calls at all
    assert await s.retry_spend("quiet:m", 0.5, 2, 10.0)
    assert not await s.retry_spend("quiet:m", 0.5, 2, 10.0)


async def test_retry_budget_forgets_what_left_its_window(backend: Backend) -> None:
    s = backend.state
    assert await s.retry_spend("e:m", 0.0, 1, 1.0)
    assert not await s.retry_spend("e:m", 0.0, 1, 1.0)
    await backend.advance(2.1)
    assert await s.retry_spend("e:m", 0.0, 1, 1.0)


async def test_concurrent_reserves_never_over_reserve(backend: Backend) -> None:
    s, counter = backend.state, Counter("budget:race", 50.0)

    async def one() -> bool:
        return (await s.reserve([counter], [1.0])).ok

    results = await asyncio.gather(*(one() for _ in range(200)))
    assert sum(results) == 50
    assert await s.levels([counter.key]) == (Level(0.0, 50.0),)


async def test_identities_with_colons_do_not_collide(backend: Backend) -> None:
    assert key_part("alice") == "alice"
    assert key_part("a:b") != key_part("a_b") and ":" not in key_part("a:b")
    hashed = key_part("alice@example.com")  # not plain: hashed; no plain id can look like it
    assert hashed != "alice@example.com" and key_part("h" + hashed[1:]) != hashed
    assert key_part(hashed) != hashed
    s = backend.state
    one = Counter(f"budget:f:user:{key_part('a:b')}:tokens", 1.0)
    other = Counter(f"budget:f:user:{key_part('a')}:b:tokens", 1.0)
    assert (await s.reserve([one], [1.0])).ok
    assert (await s.reserve([other], [1.0])).ok
