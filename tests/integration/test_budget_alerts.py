"""Budget alerts (tether.budgets.alerts) against a real webhook receiver on loopback: each
threshold fires once per period across replicas sharing the state, the body is signed with
HMAC-SHA256 under the configured secret, and a 5xx is retried."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tether import Tether
from tether.budgets.stage import BudgetStage
from tether.config.models import TetherConfig
from tether.state import MemoryState

SECRET = "webhook-secret"
PRICES = {"m": {"input_per_mtok": 1_000, "output_per_mtok": 2_000}}


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    seen: list[tuple[bytes, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((body, request.headers.get("x-tether-signature", "")))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="noted")

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.seen]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.url = f"http://127.0.0.1:{port}/hook"
    yield found
    await runner.cleanup()


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def config(url: str) -> TetherConfig:
    return TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted", "prices": PRICES}},
            "features": {
                "f": {
                    "model": "up:m",
                    "prompt": {"template": "{{ message }}"},
                    "max_tokens": 10,
                    "budgets": {
                        "user": {"cost_usd": 0.05, "per": "hour", "alerts": [0.5, 1.0]},
                    },
                    "on_failure": {"respond": "later"},
                }
            },
            "alerts": {"webhook": url, "secret": SECRET, "max_attempts": 3},
        }
    )


def replica(cfg: TetherConfig, state: MemoryState, clock: Clock) -> Tether:
    tether = Tether(cfg, state=state)
    for stage in tether.pipeline.feature("f").stages:
        if isinstance(stage, BudgetStage):
            stage.clock = clock
    return tether


async def test_each_threshold_fires_once_per_period_signed_and_retried(
    receiver: Receiver,
) -> None:
    clock = Clock()
    state = MemoryState(clock=clock)
    cfg = config(receiver.url)
    replicas = [replica(cfg, state, clock) for _ in range(2)]
    receiver.statuses = [500]  # the first delivery fails once, then goes through
    try:
        await period_of_calls(replicas, receiver, clock)
        clock.now += 3600  # the next hour: a new period, alerts fire again
        await period_of_calls(replicas, receiver, clock)
    finally:
        for tether in replicas:
            await tether.aclose()
    assert len(receiver.alerts) == 5
    assert sum(len(t.services.alerts.sent) for t in replicas) == 4  # one replica each


async def period_of_calls(replicas: list[Tether], receiver: Receiver, clock: Clock) -> None:
    seen = len(receiver.seen)
    results = [await replicas[i % 2].run("f", {"message": "hello"}, user="u1") for i in range(20)]
    assert any(r.degraded for r in results)  # the budget ran out: past 100% of it
    for tether in replicas:
        await tether.services.alerts.drain()
    bodies = [body for body, _ in receiver.seen[seen:]]
    alerts = [json.loads(body) for body in bodies]
    if seen == 0:  # the first period's first delivery was answered 500 and sent again
        retried = [b for b in bodies if bodies.count(b) == 2]
        assert len(retried) == 2 and len(bodies) == 3
        alerts = [json.loads(b) for b in dict.fromkeys(bodies)]
    assert sorted(a["threshold"] for a in alerts) == [0.5, 1.0]  # once each per period
    first = alerts[0]
    assert first["feature"] == "f" and first["scope"] == "user" and first["identity"] == "u1"
    assert first["limit"] == 0.05 and first["dimension"] == "cost_usd"
    assert first["period_start"] == clock.now // 3600 * 3600
    assert first["period_end"] - first["period_start"] == 3600
    assert first["config_version"]
    for body, signature in receiver.seen[seen:]:
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, f"sha256={digest}")
