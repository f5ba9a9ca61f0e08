"""``rate_limits.upstream`` paces the calls tether makes to an upstream: a real HTTP server on
loopback that 429s over its own rpm never answers 429 to a paced burst (and does to an unpaced
one), and a wait that would pass the attempt's time falls back to the chain's next model."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether import Tether
from tether.config.models import TetherConfig
from tether.providers.scripted import Reply, ScriptedProvider
from tether.testing.upstream import FaultyUpstream


def events(result: Any, kind: str) -> list[dict[str, Any]]:
    assert result.trace is not None
    return [e.data for e in result.trace.events if e.kind == kind]


def http_config(base_url: str, upstream: dict[str, Any] | None, **feature: Any) -> TetherConfig:
    spec: dict[str, Any] = {
        "prompt": {"system": "You help.", "template": "{{ message }}"},
        "model": "oa:gpt-test",
        "retry": {"max_attempts": 1},
        "on_failure": {"respond": "Sorry, not now."},
        "rate_limits": {"upstream": upstream} if upstream else {},
        **feature,
    }
    return TetherConfig.model_validate(
        {
            "providers": {
                "oa": {"kind": "openai", "base_url": base_url, "api_key": "sk-test"},
                "spare": {"kind": "scripted"},
            },
            "features": {"f": spec},
        }
    )


@pytest.mark.parametrize("paced", [True, False])
async def test_upstream_pacing_keeps_a_burst_under_the_upstreams_rpm(paced: bool) -> None:
    """The upstream 429s over 300 requests a minute (a burst of 300, then 5 a second); 320
    concurrent calls: paced by ``rate_limits.upstream: {rpm: 294}`` (a little under: the
    server's clock starts before tether's), none gets a 429 (the last ones wait ~5 s for the
    bucket); unpaced, the upstream refuses the excess."""
    with FaultyUpstream(text="fine", rpm=300, retry_after=None) as up:
        upstream = {"rpm": 294} if paced else None
        tether = Tether(http_config(up.base_url, upstream, timeout_s=10, total_timeout_s=20))
        try:
            results = await asyncio.gather(
                *(tether.run("f", {"message": f"q{i}"}) for i in range(320))
            )
        finally:
            await tether.aclose()
        served = sum(1 for r in results if r.output == "fine")
        if not paced:
            assert up.rate_limited > 0  # the test's upstream does refuse a burst
            return
        assert up.rate_limited == 0 and served == 320
        paced_events = [e for r in results for e in events(r, "upstream_paced")]
        assert len(paced_events) >= 10
        assert all(e["model"] == "oa:gpt-test" and e["waited_s"] > 0 for e in paced_events)


async def test_a_wait_past_the_deadline_falls_back_instead() -> None:
    """A wait longer than the attempt may take is not started: the chain's next model
    answers (its bucket is its own)."""
    with FaultyUpstream(text="fine") as up:
        cfg = http_config(up.base_url, {"rpm": 1}, fallbacks=["spare:small"], timeout_s=2)
        spare = ScriptedProvider([Reply("spare answer")], name="spare")
        tether = Tether(cfg, providers={"spare": spare})
        try:
            first = await tether.run("f", {"message": "hi"})
            second = await tether.run("f", {"message": "hi"})
        finally:
            await tether.aclose()
    assert first.output == "fine"
    assert second.output == "spare answer" and up.requests == 1
    assert second.trace is not None
    failed = [a for a in second.trace.attempts if a.status == "error"]
    assert [a.error_class for a in failed] == ["RateLimited"]
    assert "rate_limits.upstream" in (failed[0].error or "")
