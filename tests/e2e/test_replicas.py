"""Three ``tether serve`` replicas sharing one Redis (state) and one PostgreSQL (store): what
one replica decides, the others honour.

Each replica is a real process on its own port; every test spreads its calls over all three.
The state lives under a prefix of its own in the Redis on 127.0.0.1:6379, the traces in a fresh
PostgreSQL schema, the model is a loopback upstream with prices in the config, so costs are
known exactly:

- a user budget holds across the replicas (settled spend, summed from the stored traces, never
  passes the budget by more than one call's reservation; refused calls degrade);
- an RPM limit holds across the replicas (admitted calls <= the limit);
- every replica's traces are in PostgreSQL;
- a breaker one replica opens is open on the others (no attempt, a fallback instead);
- an answer one replica caches is a hit on another (streamed too, replayed as SSE).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.postgres import admin_connect
from tether.testing.upstream import Fault, FaultyUpstream

from .gateway_server import GatewayProcess

#: USD per token, input and output alike ($1,000 per million): costs are easy to read.
PRICE_PER_TOKEN = 0.001
BUDGET_USD = 0.08
RPM = 12
ANSWER = "one two three four five"

CONFIG = """\
providers:
  up:
    kind: openai
    base_url: "{up}"
    api_key: k
    prices: {{gpt-4o-mini: {{input_per_mtok: 1000, output_per_mtok: 1000}}}}
  flaky:
    kind: openai
    base_url: "{flaky}"
    api_key: k
    prices: {{gpt-4o-mini: {{input_per_mtok: 1000, output_per_mtok: 1000}}}}
state: {{backend: redis, url: "{redis}", prefix: "{prefix}"}}
store: {{url: "{store}"}}
features:
  budgeted:
    model: up:gpt-4o-mini
    max_tokens: 16
    retry: {{max_attempts: 1}}
    budgets: {{user: {{cost_usd: {budget}, per: day}}}}
    on_failure: {{respond: "over budget"}}
  limited:
    model: up:gpt-4o-mini
    retry: {{max_attempts: 1}}
    rate_limits: {{feature: {{rpm: {rpm}}}}}
    on_failure: {{respond: "limited"}}
  flaky:
    model: flaky:gpt-4o-mini
    fallbacks: [up:gpt-4o-mini]
    retry: {{max_attempts: 1}}
    breaker: {{window: 4, min_calls: 2, failure_rate: 0.5, cooldown_s: 300}}
    on_failure: {{respond: "flaky is down"}}
  cached:
    model: up:gpt-4o-mini
    temperature: 0
    retry: {{max_attempts: 1}}
    cache: {{ttl_s: 300}}
    on_failure: {{respond: "cached is down"}}
  plain:
    model: up:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "plain is down"}}
"""


@dataclass
class Cluster:
    replicas: list[GatewayProcess]
    up: FaultyUpstream
    flaky: FaultyUpstream
    engine: sa.Engine

    def url(self, n: int) -> str:
        return f"{self.replicas[n % len(self.replicas)].base_url}/chat/completions"

    def wait_for_traces(self, ids: list[str], timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The stored rows of these traces (the writers store off the request path)."""
        deadline = time.monotonic() + timeout_s
        query = sa.text(
            "SELECT id, user_id, status, reason, cost_usd FROM traces WHERE id = ANY(:ids)"
        )
        while True:
            with self.engine.connect() as connection:
                rows = [dict(r._mapping) for r in connection.execute(query, {"ids": ids})]
            if len(rows) == len(ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    def events(self, trace_id: str, kind: str) -> list[dict[str, Any]]:
        query = sa.text(
            "SELECT data FROM trace_steps WHERE trace_id = :id AND kind = 'event' AND event = :e"
        )
        with self.engine.connect() as connection:
            return [r[0] for r in connection.execute(query, {"id": trace_id, "e": kind})]

    def attempts(self, trace_id: str) -> list[str]:
        query = sa.text(
            "SELECT provider FROM trace_steps WHERE trace_id = :id AND kind = 'attempt'"
        )
        with self.engine.connect() as connection:
            return [r[0] for r in connection.execute(query, {"id": trace_id})]


@pytest.fixture(scope="module")
def shared_schema(postgres: str) -> Iterator[str]:
    """One PostgreSQL schema for the module: the three replicas write into the same one."""
    schema = f"tether_replicas_{secrets.token_hex(6)}"
    with admin_connect() as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = make_url(postgres).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin_connect() as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, shared_schema: str, redis_url: str
) -> Iterator[Cluster]:
    prefix = f"tether-test-{secrets.token_hex(4)}:"
    folder: Path = tmp_path_factory.mktemp("replicas")
    config = folder / "tether.yaml"
    with FaultyUpstream(text=ANSWER) as up, FaultyUpstream(text=ANSWER) as flaky:
        config.write_text(
            CONFIG.format(
                up=up.base_url,
                flaky=flaky.base_url,
                redis=redis_url,
                prefix=prefix,
                store=shared_schema,
                budget=BUDGET_USD,
                rpm=RPM,
            )
        )
        replicas: list[GatewayProcess] = []
        engine = sa.create_engine(shared_schema)
        try:
            for _ in range(3):  # one after the other: the first one migrates the schema
                replicas.append(GatewayProcess(config).start())
            yield Cluster(replicas, up, flaky, engine)
        finally:
            for replica in replicas:
                replica.stop()
            engine.dispose()
            forget(redis_url, prefix)


