"""`tether serve` reads the same ``TETHER_*`` settings as `tether keys` and `tether traces`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from .gateway_server import GatewayProcess, tether_cli

CONFIG = """\
providers:
  up: {kind: scripted, replies: [{text: "hello from the gateway"}]}
features:
  greet:
    model: up:m
    on_failure: {respond: "later"}
"""


def test_a_key_made_under_tether_store_url_works_in_serve(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    env = {"TETHER_STORE_URL": f"sqlite:///{tmp_path / 'shared.db'}"}
    # The config's own store (tether.db) has a key too, so it is not in local mode: a gateway
    # reading it instead of $TETHER_STORE_URL refuses the key below with 401.
    other = tether_cli("keys", "create", "-c", str(config), "-s", "greet")
    assert other.returncode == 0, other.stderr
    made = tether_cli("keys", "create", "-c", str(config), "-s", "greet", env={**os.environ, **env})
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    with GatewayProcess(config, env=env) as gateway:
        reply = httpx.post(
            f"{gateway.base_url}/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "greet", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        trace_id = reply.headers["x-tether-trace-id"]
    listed = tether_cli("traces", "list", "-c", str(config), "--json", env={**os.environ, **env})
    assert trace_id in [t["id"] for t in json.loads(listed.stdout)]  # stored there too


def test_several_workers_on_in_process_state_are_refused(tmp_path: Path) -> None:
    """Each worker would count budgets and rate limits on its own (N times the limit): serve
    refuses and names the fix, unless the state is shared."""
    limited = CONFIG + "    rate_limits: {user: {rpm: 5}}\n    cache: {ttl_s: 60}\n"
    config = tmp_path / "tether.yaml"
    config.write_text(limited, encoding="utf-8")
    refused = tether_cli("serve", "-c", str(config), "--workers", "2", "--port", "1")
    assert refused.returncode == 1
    assert "rate limits of greet, cache of greet" in refused.stderr
    assert "backend: redis" in refused.stderr
