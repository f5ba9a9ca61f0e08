"""The Redis backend as replicas use it: two ``RedisState`` objects (two replicas) on one real
server, breakers and retry budgets shared through it by the real model wrappers, and a server
that dies, hangs and comes back (``spare_redis``, a redis-server of the test's own)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator

import pytest
import redis as sync_redis

from tests.breakers import CONFIG, chain_on, feature
from tests.redis_server import SpareRedis
from tether import Tether
from tether.config import parse_config
from tether.config.features import BreakerConfig
from tether.config.state import StateConfig
from tether.errors import ConfigError, StateUnavailable, UpstreamError
from tether.providers.base import CallContext
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.resilience.chain import UpstreamHealth
from tether.state import Bucket, Counter, MemoryState, SharedState, open_state
from tether.state.redis import RedisState
from tether.telemetry.metrics import PrometheusMetrics
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

TIMEOUT_S = 0.3


def request() -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content="hi")])


def kinds(trace: Trace) -> list[str]:
    return [e.kind for e in trace.events]


@pytest.fixture
async def spare_state(spare_redis: SpareRedis) -> AsyncIterator[RedisState]:
    """A RedisState on the test's own server, with a short timeout; closed after the test."""
    state = RedisState(spare_redis.url, prefix="t:", timeout_s=TIMEOUT_S)
    yield state
    await state.aclose()


@pytest.fixture
async def replicas(redis_url: str, state_prefix: str) -> AsyncIterator[list[RedisState]]:
    # a generous timeout: these tests are about atomicity and sharing, and a loaded CI machine
    # can take longer than the default 0.5 s to open 64 connections under a 200-call burst
    states = [RedisState(redis_url, prefix=state_prefix, timeout_s=5.0) for _ in range(2)]
    yield states
    for state in states:
        await state.aclose()


async def test_a_breaker_opened_on_one_replica_is_open_on_the_other(
    replicas: list[RedisState],
) -> None:
    down = ScriptedProvider([Fail(UpstreamError("down", status_code=503))], name="up")
    spare = ScriptedProvider([Reply("from spare")], name="spare")
    one = chain_on(UpstreamHealth(SharedState(replicas[0])), down, spare)
    other_health = UpstreamHealth(SharedState(replicas[1]))
    other = chain_on(other_health, ScriptedProvider([Reply("fine")], name="up"), spare)
    for _ in range(2):
        answer = await one.complete(request(), CallContext(Trace("f")))
        assert answer.text == "from spare"
    trace = Trace("f")
    answer = await other.complete(request(), CallContext(trace))
    assert answer.text == "from spare"  # never asked up:m: its breaker is open everywhere
    assert kinds(trace)[0] == "breaker_open"
    assert trace.events[0].data["model"] == "up:m" and trace.events[0].data["retry_in_s"] > 29
    await other_health.refresh()
    assert other_health.breakers["up:m"].state == "open"
    assert other_health.breakers["spare:m"].state == "closed"


async def test_the_breaker_gauge_reads_the_shared_state(replicas: list[RedisState]) -> None:
    health = UpstreamHealth(SharedState(replicas[1]))
    metrics = PrometheusMetrics(health=health)
    down = ScriptedProvider([Fail(UpstreamError("down", status_code=503))], name="up")
    chain = chain_on(UpstreamHealth(SharedState(replicas[0])), down, ScriptedProvider(name="spare"))
    for _ in range(2):
        await chain.complete(request(), CallContext(Trace("f")))
    await health.refresh()  # what the /metrics handler does before rendering
    text = metrics.render().decode()
    assert 'tether_breaker_state{upstream="up:m"} 2.0' in text
    assert 'tether_breaker_state{upstream="spare:m"} 0.0' in text


async def test_concurrent_reserves_on_two_replicas_never_over_reserve(
    replicas: list[RedisState],
) -> None:
    counter = Counter("budget:f:user:u1:cost_usd:2026-11-27", 5.0)

    async def one(i: int) -> bool:
        return (await replicas[i % 2].reserve([counter], [0.1])).ok

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert sum(results) == 50
    levels = await replicas[0].levels([counter.key])
    assert levels[0].reserved == pytest.approx(5.0)