def forget(url: str, prefix: str) -> None:
    """Delete the module's keys from the shared Redis (budget counters live a day)."""
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


async def spread(
    cluster: Cluster,
    feature: str,
    n: int,
    *,
    user: str | None = None,
    concurrency: int = 24,
    first: int = 0,
) -> list[httpx.Response]:
    """``n`` calls, round robin over the replicas from replica ``first``, ``concurrency`` at a
    time."""
    gate = asyncio.Semaphore(concurrency)
    body: dict[str, Any] = {"model": feature, "messages": [{"role": "user", "content": "hi"}]}
    if user is not None:
        body["user"] = user

    async def one(client: httpx.AsyncClient, i: int) -> httpx.Response:
        async with gate:
            return await client.post(cluster.url(first + i), json=body)

    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(n))))


def trace_id(response: httpx.Response) -> str:
    return response.headers["x-tether-trace-id"]


async def test_a_user_budget_holds_across_the_replicas(cluster: Cluster) -> None:
    user = f"u-{secrets.token_hex(4)}"
    responses = await spread(cluster, "budgeted", 90, user=user)
    for n in range(30):  # then one at a time, over the replicas, until the budget refuses
        responses += await spread(cluster, "budgeted", 1, user=user, first=n)
        if "x-tether-degraded" in responses[-1].headers:
            break

    assert {r.status_code for r in responses} == {200}, [r.text for r in responses][:3]
    refused = [r for r in responses if r.headers.get("x-tether-degraded") == "budget_exceeded"]
    served = [r for r in responses if "x-tether-degraded" not in r.headers]
    assert refused and served, "the budget should admit some calls and refuse others"
    assert len(refused) + len(served) == len(responses)
    assert all(r.json()["choices"][0]["message"]["content"] == "over budget" for r in refused)

    rows = cluster.wait_for_traces([trace_id(r) for r in responses])
    assert len(rows) == len(responses), "every replica stores its traces in PostgreSQL"
    assert {row["user_id"] for row in rows} == {user}
    spent = sum(row["cost_usd"] for row in rows)
    reservations = [
        event["data"]["cost_usd"]
        for r in served
        for event in cluster.events(trace_id(r), "budget_reserved")
    ]
    assert len(reservations) == len(served), "each admitted call reserved first"
    largest = max(reservations)
    # Each call's cost is known: its tokens at the configured price.
    assert all(row["cost_usd"] > 0 for row in rows if row["reason"] is None)
    assert spent <= BUDGET_USD + largest, (spent, BUDGET_USD, largest)
    # The last call came alone, so nothing else was reserved: it was refused because what was
    # spent left no room for its reservation (never because of a reservation left behind).
    assert "x-tether-degraded" in responses[-1].headers
    assert spent > BUDGET_USD - largest, (spent, BUDGET_USD, largest)
    exceeded = cluster.events(trace_id(responses[-1]), "budget_exceeded")
    assert exceeded and exceeded[0]["data"]["scope"] == "user"
    assert exceeded[0]["data"]["reserved"] == pytest.approx(0, abs=1e-9), exceeded


