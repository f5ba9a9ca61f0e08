"""Breakers and retry budgets kept in the state (the in-process backend here; the Redis one in
tests/integration/test_state_redis.py), as the real chain uses them."""

from __future__ import annotations

import pytest

from tests.breakers import chain_on
from tether.errors import RateLimited
from tether.providers.base import CallContext
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.resilience.chain import Chain, UpstreamHealth
from tether.state import MemoryState, SharedState
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest


def chain(health: UpstreamHealth, up: ScriptedProvider, name: str = "f") -> Chain:
    return chain_on(health, up, ScriptedProvider([Reply("from spare")], name="spare"), name=name)


async def ask(model: Chain) -> str:
    request = ModelRequest(messages=[Message(role="user", content="hi")])
    return (await model.complete(request, CallContext(Trace("f")))).text


async def test_our_own_pacing_does_not_open_the_upstreams_breaker() -> None:
    paced = RateLimited("paced", retryable=False, reason="upstream_rate_limit", retry_after_s=1)
    health = UpstreamHealth()
    model = chain(health, ScriptedProvider([Fail(paced)], name="up"))
    for _ in range(4):
        assert await ask(model) == "from spare"
    assert health.breakers["up:m"].state == "closed"
    limited = RateLimited("429 from the upstream", retry_after_s=1)
    model = chain(health, ScriptedProvider([Fail(limited)], name="up"))
    for _ in range(2):
        await ask(model)
    assert health.breakers["up:m"].state == "open"  # the upstream's own 429s do count


async def test_the_first_feature_to_name_an_upstream_sets_its_policy() -> None:
    health = UpstreamHealth(SharedState(MemoryState()))
    failing = ScriptedProvider([Fail(RateLimited("429"))], name="up")
    chain(health, failing, "f")
    lenient = chain(health, failing, "g")  # asks for 50 calls: f's policy (2) holds
    with pytest.raises(RateLimited):
        await ask(lenient)  # two attempts (g retries once), both 429
    assert health.breakers["up:m"].state == "open"