async def test_a_successful_call_costs_one_round_trip(
    spare_redis: SpareRedis, spare_state: RedisState
) -> None:
    state = spare_state
    chain = chain_on(
        UpstreamHealth(SharedState(state)),
        ScriptedProvider(name="up"),
        ScriptedProvider(name="spare"),
    )
    for _ in range(2):  # loads the scripts (the admit's, then the note's)
        await chain.complete(request(), CallContext(Trace("f")))
    await state.written()
    admin = sync_redis.Redis.from_url(spare_redis.url)
    admin.config_resetstat()
    for _ in range(5):
        await chain.complete(request(), CallContext(Trace("f")))
    await state.written()
    stats = admin.info("commandstats")
    admin.close()
    # one script per call, telling the successes before it (an admit; or, the breaker read
    # closed by a batch just before, a note written behind); nothing for the retry budget
    assert stats["cmdstat_evalsha"]["calls"] == 5
    assert "cmdstat_eval" not in stats and "cmdstat_script|load" not in stats


async def test_a_dead_server_is_unavailable_quickly_then_used_again(
    spare_redis: SpareRedis, spare_state: RedisState
) -> None:
    state = spare_state
    counter = Counter("budget:x", 10.0)
    assert (await state.reserve([counter], [1.0])).ok
    spare_redis.stop()
    for op in (state.reserve([counter], [1.0]), state.ping(), state.get("k")):
        started = time.monotonic()
        with pytest.raises(StateUnavailable, match=spare_redis.url.rsplit("/", 1)[0]):
            await op
        assert time.monotonic() - started < TIMEOUT_S + 0.2
    spare_redis.start()  # same port, empty
    assert (await state.reserve([counter], [1.0])).ok  # the same object, no restart
    assert (await state.levels([counter.key]))[0].reserved == 1.0


async def test_a_hung_server_costs_at_most_the_timeout_then_is_used_again(
    spare_redis: SpareRedis, spare_state: RedisState
) -> None:
    state = spare_state
    await state.put("k", b"v", 60)
    spare_redis.freeze()
    try:
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(StateUnavailable, match="did not answer"):
                await state.get("k")
            assert time.monotonic() - started < TIMEOUT_S + 0.2
    finally:
        spare_redis.thaw()
    assert await state.get("k") == b"v"  # the pool dropped the connections that timed out
    assert await state.first("m", 1.0)


async def test_fail_closed_raises_and_fail_open_lets_through_and_says_so(
    spare_redis: SpareRedis, spare_state: RedisState, caplog: pytest.LogCaptureFixture
) -> None:
    backend = spare_state
    spare_redis.stop()
    closed = SharedState(backend, "fail_closed")
    with pytest.raises(StateUnavailable):
        await closed.checked(Trace("f"), "budget", lambda s: s.ping(), None)
    opened = SharedState(backend, "fail_open")
    trace = Trace("f")
    caplog.set_level(logging.WARNING, logger="tether.state")
    for _ in range(3):
        assert await opened.checked(trace, "budget", lambda s: s.first("x", 1), True) is True
    assert await opened.checked(trace, "cache", lambda s: s.get("x"), None) is None
    assert [e.data for e in trace.events] == [
        {"what": "budget", "policy": "fail_open"},
        {"what": "budget", "policy": "fail_open"},
        {"what": "budget", "policy": "fail_open"},
        {"what": "cache", "policy": "fail_open"},
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "tether.state"]
    assert len(warnings) == 2  # once per 10 s per what
    assert "fail_open" in warnings[0] and spare_redis.url.rsplit("/", 1)[0] in warnings[0]
    spare_redis.start()
    assert await opened.checked(trace, "budget", lambda s: s.first("x", 1), False) is True
    assert len(trace.events) == 4  # back: nothing more to say


async def test_breakers_follow_the_policy_when_the_state_is_down(
    spare_redis: SpareRedis, spare_state: RedisState
) -> None:
    backend = spare_state
    spare_redis.stop()
    up, spare = ScriptedProvider([Reply("from up")], name="up"), ScriptedProvider(name="spare")
    open_chain = chain_on(UpstreamHealth(SharedState(backend, "fail_open")), up, spare)
    trace = Trace("f")
    assert (await open_chain.complete(request(), CallContext(trace))).text == "from up"
    assert [(e.kind, e.data["what"]) for e in trace.events] == [
        ("state_unavailable", "breaker")  # admission; the success is told with the next one
    ]
    closed_chain = chain_on(UpstreamHealth(SharedState(backend, "fail_closed")), up, spare)
    with pytest.raises(StateUnavailable):  # not a provider error: no fallback, the failure path
        await closed_chain.complete(request(), CallContext(Trace("f")))
    assert len(spare.calls) == 0
    spare_redis.start()
    assert (await closed_chain.complete(request(), CallContext(Trace("f")))).text == "from up"


