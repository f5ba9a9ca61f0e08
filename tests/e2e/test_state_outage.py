"""The state backend goes away and comes back under a live ``tether serve``.

A second redis-server (started by the test on a free port) holds the gateway's state; the test
kills it mid-run and starts it again on the same port:

- ``fail_closed``: while it is down, calls that need the state take the feature's failure path
  (200 degraded, reason ``state_unavailable``), never a 5xx, streamed or not;
- ``fail_open``: calls keep being served, and the trace says the checks were skipped;
- both use Redis again once it answers, without a restart.

And a client that disconnects mid-stream pays for what was generated, not for its reservation:
the user's budget shows the stream settled (nothing left reserved) at a fraction of the answer.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import SpareRedis
from tether.testing.upstream import FaultyUpstream

from .gateway_server import GatewayProcess, tether_cli

ADMIN = {"authorization": "Bearer admin-secret"}
ANSWER = "the answer from upstream"

CONFIG = """\
providers:
  up:
    kind: openai
    base_url: "{up}"
    api_key: k
    prices: {{gpt-4o-mini: {{input_per_mtok: 1000, output_per_mtok: 1000}}}}
state: {{backend: redis, url: "{redis}", prefix: "{prefix}", on_unavailable: {policy}}}
store: {{url: "sqlite:///{folder}/traces.db"}}
features:
  guarded:
    model: up:gpt-4o-mini
    max_tokens: 400
    retry: {{max_attempts: 1}}
    budgets: {{user: {{cost_usd: 100, per: day}}}}
    rate_limits: {{user: {{rpm: 100000}}}}
    on_failure: {{respond: "the state is down"}}