async def test_an_rpm_limit_holds_across_the_replicas(cluster: Cluster) -> None:
    started = time.monotonic()
    responses = await spread(cluster, "limited", RPM * 3)
    elapsed = time.monotonic() - started

    admitted = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(limited) == len(responses), [r.text for r in responses][:3]
    # The bucket starts full (RPM) and refills at RPM per minute while the burst runs.
    refilled = math.floor(elapsed * RPM / 60)
    assert RPM <= len(admitted) <= RPM + refilled, (len(admitted), elapsed)
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    served_by = {r.url.port for r in admitted}
    assert len(served_by) > 1, "the calls were spread over the replicas"


async def test_every_replicas_traces_are_in_postgresql(cluster: Cluster) -> None:
    responses = await spread(cluster, "plain", 9)
    by_port: dict[int | None, list[str]] = {}
    for response in responses:
        assert response.status_code == 200
        by_port.setdefault(response.url.port, []).append(trace_id(response))
    assert len(by_port) == 3
    for ids in by_port.values():
        stored = cluster.wait_for_traces(ids)
        assert sorted(row["id"] for row in stored) == sorted(ids)
        assert {row["status"] for row in stored} == {"ok"}


def call(
    cluster: Cluster,
    replica: int,
    feature: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {"model": feature, "messages": [{"role": "user", "content": "hi"}], **extra}
    response = httpx.post(cluster.url(replica), json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_a_breaker_opened_on_one_replica_is_open_on_the_others(cluster: Cluster) -> None:
    cluster.flaky.set_fault(Fault.SERVER_503)
    try:
        for _ in range(8):  # replica 0 alone: failures until its breaker opens
            response = call(cluster, 0, "flaky")
            assert response.json()["choices"][0]["message"]["content"] == ANSWER  # fallback
            if cluster.wait_for_traces([trace_id(response)]) and cluster.events(
                trace_id(response), "breaker_open"
            ):
                break
        else:
            last = trace_id(response)
            steps = (
                cluster.attempts(last),
                cluster.wait_for_traces([last]),
                cluster.flaky.requests,
            )
            pytest.fail(f"the breaker did not open on replica 0 after 8 failures: {steps}")
        failed_upstream_calls = cluster.flaky.requests
        for replica in (1, 2):
            response = call(cluster, replica, "flaky")
            assert response.json()["choices"][0]["message"]["content"] == ANSWER
            assert cluster.wait_for_traces([trace_id(response)])
            assert cluster.events(trace_id(response), "breaker_open"), f"replica {replica}"
            assert cluster.attempts(trace_id(response)) == ["up"], f"replica {replica}"
        assert cluster.flaky.requests == failed_upstream_calls, "no replica called it again"
    finally:
        cluster.flaky.set_fault(Fault.OK)


def test_an_answer_cached_by_one_replica_is_a_hit_on_another(cluster: Cluster) -> None:
    question: dict[str, Any] = {
        "messages": [{"role": "user", "content": f"cache me {secrets.token_hex(4)}"}]
    }
    before = cluster.up.requests
    first = call(cluster, 0, "cached", **question)
    assert first.headers["x-tether-cache"] == "miss"
    assert cluster.up.requests == before + 1
    for replica in (1, 2):
        again = call(cluster, replica, "cached", **question)
        assert again.headers["x-tether-cache"] == "hit", f"replica {replica}"
        assert again.json()["choices"][0]["message"]["content"] == ANSWER
    streamed = call(cluster, 1, "cached", stream=True, **question)  # replayed as SSE
    assert streamed.headers["x-tether-cache"] == "hit"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    deltas = [
        choice["delta"].get("content") or ""
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
        for choice in json.loads(line.removeprefix("data: "))["choices"]
    ]
    assert "".join(deltas) == ANSWER
    assert cluster.up.requests == before + 1, "the hits never reached the upstream"
    bypass = call(cluster, 2, "cached", headers={"cache-control": "no-cache"}, **question)
    assert bypass.headers["x-tether-cache"] == "bypass"
    assert cluster.up.requests == before + 2