async def test_the_retry_budget_is_shared_by_the_replicas(replicas: list[RedisState]) -> None:
    for _ in range(4):
        await replicas[0].breaker_admit("r:m", feature().breaker)
    for replica in replicas:  # each retry spent is one more attempt
        assert await replica.retry_spend("r:m", 0.5, 0, 10.0)
        await replica.breaker_admit("r:m", feature().breaker)
    assert not await replicas[1].retry_spend("r:m", 0.5, 0, 10.0)  # 2 retries for 4 calls


def test_open_state_picks_the_backend_and_names_the_missing_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(open_state(StateConfig()), MemoryState)
    redis_state = open_state(StateConfig(backend="redis", url="redis://127.0.0.1:1/0"))
    assert isinstance(redis_state, RedisState) and redis_state.prefix == "tether:"
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # as if the extra were not there
    with pytest.raises(ConfigError, match=r"pip install 'tether\[redis\]'"):
        open_state(StateConfig(backend="redis"))


async def test_a_probes_answer_stands_when_the_state_dies_during_the_call(
    spare_redis: SpareRedis, spare_state: RedisState
) -> None:
    config = CONFIG.replace("cooldown_s: 30", "cooldown_s: 0.2")
    up = ScriptedProvider([Fail(UpstreamError("down", status_code=503))], name="up")
    health = UpstreamHealth(SharedState(spare_state, "fail_closed"))
    model = chain_on(health, up, ScriptedProvider([Reply("from spare")]), config)
    for _ in range(2):
        await model.complete(request(), CallContext(Trace("f")))  # opens up:m's breaker
    await asyncio.sleep(0.25)
    up.script = [Reply("from up", delay_s=0.3)]
    trace = Trace("f")
    call = asyncio.create_task(model.complete(request(), CallContext(trace)))
    await asyncio.sleep(0.1)  # admitted as a half-open probe, now waiting for the model
    spare_redis.stop()
    assert (await call).text == "from up"  # the probe's success could not be told: it stands
    assert [(e.kind, e.data) for e in trace.events] == [
        ("state_unavailable", {"what": "breaker", "policy": "fail_closed"})
    ]


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
async def test_a_tether_on_a_dead_state_follows_its_policy_and_recovers(
    spare_redis: SpareRedis, policy: str
) -> None:
    text = f"state: {{backend: redis, url: '{spare_redis.url}', on_unavailable: {policy}}}\n"
    config = parse_config(text + CONFIG, "t.yaml", {})
    up = ScriptedProvider([Reply("from up")], name="up")
    tether = Tether(config, providers={"up": up, "spare": ScriptedProvider(name="spare")})
    try:
        spare_redis.stop()
        result = await tether.run("f")
        assert result.trace is not None
        if policy == "fail_closed":
            assert result.degraded and result.reason == "state_unavailable"
            assert result.output == "sorry" and not up.calls
        else:
            assert not result.degraded and result.output == "from up"
            assert {(e.kind, e.data["policy"]) for e in result.trace.events} == {
                ("state_unavailable", "fail_open")
            }
        spare_redis.start()
        result = await tether.run("f")
        assert not result.degraded and result.output == "from up"
    finally:
        await tether.aclose()


def test_one_state_serves_one_asyncio_run_after_another(redis_url: str, state_prefix: str) -> None:
    """A script that runs its calls in one ``asyncio.run`` after another, closing the state
    (``await tether.aclose()``) at the end of each: the next loop opens its own connections."""
    state = RedisState(redis_url, prefix=state_prefix)
    counter = Counter("budget:loops", 2.0)

    async def reserve() -> bool:
        try:
            return (await state.reserve([counter], [1.0])).ok
        finally:
            await state.aclose()

    assert asyncio.run(reserve())
    assert asyncio.run(reserve())
    assert not asyncio.run(reserve())  # the same counter, seen from each loop