"""


def write_config(
    folder: Path, up: FaultyUpstream, redis_url: str, policy: str, prefix: str = "tether:"
) -> Path:
    config = folder / "tether.yaml"
    config.write_text(
        CONFIG.format(up=up.base_url, redis=redis_url, prefix=prefix, policy=policy, folder=folder)
    )
    return config


def ask(gateway: GatewayProcess, *, stream: bool = False) -> httpx.Response:
    body = {
        "model": "guarded",
        "user": "alice",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    response = httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text  # never a 5xx, whatever the state does
    return response


def content(response: httpx.Response) -> str:
    if response.headers["content-type"].startswith("text/event-stream"):
        parts = []
        for line in response.text.splitlines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    parts.append(choice["delta"].get("content") or "")
        return "".join(parts)
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def events(gateway: GatewayProcess, response: httpx.Response, kind: str) -> list[dict[str, Any]]:
    trace = gateway.stored_trace(response.headers["x-tether-trace-id"])
    return [e["data"] for e in trace["events"] if e["kind"] == kind]


def served_normally(response: httpx.Response) -> bool:
    return "x-tether-degraded" not in response.headers and content(response) == ANSWER


def until_served(gateway: GatewayProcess, stream: bool = False) -> httpx.Response:
    """Calls until one is served normally again (the client reconnects on its own)."""
    deadline = time.monotonic() + 20
    while not served_normally(response := ask(gateway, stream=stream)):
        assert time.monotonic() < deadline, f"not served again: {response.headers}"
        time.sleep(0.2)
    return response


@pytest.fixture
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(text=ANSWER) as up:
        yield up


def test_fail_closed_takes_the_failure_path_and_recovers(
    tmp_path: Path, upstream: FaultyUpstream, spare_redis: SpareRedis
) -> None:
    config = write_config(tmp_path, upstream, spare_redis.url, "fail_closed")
    with GatewayProcess(config, env={"TETHER_ADMIN_TOKEN": "admin-secret"}) as gateway:
        assert served_normally(ask(gateway))
        spare_redis.stop()
        calls = upstream.requests
        for stream in (False, True):
            down = ask(gateway, stream=stream)
            assert down.headers["x-tether-degraded"] == "state_unavailable"
            assert content(down) == "the state is down"
        assert upstream.requests == calls, "nothing unchecked reached the upstream"
        trace = gateway.stored_trace(down.headers["x-tether-trace-id"])
        assert trace["reason"] == "state_unavailable" and trace["degraded"]
        ready = httpx.get(f"{gateway.root}/readyz", timeout=10)
        assert ready.status_code == 503, "readiness reports the state backend down"

        spare_redis.start()
        back = until_served(gateway)
        assert not events(gateway, back, "state_unavailable")
        assert served_normally(until_served(gateway, stream=True))
        assert httpx.get(f"{gateway.root}/readyz", timeout=10).status_code == 200


def test_fail_open_keeps_serving_says_so_and_recovers(
    tmp_path: Path, upstream: FaultyUpstream, spare_redis: SpareRedis
) -> None:
    config = write_config(tmp_path, upstream, spare_redis.url, "fail_open")
    with GatewayProcess(config, env={"TETHER_ADMIN_TOKEN": "admin-secret"}) as gateway:
        assert served_normally(ask(gateway))
        spare_redis.stop()
        for stream in (False, True):
            unchecked = ask(gateway, stream=stream)
            assert served_normally(unchecked), unchecked.headers
        said = events(gateway, unchecked, "state_unavailable")
        assert said and {e["policy"] for e in said} == {"fail_open"}
        metrics = httpx.get(f"{gateway.root}/metrics", headers=ADMIN, timeout=10).text
        assert 'policy="fail_open"' in metrics and "tether_state_unavailable_total" in metrics
        ready = httpx.get(f"{gateway.root}/readyz", timeout=10)
        assert ready.status_code == 200, "fail_open serves, so the replica stays in rotation"

        spare_redis.start()
        deadline = time.monotonic() + 20
        while events(gateway, back := until_served(gateway), "state_unavailable"):
            assert time.monotonic() < deadline, "the gateway never used Redis again"
            time.sleep(0.2)
        assert events(gateway, back, "budget_reserved"), "budgets are checked again"


def budget_status(config: Path, user: str) -> dict[str, Any]:
    done = tether_cli(
        "budgets",
        "status",
        "--config",
        str(config),
        "--feature",
        "guarded",
        "--user",
        user,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    scopes = found["scopes"] if isinstance(found, dict) else found
    (mine,) = [s for s in scopes if s["scope"] == "user" and s["dimension"] == "cost_usd"]
    return dict(mine)


def test_a_client_that_disconnects_mid_stream_pays_for_what_was_generated(
    tmp_path: Path, redis_url: str, state_prefix: str
) -> None:
    words = 300
    with FaultyUpstream(text=" ".join(["word"] * words), chunk_delay_s=0.02) as up:
        config = write_config(tmp_path, up, redis_url, "fail_closed", state_prefix)
        user = f"streamer-{secrets.token_hex(4)}"
        body = {
            "model": "guarded",
            "user": user,
            "stream": True,
            "messages": [{"role": "user", "content": "talk"}],
        }
        with GatewayProcess(config, env={"TETHER_ADMIN_TOKEN": "admin-secret"}) as gateway:
            with httpx.stream(
                "POST", f"{gateway.base_url}/chat/completions", json=body, timeout=30
            ) as response:
                assert response.status_code == 200
                trace_id = response.headers["x-tether-trace-id"]
                seen = 0
                for line in response.iter_lines():
                    seen += line.startswith("data: {")
                    if seen >= 5:
                        break  # leaving the block closes the connection mid-stream
            trace = gateway.stored_trace(trace_id)
            deadline = time.monotonic() + 20
            while (level := budget_status(config, user))["reserved"] > 0:
                assert time.monotonic() < deadline, f"still reserved: {level}"
                time.sleep(0.2)
    whole_answer = (words + 1) * 0.001  # the full answer at $0.001 per token, and the prompt
    assert 0 < level["spent"] < whole_answer / 2, level
    settled = [e["data"] for e in trace["events"] if e["kind"] == "budget_settled"]
    reserved = [e["data"] for e in trace["events"] if e["kind"] == "budget_reserved"]
    assert settled and reserved and settled[0]["cost_usd"] < reserved[0]["cost_usd"]
    assert level["spent"] == pytest.approx(settled[0]["cost_usd"], rel=1e-6, abs=1e-9)
    # the trace says what the budget was charged: the cut attempt's estimated usage and cost
    assert trace["cost_usd"] == pytest.approx(level["spent"], rel=1e-6, abs=1e-9)
    assert any(e["kind"] == "usage_estimated" for e in trace["events"])
