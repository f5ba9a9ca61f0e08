"""Traces survive a restart of the gateway, on SQLite and on PostgreSQL: calls go through a live
``tether serve``, the gateway is stopped (SIGTERM: the trace writer flushes), started again, and
the traces are read back through the admin API and ``tether traces``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tether.testing.upstream import FaultyUpstream, refused_base_url

from .gateway_server import GatewayProcess, tether_cli

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: k}}
  gone: {{kind: openai, base_url: "{gone}", api_key: k}}
features:
  ok:
    model: up:gpt-4o-mini
    on_failure: {{respond: "unavailable"}}
  down:
    model: gone:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "unavailable"}}
store:
  url: "{store}"
  flush_interval_s: 60   # nothing is written before shutdown: only the graceful flush stores
  batch_size: 1000
"""
ADMIN = {"authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(text="stored answer") as up:
        yield up


def test_traces_survive_a_restart(tmp_path: Path, upstream: FaultyUpstream, store_url: str) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(CONFIG.format(up=upstream.base_url, gone=refused_base_url(), store=store_url))
    env = {"TETHER_ADMIN_TOKEN": "admin-secret"}
    sent: dict[str, str] = {}
    with GatewayProcess(config, env=env) as gateway:
        for i in range(12):
            feature = "down" if i % 3 == 0 else "ok"
            response = httpx.post(
                f"{gateway.base_url}/chat/completions",
                json={
                    "model": feature,
                    "messages": [{"role": "user", "content": f"q{i}"}],
                    "user": f"user-{i % 2}",
                },
            )
            assert response.status_code == 200
            sent[response.headers["x-tether-trace-id"]] = feature
        # graceful: uvicorn finishes the lifespan (the writer flushes), then re-raises SIGTERM
        assert gateway.stop() in (0, -15)
    with GatewayProcess(config, env=env) as gateway:
        listed = httpx.get(f"{gateway.root}/admin/traces?limit=100", headers=ADMIN).json()
        assert {t["id"] for t in listed["data"]} == set(sent)
        degraded = httpx.get(
            f"{gateway.root}/admin/traces?degraded=true&limit=100", headers=ADMIN
        ).json()["data"]
        assert {t["id"] for t in degraded} == {i for i, f in sent.items() if f == "down"}
        one = next(i for i, f in sent.items() if f == "ok")
        detail = httpx.get(f"{gateway.root}/admin/traces/{one}", headers=ADMIN).json()
        assert detail["output"] == "stored answer"
        assert detail["steps"], "attempts are stored with the trace"
    cli = tether_cli(
        "traces", "list", "--config", str(config), "--feature", "down", "--user", "user-0", "--json"
    )
    assert cli.returncode == 0, cli.stderr
    rows = json.loads(cli.stdout)
    expected = {i for i, f in sent.items() if f == "down"}
    assert rows and {r["id"] for r in rows} <= expected
    assert all(r["degraded"] for r in rows)