async def test_the_message_never_shows_the_password() -> None:
    state = RedisState("redis://app:s3cret@127.0.0.1:1/0", timeout_s=TIMEOUT_S)
    with pytest.raises(StateUnavailable) as info:
        await state.ping()
    await state.aclose()
    assert "s3cret" not in str(info.value) and "redis://app:***@127.0.0.1:1/0" in str(info.value)


async def test_a_settle_written_behind_is_applied_and_read_back_in_order(
    spare_redis: SpareRedis, spare_state: RedisState
) -> None:
    """``wait=False`` queues the update for the next batch without waiting for its answer;
    the same process's next read sees it (it went out first), and a server that forgot the
    scripts still applies it (loaded again)."""
    state = spare_state
    counter = Counter("budget:behind", 10.0)
    assert (await state.reserve([counter], [4.0])).ok
    admin = sync_redis.Redis.from_url(spare_redis.url)
    try:
        admin.script_flush()  # the settle's EVALSHA is answered NOSCRIPT: sent again as EVAL
        assert await state.settle([counter], [4.0], [1.5], wait=False) == ()
        assert state._behind, "the settle's answer is read by a task of its own"
        level = (await state.levels([counter.key]))[0]  # queued after it: applied after it
        assert (level.spent, level.reserved) == (1.5, 0.0)
        await state.written()
        assert not state._behind and state.unconfirmed == 0

        await state.adjust([Bucket("rl:b", 10.0, 0.0)], [3.0], wait=False)
        await state.written()
        spent = admin.hget("t:budget:behind", "s")
        assert float(spent) == 1.5  # type: ignore[arg-type]
        assert float(admin.hget("t:rl:b", "t")) == 7.0  # type: ignore[arg-type]
    finally:
        admin.close()


async def test_a_write_behind_that_is_not_answered_is_logged_and_counted(
    spare_redis: SpareRedis, spare_state: RedisState, caplog: pytest.LogCaptureFixture
) -> None:
    state = spare_state
    counter = Counter("budget:lost", 10.0)
    assert (await state.reserve([counter], [1.0])).ok
    with caplog.at_level(logging.WARNING, logger="tether.state"):
        spare_redis.freeze()  # the batch goes out; no answer comes
        try:
            await state.settle([counter], [1.0], [1.0], wait=False)
            await state.written()
        finally:
            spare_redis.thaw()
        assert state.unconfirmed == 1
        spare_redis.stop()
        await state.adjust([Bucket("rl:lost", 10.0, 0.0)], [1.0], wait=False)  # never raises
        await state.written()
    assert state.unconfirmed == 2
    assert "settle written behind was not confirmed" in caplog.text
    assert "adjust written behind was not confirmed" in caplog.text


async def test_a_breaker_read_closed_by_a_batch_admits_at_once_and_one_read_open_does_not(
    spare_redis: SpareRedis,
) -> None:
    """A replica's batches (a call's budget and rate-limit scripts) read the breakers of the
    upstreams it calls; its admission right after, of a breaker read closed, needs no round
    trip (here: not even a server that hangs holds it up). Once another replica opened the
    breaker, the next batch reads that, and the admission is the server's: refused."""
    a, b = (RedisState(spare_redis.url, prefix="t:", timeout_s=TIMEOUT_S) for _ in range(2))
    policy = BreakerConfig(window=2, min_calls=2, failure_rate=0.5, cooldown_s=300)
    counter = Counter("budget:peek", 100.0)
    try:
        assert (await b.breaker_admit("up:m", policy)).admitted  # b calls it from now on
        assert (await b.reserve([counter], [1.0])).ok  # a call's batch: the breaker read
        spare_redis.freeze()
        try:
            started = time.monotonic()
            assert (await b.breaker_admit("up:m", policy)).admitted
            assert time.monotonic() - started < TIMEOUT_S / 2
        finally:
            spare_redis.thaw()
        await b.written()
        for _ in range(2):  # a's failures open the breaker
            admitted = await a.breaker_admit("up:m", policy)
            await a.breaker_record("up:m", policy, "failure", admitted.probe)
        assert (await b.reserve([counter], [1.0])).ok  # b's next batch reads it open
        refused = await b.breaker_admit("up:m", policy)
        assert not refused.admitted and refused.retry_in_s > 200
        assert b.unconfirmed == 0
    finally:
        for state in (a, b):
            await state.aclose()
