"""Rate limits (``rate_limits:``) through the SDK with the in-process state backend: an rpm
limit holds under concurrency (admitted <= limit) and refuses with RateLimitExceeded and a
positive retry_after_s, each user has a bucket of their own, a call without a scope's identity
is not limited by it (and says so), tpm takes the estimate and gives back what was not used,
and embeddings and streams are limited too. Upstream pacing: tests/integration/
test_upstream_pacing.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether import Tether
from tether.config.models import TetherConfig
from tether.errors import RateLimitExceeded
from tether.providers.scripted import Reply, ScriptedProvider
from tether.telemetry.trace import Trace


def config(
    limits: dict[str, Any], *, kind: str = "chat", max_tokens: int | None = None
) -> TetherConfig:
    feature: dict[str, Any] = {"model": "up:big", "retry": {"max_attempts": 1}}
    feature["rate_limits"] = limits
    if kind == "chat":
        feature |= {
            "prompt": {"system": "You help.", "template": "{{ message }}"},
            "on_failure": {"respond": "Sorry, not now."},
            "max_tokens": max_tokens,
        }
    else:
        feature |= {"kind": "embedding", "on_failure": {"raise": True}}
    return TetherConfig.model_validate(
        {"providers": {"up": {"kind": "scripted"}}, "features": {"f": feature}}
    )


def make(cfg: TetherConfig, *, delay_s: float = 0.0) -> tuple[Tether, ScriptedProvider]:
    """A Tether on a scripted upstream that answers "ok" (after ``delay_s``: calls overlap)."""
    up = ScriptedProvider([Reply("ok", delay_s=delay_s)], name="up")
    return Tether(cfg, providers={"up": up}), up


def events(trace: Trace | None, kind: str) -> list[dict[str, Any]]:
    assert trace is not None
    return [e.data for e in trace.events if e.kind == kind]


async def outcomes(calls: list[Any]) -> tuple[list[Any], list[RateLimitExceeded]]:
    """The calls run concurrently: the results, and the RateLimitExceeded refusals."""
    done = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in done if isinstance(r, RateLimitExceeded)]
    others = [r for r in done if isinstance(r, BaseException) and r not in refused]
    assert not others, others
    return [r for r in done if not isinstance(r, BaseException)], refused


async def test_rpm_holds_under_concurrent_calls() -> None:
    tether, up = make(config({"user": {"rpm": 10}}), delay_s=0.01)
    calls = [tether.run("f", {"message": "hi"}, user="ana") for _ in range(50)]
    admitted, refused = await outcomes(calls)
    assert len(admitted) == 10 and len(up.calls) == 10
    assert len(refused) == 40
    for error in refused:
        assert error.scope == "user" and error.to_caller
        assert error.retry_after_s is not None and error.retry_after_s > 0
        assert error.reason == "rate_limit_exceeded"
        assert "rate_limits.user.rpm" in str(error)
    # rpm 10 refills one request every 6 s: the next one is due within 6 s
    assert min(e.retry_after_s or 0 for e in refused) <= 6.0
    traces = [t for t in tether.traces.traces if t.status == "error"]
    assert len(traces) == 40
    assert all(t.reason == "rate_limit_exceeded" for t in traces)
    assert all(events(t, "rate_limited")[0]["scope"] == "user" for t in traces)


async def test_each_user_has_a_bucket_and_missing_identities_are_skipped() -> None:
    tether, _ = make(config({"user": {"rpm": 2}, "feature": {"rpm": 100}}))
    for _ in range(2):
        await tether.run("f", {"message": "hi"}, user="ana")
    with pytest.raises(RateLimitExceeded) as refused:
        await tether.run("f", {"message": "hi"}, user="ana")
    assert refused.value.scope == "user"
    assert (await tether.run("f", {"message": "hi"}, user="bob")).output == "ok"
    assert (await tether.run("f", {"message": "hi"}, user="ana:x")).output == "ok"
    anonymous = await tether.run("f", {"message": "hi"})  # no user: the user limit is skipped
    assert anonymous.output == "ok"
    assert events(anonymous.trace, "rate_limit_scope_skipped") == [{"scope": "user"}]


async def test_keys_and_tenants_have_buckets_of_their_own() -> None:
    tether, _ = make(config({"key": {"rpm": 1}, "tenant": {"rpm": 1}}))
    await tether.run("f", {"message": "hi"}, key="k1", tenant="acme")
    for who, scope in (
        ({"key": "k1", "tenant": "other"}, "key"),
        ({"key": "k2", "tenant": "acme"}, "tenant"),
    ):
        with pytest.raises(RateLimitExceeded) as refused:
            await tether.run("f", {"message": "hi"}, **who)
        assert refused.value.scope == scope
    assert (await tether.run("f", {"message": "hi"}, key="k2", tenant="other")).output == "ok"


async def test_a_refused_call_takes_nothing_from_the_other_scopes() -> None:
    tether, _ = make(config({"user": {"rpm": 3}, "tenant": {"rpm": 1}}))
    await tether.run("f", {"message": "hi"}, user="ana", tenant="acme")
    for _ in range(5):  # acme is over its limit: these must not drain ana's own bucket
        with pytest.raises(RateLimitExceeded) as refused:
            await tether.run("f", {"message": "hi"}, user="ana", tenant="acme")
        assert refused.value.scope == "tenant"
    await tether.run("f", {"message": "hi"}, user="ana", tenant="other")
    await tether.run("f", {"message": "hi"}, user="ana", tenant="third")
    with pytest.raises(RateLimitExceeded) as refused:
        await tether.run("f", {"message": "hi"}, user="ana", tenant="fourth")
    assert refused.value.scope == "user"


async def test_tpm_takes_the_estimate_and_gives_back_what_was_not_used() -> None:
    # each call is estimated at its prompt + max_tokens 100: two fit in tpm 250 at once
    tether, up = make(config({"feature": {"tpm": 250}}, max_tokens=100), delay_s=0.05)
    admitted, refused = await outcomes([tether.run("f", {"message": "hi"}) for _ in range(5)])
    assert len(admitted) == 2 and len(refused) == 3
    assert all(e.scope == "feature" for e in refused)
    assert "tokens per minute" in str(refused[0])
    # the scripted answers used a few tokens, not 100 each: what they did not use came back,
    # so one after the other, calls keep passing
    tether, up = make(config({"feature": {"tpm": 250}}, max_tokens=100))
    for _ in range(6):
        assert (await tether.run("f", {"message": "hi"})).output == "ok"
    assert len(up.calls) == 6


async def test_streams_and_embeddings_are_limited_too() -> None:
    tether, _ = make(config({"feature": {"rpm": 1}}))
    assert [c.text async for c in tether.stream("f", {"message": "hi"}) if c.text] == ["ok"]
    with pytest.raises(RateLimitExceeded):
        async for _ in tether.stream("f", {"message": "hi"}):
            pass
    tether, up = make(config({"feature": {"rpm": 1}}, kind="embedding"))
    assert len((await tether.embed("f", "a text")).vectors) == 1
    with pytest.raises(RateLimitExceeded):
        await tether.embed("f", "a text")
    assert len(up.embed_calls) == 1
