"""An acknowledged trace survives ``kill -9`` of the gateway, on SQLite and on PostgreSQL: calls
(plain and streamed) go through a live ``tether serve`` whose trace writer has not written
anything yet (a long flush interval), the gateway is SIGKILLed, started again, and every trace
id a caller received is stored (once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tether.store import Store
from tether.testing.upstream import FaultyUpstream

from .gateway_server import GatewayProcess

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: k}}
features:
  ok:
    model: up:gpt-4o-mini
    on_failure: {{respond: "unavailable"}}
store:
  url: "{store}"
  flush_interval_s: 600   # the writer stores nothing before the kill: only the journal can
  batch_size: 10000
"""
ADMIN = {"authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(text="an answer worth keeping") as up:
        yield up


async def acknowledged(gateway: GatewayProcess, count: int) -> set[str]:
    """Send ``count`` calls, 8 at a time, half of them streamed; the trace ids of the 200s."""
    ids: set[str] = set()
    slots = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = {"model": "ok", "messages": [{"role": "user", "content": f"q{i}"}]}
        async with slots:
            if i % 2:
                async with client.stream(
                    "POST", "/chat/completions", json={**body, "stream": True}
                ) as response:
                    text = "".join([part async for part in response.aiter_text()])
                    assert "[DONE]" in text
            else:
                response = await client.post("/chat/completions", json=body)
        assert response.status_code == 200
        ids.add(response.headers["x-tether-trace-id"])

    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        await asyncio.gather(*(one(client, i) for i in range(count)))
    return ids


def test_acknowledged_traces_survive_kill_9(
    tmp_path: Path, upstream: FaultyUpstream, store_url: str
) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(CONFIG.format(up=upstream.base_url, store=store_url))
    env = {"TETHER_ADMIN_TOKEN": "admin-secret"}
    with GatewayProcess(config, env=env) as gateway:
        sent = asyncio.run(acknowledged(gateway, 60))
        assert gateway.proc is not None
        gateway.proc.kill()  # SIGKILL: no shutdown, no flush
        assert gateway.proc.wait(timeout=30) == -9
    assert len(sent) == 60
    with Store.from_url(store_url) as store:
        assert store.traces.count() == 0, "the writer flushed before the kill: test is moot"

    with GatewayProcess(config, env=env) as gateway:  # start-up stores what the journal holds
        listed = httpx.get(f"{gateway.root}/admin/traces?limit=500", headers=ADMIN).json()
        stored = [t["id"] for t in listed["data"]]
        assert len(stored) == len(set(stored))
        assert set(stored) == sent
        one = httpx.get(f"{gateway.root}/admin/traces/{next(iter(sent))}", headers=ADMIN).json()
        assert one["output"] == "an answer worth keeping"
