"""Budgets, rate limits and the cache through a live ``tether serve`` on Redis state, with the
unmodified ``openai`` SDK and plain HTTP: 429 + Retry-After (rate limit, rejecting budget; a
stream too), a degraded 200 for a degrading budget, ``x-tether-cache`` on every endpoint,
``Cache-Control: no-cache``, the tenant from the key or the header (403 on a mismatch),
``tether budgets status`` and ``GET /admin/budgets``, ``/readyz`` with the state backend (a
Redis that dies and comes back), and the Prometheus counters."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import SpareRedis

from .gateway_server import GatewayProcess, tether_cli

ANSWER = " ".join(f"word{i}" for i in range(40))  # 40 output tokens a call, as scripted counts
CONFIG = """\
state: {{backend: redis, url: "{redis}", prefix: "{prefix}"}}
providers:
  s:
    kind: scripted
    replies: [{{text: "{answer}"}}]
    prices: {{m: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
features:
  limited:
    model: s:m
    rate_limits: {{user: {{rpm: 2}}}}
    on_failure: {{respond: "unavailable"}}
  per-tenant:
    model: s:m
    rate_limits: {{tenant: {{rpm: 1}}}}
    on_failure: {{respond: "unavailable"}}
  capped:
    model: s:m
    budgets: {{user: {{tokens: 300, per: day}}, on_exceeded: reject}}
    on_failure: {{respond: "unavailable"}}
  degrading:
    model: s:m
    budgets: {{user: {{tokens: 300, per: day}}}}
    on_failure: {{respond: "over budget for today"}}
  cached:
    model: s:m
    cache: {{ttl_s: 300}}
    on_failure: {{respond: "unavailable"}}
  vectors:
    kind: embedding
    model: s:m
    cache: {{ttl_s: 300}}
    on_failure: {{raise: true}}
store:
  url: "sqlite:///traces.db"
"""
ADMIN_TOKEN = "admin-secret"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


class Keys:
    """The gateway's API keys: ``plain`` (no tenant), ``acme`` (tenant acme)."""

    def __init__(self, config: Path) -> None:
        self.plain = self._create(config)
        self.acme = self._create(config, "--tenant", "acme")

    @staticmethod
    def _create(config: Path, *more: str) -> str:
        made = tether_cli("keys", "create", "--config", str(config), "-s", "*", "--json", *more)
        assert made.returncode == 0, made.stderr
        key: str = json.loads(made.stdout)["key"]
        return key


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[GatewayProcess, Keys]]:
    prefix = f"test:{secrets.token_hex(6)}:"
    config = tmp_path_factory.mktemp("limits") / "tether.yaml"
    config.write_text(CONFIG.format(redis=redis_url, prefix=prefix, answer=ANSWER))
    keys = Keys(config)
    try:
        with GatewayProcess(config, env={"TETHER_ADMIN_TOKEN": ADMIN_TOKEN}) as gateway:
            yield gateway, keys
    finally:
        client = redis.Redis.from_url(redis_url)
        stale = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if stale:
            client.delete(*stale)
        client.close()


@pytest.fixture(scope="module")
def gateway(setup: tuple[GatewayProcess, Keys]) -> GatewayProcess:
    return setup[0]


@pytest.fixture(scope="module")
def keys(setup: tuple[GatewayProcess, Keys]) -> Keys:
    return setup[1]


def post(
    gateway: GatewayProcess, key: str, path: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    sent = {
        "authorization": f"Bearer {key}",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    return httpx.post(f"{gateway.base_url}{path}", json=body, headers=sent, timeout=30)


def chat(message: str, **more: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": message}], **more}


def retry_after(response: httpx.Response) -> int:
    value = response.headers["retry-after"]
    assert value.isdigit(), value
    return int(value)


# ---------------------------------------------------------------- rate limits


def test_a_rate_limit_is_a_429_with_retry_after(gateway: GatewayProcess, keys: Keys) -> None:
    body = chat("hello", model="limited", user="alice")
    assert [post(gateway, keys.plain, "/chat/completions", body).status_code for _ in "ab"] == [
        200,
        200,
    ]
    refused = post(gateway, keys.plain, "/chat/completions", body)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= retry_after(refused) <= 60  # 2 a minute: one more in at most 30 s
    streamed = post(gateway, keys.plain, "/chat/completions", {**body, "stream": True})
    assert streamed.status_code == 429  # a proper status, not an SSE error
    assert streamed.headers["content-type"].startswith("application/json")
    other = chat("hello", model="limited")  # bob, by header: a bucket of his own
    assert post(gateway, keys.plain, "/chat/completions", other, x_tether_user="bob").is_success
    client = openai.OpenAI(base_url=gateway.base_url, api_key=keys.plain, max_retries=0)
    with client, pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="limited", messages=[{"role": "user", "content": "hi"}], user="alice"
        )
    assert raised.value.response.headers["retry-after"].isdigit()
    trace = gateway.stored_trace(refused.headers["x-tether-trace-id"], ADMIN_TOKEN)
    assert trace["reason"] == "rate_limit_exceeded"
    assert any(e["kind"] == "rate_limited" for e in trace["events"])


def test_the_tenant_comes_from_the_key_or_the_header(gateway: GatewayProcess, keys: Keys) -> None:
    body = chat("hi", model="per-tenant")
    assert post(gateway, keys.acme, "/chat/completions", body).status_code == 200
    assert post(gateway, keys.acme, "/chat/completions", body).status_code == 429  # acme: 1/min
    named = post(gateway, keys.plain, "/chat/completions", body, x_tether_tenant="acme")
    assert named.status_code == 429  # the same tenant, named by a key without one
    assert post(gateway, keys.plain, "/chat/completions", body, x_tether_tenant="beta").is_success
    mismatch = post(gateway, keys.acme, "/chat/completions", body, x_tether_tenant="beta")
    assert mismatch.status_code == 403
    assert mismatch.json()["error"]["code"] == "tenant_mismatch"
    embedded = post(
        gateway,
        keys.acme,
        "/embeddings",
        {"model": "vectors", "input": "x"},
        x_tether_tenant="beta",
    )
    assert embedded.status_code == 403


# ---------------------------------------------------------------- budgets


def until_refused(gateway: GatewayProcess, key: str, body: dict[str, Any]) -> list[httpx.Response]:
    """Calls until one is refused or degraded by the budget (at most 30)."""
    answers = []
    for _ in range(30):
        answer = post(gateway, key, "/chat/completions", body)
        answers.append(answer)
        if answer.status_code != 200 or "x-tether-degraded" in answer.headers:
            break
    return answers


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def test_a_rejecting_budget_is_a_429_until_the_period_resets(
    gateway: GatewayProcess, keys: Keys
) -> None:
    answers = until_refused(
        gateway, keys.plain, chat("spend", model="capped", user="carol", max_tokens=100)
    )
    *passed, refused = answers
    assert passed and all(a.status_code == 200 for a in passed)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert abs(retry_after(refused) - seconds_to_midnight()) < 30  # a daily budget
    if seconds_to_midnight() > 90:  # a reset that far away: no SDK retries within seconds
        assert refused.headers["x-should-retry"] == "false"
    client = openai.OpenAI(base_url=gateway.base_url, api_key=keys.plain, max_retries=0)
    with client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="capped", messages=[{"role": "user", "content": "more"}], user="carol"
        )
    dave = post(
        gateway,
        keys.plain,
        "/chat/completions",
        chat("spend", model="capped", user="dave", max_tokens=100),
    )
    assert dave.status_code == 200  # a budget per user


def test_a_degrading_budget_answers_200_degraded(gateway: GatewayProcess, keys: Keys) -> None:
    answers = until_refused(
        gateway, keys.plain, chat("spend", model="degrading", user="erin", max_tokens=100)
    )
    last = answers[-1]
    assert len(answers) > 1 and last.status_code == 200
    assert last.headers["x-tether-degraded"] == "budget_exceeded"
    assert last.json()["choices"][0]["message"]["content"] == "over budget for today"
    # when the budget's period resets: the header in whole seconds, the body's tether facts
    waited = last.json()["tether"]["retry_after_s"]
    assert 0 < waited <= 86_400 and int(last.headers["x-tether-retry-after"]) >= waited
    assert "x-tether-retry-after" not in answers[0].headers


def test_budgets_status_from_the_cli_and_admin(gateway: GatewayProcess, keys: Keys) -> None:
    body = chat("spend", model="capped", user="frank", max_tokens=100)
    assert post(gateway, keys.plain, "/chat/completions", body).status_code == 200
    shown = tether_cli(
        "budgets",
        "status",
        "--config",
        str(gateway.config),
        "--feature",
        "capped",
        "--user",
        "frank",
        "--json",
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["backend"] == "redis" and report["note"] is None
    [frank] = [s for s in report["scopes"] if s["scope"] == "user"]
    assert frank["identity"] == "frank" and frank["dimension"] == "tokens"
    assert frank["limit"] == 300 and frank["mode"] == "hard" and frank["period"] == "day"
    assert 40 <= frank["spent"] < 300 and frank["reserved"] == 0
    assert abs(frank["resets_at"] - time.time() - seconds_to_midnight()) < 30
    table = tether_cli("budgets", "status", "--config", str(gateway.config), "-u", "frank")
    assert table.returncode == 0 and "capped" in table.stdout and "frank" in table.stdout

    url = f"{gateway.root}/admin/budgets"
    query = {"feature": "capped", "user": "frank"}
    admin = httpx.get(url, params=query, headers=ADMIN, timeout=10)
    assert admin.status_code == 200, admin.text
    assert [s for s in admin.json()["scopes"] if s["scope"] == "user"] == [frank]
    assert httpx.get(url, params=query, timeout=10).status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert httpx.get(url, params=query, headers=wrong, timeout=10).status_code == 403
    bad = httpx.get(url, params={"users": "frank"}, headers=ADMIN, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "users"
    unknown = httpx.get(url, params={"feature": "nope"}, headers=ADMIN, timeout=10)
    assert unknown.status_code == 404


def test_budgets_status_on_the_memory_backend_says_it_knows_nothing(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(
        "providers: {s: {kind: scripted}}\nfeatures:\n  capped:\n    model: s:m\n"
        "    budgets: {user: {tokens: 300, per: day}}\n    on_failure: {respond: x}\n"
    )
    shown = tether_cli("budgets", "status", "--config", str(config), "-u", "gina", "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["backend"] == "memory" and "GET /admin/budgets" in report["note"]
    assert report["scopes"] and all(s["spent"] is None for s in report["scopes"])
    table = tether_cli("budgets", "status", "--config", str(config), "-u", "gina")
    assert table.returncode == 0 and "state.backend is memory" in table.stderr


# ---------------------------------------------------------------- the cache


def twice(
    gateway: GatewayProcess, key: str, path: str, body: dict[str, Any]
) -> list[httpx.Response]:
    return [post(gateway, key, path, body) for _ in "ab"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chat/completions", chat("cache me", model="cached", temperature=0)),
        ("/completions", {"model": "cached", "prompt": "complete me", "temperature": 0}),
        ("/responses", {"model": "cached", "input": "respond me", "temperature": 0}),
        ("/embeddings", {"model": "vectors", "input": ["embed me"]}),
    ],
)
def test_the_second_call_is_a_cache_hit(
    gateway: GatewayProcess, keys: Keys, path: str, body: dict[str, Any]
) -> None:
    first, second = twice(gateway, keys.plain, path, body)
    assert first.status_code == second.status_code == 200, second.text
    assert (first.headers["x-tether-cache"], second.headers["x-tether-cache"]) == ("miss", "hit")
    strip = ("id", "created", "created_at", "tether", "output", "usage")  # a hit is free
    same = {k: v for k, v in first.json().items() if k not in strip}
    assert {k: v for k, v in second.json().items() if k not in strip} == same
    trace = gateway.stored_trace(second.headers["x-tether-trace-id"], ADMIN_TOKEN)
    assert trace["cache"] == "hit" and trace["attempts"] == []


def test_a_streamed_call_is_served_from_the_cache(gateway: GatewayProcess, keys: Keys) -> None:
    body = chat("stream me", model="cached", stream=True, temperature=0)
    first, second = twice(gateway, keys.plain, "/chat/completions", body)
    assert (first.headers["x-tether-cache"], second.headers["x-tether-cache"]) == ("miss", "hit")

    def text(response: httpx.Response) -> str:
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )

    assert text(second) == text(first) == ANSWER


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/completions", {"model": "cached", "prompt": "stream a completion", "temperature": 0}),
        ("/responses", {"model": "cached", "input": "stream a response", "temperature": 0}),
    ],
)
def test_other_streams_say_cache_hit_before_the_body(
    gateway: GatewayProcess, keys: Keys, path: str, body: dict[str, Any]
) -> None:
    first, second = twice(gateway, keys.plain, path, {**body, "stream": True})
    assert (first.headers["x-tether-cache"], second.headers["x-tether-cache"]) == ("miss", "hit")
    assert second.headers["content-type"].startswith("text/event-stream")
    assert "word39" in second.text


def test_cache_control_no_cache_bypasses(gateway: GatewayProcess, keys: Keys) -> None:
    body = chat("bypass me", model="cached", temperature=0)
    assert post(gateway, keys.plain, "/chat/completions", body).headers["x-tether-cache"] == "miss"
    fresh = post(gateway, keys.plain, "/chat/completions", body, cache_control="no-cache")
    assert fresh.status_code == 200 and fresh.headers["x-tether-cache"] == "bypass"
    trace = gateway.stored_trace(fresh.headers["x-tether-trace-id"], ADMIN_TOKEN)
    assert trace["cache"] == "bypass" and len(trace["attempts"]) == 1


# ---------------------------------------------------------------- operations


def test_readyz_checks_the_state_backend(gateway: GatewayProcess) -> None:
    ready = httpx.get(f"{gateway.root}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["state"] == "ok"


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_metrics_count_limits_budgets_and_the_cache(gateway: GatewayProcess, keys: Keys) -> None:
    body = chat("hello", model="limited", user="hank")
    while post(gateway, keys.plain, "/chat/completions", body).status_code != 429:
        pass
    until_refused(gateway, keys.plain, chat("spend", model="capped", user="ivan", max_tokens=100))
    twice(gateway, keys.plain, "/chat/completions", chat("count me", model="cached", temperature=0))
    deadline, text = time.monotonic() + 20, ""
    while time.monotonic() < deadline:  # traces reach the metrics as they finish
        text = httpx.get(f"{gateway.root}/metrics", headers=ADMIN, timeout=10).text
        counted = (
            metric(text, "tether_rate_limited_total", feature="limited", scope="user"),
            metric(
                text, "tether_budget_exceeded_total", feature="capped", scope="user", mode="hard"
            ),
            metric(text, "tether_cache_requests_total", feature="cached", result="hit"),
            metric(text, "tether_budget_spent_usd_total", feature="capped"),
        )
        if all(counted):
            break
        time.sleep(0.1)
    assert all(counted), counted


@pytest.mark.parametrize(
    ("policy", "status", "check"),
    [("fail_closed", 503, "error: "), ("fail_open", 200, "degraded: ")],
)
def test_readyz_follows_a_redis_that_dies_and_comes_back(
    tmp_path: Path, spare_redis: SpareRedis, policy: str, status: int, check: str
) -> None:
    """fail_closed: not ready while Redis is down (calls would take their failure path);
    fail_open: still ready, and the check says calls pass unchecked. Both: ``ok`` once Redis
    is back, without a restart."""
    config = tmp_path / "tether.yaml"
    config.write_text(
        f'state: {{backend: redis, url: "{spare_redis.url}", timeout_s: 0.3, '
        f"on_unavailable: {policy}}}\n"
        "providers: {s: {kind: scripted}}\nfeatures:\n  f: {model: s:m, on_failure: {respond: x}}\n"
    )
    with GatewayProcess(config) as gateway:
        spare_redis.stop()
        down = httpx.get(f"{gateway.root}/readyz", timeout=10)
        assert down.status_code == status, down.text
        assert down.json()["checks"]["state"].startswith(check)
        spare_redis.start()
        deadline = time.monotonic() + 15
        while (up := httpx.get(f"{gateway.root}/readyz", timeout=10)).json()["checks"][
            "state"
        ] != "ok":
            assert time.monotonic() < deadline, up.text
            time.sleep(0.1)
        assert up.status_code == 200
