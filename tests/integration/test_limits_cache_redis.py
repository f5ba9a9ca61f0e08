"""Rate limits and the response cache on the Redis state backend (a real Redis on loopback),
shared between Tethers the way ``tether serve`` replicas share it: each Tether opens its own
connection, like a replica. An entry one stores is a hit for another; an rpm limit holds across
them under concurrency. With a Redis that is killed mid-test: the cache is a miss (never a
failure path), rate limits fail closed (failure path, reason ``state_unavailable``) or open
(admitted, said on the trace), and both work again once it is back, without a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.redis_server import SpareRedis
from tether import Tether
from tether.config.models import TetherConfig
from tether.errors import RateLimitExceeded
from tether.providers.scripted import Reply, ScriptedProvider


def config(
    url: str, prefix: str, on_unavailable: str = "fail_closed", **feature: Any
) -> TetherConfig:
    spec: dict[str, Any] = {
        "prompt": {"system": "You help.", "template": "{{ message }}"},
        "model": "up:big",
        "temperature": 0,
        "retry": {"max_attempts": 1},
        "on_failure": {"respond": "Sorry, not now."},
        **feature,
    }
    return TetherConfig.model_validate(
        {
            "state": {
                "backend": "redis",
                "url": url,
                "prefix": prefix,
                "on_unavailable": on_unavailable,
                "timeout_s": 0.3,
            },
            "providers": {"up": {"kind": "scripted"}},
            "features": {"f": spec},
        }
    )


def replica(cfg: TetherConfig) -> tuple[Tether, ScriptedProvider]:
    up = ScriptedProvider([Reply("the answer")], name="up")
    return Tether(cfg, providers={"up": up}), up


def events(result: Any, kind: str) -> list[dict[str, Any]]:
    assert result.trace is not None
    return [e.data for e in result.trace.events if e.kind == kind]


async def test_a_cache_entry_one_replica_stores_is_a_hit_on_another(
    redis_url: str, state_prefix: str
) -> None:
    cfg = config(redis_url, state_prefix, cache={"ttl_s": 60})
    (one, up1), (two, up2) = replica(cfg), replica(cfg)
    try:
        first = await one.run("f", {"message": "hi"})
        second = await two.run("f", {"message": "hi"})
        streamed = [c async for c in two.stream("f", {"message": "hi"})]
    finally:
        await one.aclose()
        await two.aclose()
    assert first.trace.cache == "miss" and len(up1.calls) == 1
    assert second.trace.cache == "hit" and second.output == "the answer"
    assert up2.calls == []
    assert "".join(c.text for c in streamed) == "the answer"


async def test_an_rpm_limit_holds_across_replicas(redis_url: str, state_prefix: str) -> None:
    cfg = config(redis_url, state_prefix, rate_limits={"user": {"rpm": 12}})
    replicas = [replica(cfg) for _ in range(3)]
    calls = [replicas[i % 3][0].run("f", {"message": "hi"}, user="ana") for i in range(60)]
    try:
        done = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        for tether, _ in replicas:
            await tether.aclose()
    refused = [r for r in done if isinstance(r, RateLimitExceeded)]
    admitted = [r for r in done if not isinstance(r, BaseException)]
    assert len(admitted) + len(refused) == 60, [r for r in done if isinstance(r, Exception)]
    assert len(admitted) == 12 == sum(len(up.calls) for _, up in replicas)
    assert all(e.retry_after_s is not None and e.retry_after_s > 0 for e in refused)


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
async def test_a_redis_outage_and_its_recovery(
    spare_redis: SpareRedis, state_prefix: str, policy: str
) -> None:
    cfg = config(
        spare_redis.url,
        state_prefix,
        policy,
        cache={"ttl_s": 60},
        rate_limits={"user": {"rpm": 2}},
    )
    tether, _ = replica(cfg)
    try:
        warm = await tether.run("f", {"message": "hi"}, user="ana")
        assert warm.trace.cache == "miss"
        spare_redis.stop()
        down = await tether.run("f", {"message": "other"}, user="bob")
        if policy == "fail_closed":
            assert down.degraded and down.reason == "state_unavailable"
            assert down.output == "Sorry, not now."
        else:
            assert not down.degraded and down.output == "the answer"
            what = {e["what"] for e in events(down, "state_unavailable")}
            assert {"rate_limit", "cache"} <= what
            assert all(e["policy"] == "fail_open" for e in events(down, "state_unavailable"))
        spare_redis.start()  # an empty Redis (the test's server keeps nothing on disk)
        back = await tether.run("f", {"message": "hi"}, user="ana")
        assert not back.degraded and back.trace.cache == "miss"
        assert (await tether.run("f", {"message": "hi"}, user="ana")).trace.cache == "hit"
        with pytest.raises(RateLimitExceeded):  # ana's third call since: the limit is 2
            await tether.run("f", {"message": "hi"}, user="ana")
    finally:
        await tether.aclose()


async def test_a_store_that_cannot_be_made_does_not_fail_the_answer(
    spare_redis: SpareRedis, state_prefix: str
) -> None:
    """fail_closed, and Redis dies while the model answers: the lookup was made, the store
    cannot be, and the caller still gets the model's answer (a cache is an optimisation)."""
    cfg = config(spare_redis.url, state_prefix, "fail_closed", cache={"ttl_s": 60})
    up = ScriptedProvider([Reply("the answer", delay_s=0.5)], name="up")
    tether = Tether(cfg, providers={"up": up})

    async def kill_soon() -> None:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(spare_redis.stop)

    try:
        result, _ = await asyncio.gather(tether.run("f", {"message": "hi"}), kill_soon())
    finally:
        await tether.aclose()
    assert result.output == "the answer" and not result.degraded, [
        (e.kind, e.data) for e in result.trace.events
    ]
    assert result.trace.cache == "miss"
    assert not events(result, "cache_stored")
    assert {"what": "cache", "policy": "fail_closed"} in events(result, "state_unavailable")
