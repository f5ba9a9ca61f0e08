"""Both state backends as one fixture, for the tests that must hold alike on each.

``backend``: the in-process state on a clock the test moves (``advance`` adds seconds at once)
and the real Redis (its own key prefix, ``advance`` sleeps: the server's clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from tether.state import MemoryState, State
from tether.state.redis import RedisState


@dataclass
class Backend:
    state: State
    advance: Callable[[float], Awaitable[None]]  # let this much time pass
    exact: bool  # the clock is the test's (memory) or the server's (redis)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        now = [1_000_000.0]

        async def forward(seconds: float) -> None:
            now[0] += seconds

        yield Backend(MemoryState(clock=lambda: now[0]), forward, exact=True)
        return
    url = request.getfixturevalue("redis_url")
    state = RedisState(url, prefix=request.getfixturevalue("state_prefix"), timeout_s=2.0)
    try:
        yield Backend(state, asyncio.sleep, exact=False)
    finally:
        await state.aclose()
