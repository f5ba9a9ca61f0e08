"""The gateway's side of budgets, rate limits and the cache, as pure functions: who a call is
for (user, tenant, key, cache) from the request, and what a limit's error becomes in HTTP
(429 with Retry-After; the shared state never a 5xx). The live gateway:
tests/e2e/test_gateway_limits.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tether.errors import (
    BudgetExceeded,
    FeatureFailed,
    InvalidRequest,
    PermissionDenied,
    RateLimitExceeded,
    StateUnavailable,
    UpstreamError,
)
from tether.gateway.errors import advice_headers, envelope, retry_after
from tether.gateway.http import caller, no_cache, tether_headers
from tether.store.keys import ApiKey
from tether.telemetry.trace import Trace


def key(tenant: str | None = None) -> ApiKey:
    return ApiKey("k1", "app", "tth_abcd1234", ("*",), datetime.now(UTC), tenant=tenant)


def test_the_user_is_the_body_field_else_the_header() -> None:
    assert caller({"x-tether-user": "bob"}, None, "alice")["user"] == "alice"
    assert caller({"x-tether-user": "bob"}, None, None)["user"] == "bob"
    assert caller({"x-tether-user": "  "}, None, "")["user"] is None
    assert caller({}, None, None) == {"user": None, "tenant": None, "key": None, "cache": True}


def test_the_key_s_tenant_wins_and_cannot_be_overridden() -> None:
    assert caller({}, key("acme"), None)["tenant"] == "acme"
    assert caller({"x-tether-tenant": "acme"}, key("acme"), None)["tenant"] == "acme"
    assert caller({"x-tether-tenant": "beta"}, key(None), None)["tenant"] == "beta"
    assert caller({"x-tether-tenant": "beta"}, None, None)["tenant"] == "beta"  # local mode
    assert caller({}, key(), None)["key"] == "k1"
    with pytest.raises(PermissionDenied, match="tenant 'acme'") as refused:
        caller({"x-tether-tenant": "beta"}, key("acme"), None)
    assert refused.value.reason == "tenant_mismatch"
    assert envelope(refused.value)[0] == 403


def test_an_overlong_identity_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as bad:
        caller({"x-tether-user": "u" * 257}, None, None)
    assert bad.value.param == "x-tether-user"
    assert caller({"x-tether-user": "u" * 256}, None, None)["user"] == "u" * 256


@pytest.mark.parametrize(
    ("header", "off"),
    [
        ("no-cache", True),
        ("No-Store", True),
        ("max-age=0, no-cache", True),
        ('no-cache="set-cookie"', True),
        ("max-age=60", False),
        ("", False),
    ],
)
def test_cache_control_turns_the_cache_off(header: str, off: bool) -> None:
    assert no_cache({"cache-control": header}) is off
    assert caller({"cache-control": header}, None, None)["cache"] is not off


def test_the_cache_header_is_there_when_the_feature_has_a_cache() -> None:
    trace = Trace(feature="f")
    assert "x-tether-cache" not in tether_headers(trace, False, None)
    trace.cache = "hit"
    assert tether_headers(trace, False, None)["x-tether-cache"] == "hit"


def test_retry_after_is_whole_seconds_rounded_up_at_least_one() -> None:
    assert [retry_after(s) for s in (0.0, 0.2, 1.0, 1.01, 59.5)] == ["1", "1", "1", "2", "60"]


def test_a_rate_limit_is_a_429_with_retry_after() -> None:
    error = RateLimitExceeded("over the user rpm", scope="user", retry_after_s=2.1)
    status, body = envelope(error)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert advice_headers(error) == {"retry-after": "3"}


def test_a_rejecting_budget_is_a_429_until_its_period_resets() -> None:
    error = BudgetExceeded(
        "over", scope="user", resets_at=0.0, retry_after_s=3599.2, to_caller=True
    )
    status, body = envelope(error)
    assert (status, body["error"]["code"]) == (429, "budget_exceeded")
    assert advice_headers(error) == {"retry-after": "3600", "x-should-retry": "false"}
    soon = BudgetExceeded("over", scope="user", retry_after_s=59.5, to_caller=True)
    assert advice_headers(soon) == {"retry-after": "60"}  # the SDKs wait that long themselves
    too_big = BudgetExceeded("one call's worst case is over", scope="request", to_caller=True)
    assert advice_headers(too_big) == {"x-should-retry": "false"}


def test_the_state_backend_is_never_a_5xx() -> None:
    down = StateUnavailable("redis://127.0.0.1:1 does not answer")
    assert envelope(down)[0] == 424
    raised = FeatureFailed("every path failed", cause=down)
    status, body = envelope(raised)
    assert (status, body["error"]["code"]) == (424, "state_unavailable")
    over = FeatureFailed("failed", cause=BudgetExceeded("over", scope="user", retry_after_s=9))
    assert envelope(over)[0] == 429 and advice_headers(over) == {"retry-after": "9"}
    assert advice_headers(FeatureFailed("x", cause=UpstreamError("503"))) == {}
