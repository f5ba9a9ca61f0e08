"""Budgets through the SDK (tether.budgets): a worst case reserved before the call, settled to
the actual cost after it, on the in-process state backend and on a real Redis.

The scripted provider is priced in the config ($0.001 per input token, $0.002 per output
token) so calls have real costs; a fake clock moves budget periods along."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from tests.state_backends import Backend
from tether import Tether
from tether.budgets.stage import CHARS_PER_TOKEN, BudgetStage
from tether.budgets.status import status
from tether.budgets.tokens import estimate_request
from tether.config.models import TetherConfig
from tether.errors import BudgetExceeded, RateLimitExceeded
from tether.pipeline.result import Result
from tether.pipeline.services import Services
from tether.providers.scripted import ScriptedProvider
from tether.state import MemoryState, State
from tether.telemetry.trace import Trace

PRICES = {"m": {"input_per_mtok": 1_000, "output_per_mtok": 2_000}}
ANSWER = "one two three four five"  # 5 output tokens (the scripted provider counts words)
CALL_COST = 2 * 0.001 + 5 * 0.002  # "hello world" in, ANSWER out


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(budgets: dict[str, Any], **feature: Any) -> TetherConfig:
    replies = feature.pop("replies", [{"text": ANSWER}])
    spec: dict[str, Any] = {
        "model": "up:m",
        "prompt": {"template": "{{ message }}"},
        "max_tokens": 10,
        "retry": {"max_attempts": 1},
        "budgets": budgets,
        "on_failure": {"respond": "Budget spent, try later."},
    } | feature
    return TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted", "replies": replies, "prices": PRICES}},
            "features": {"f": spec},
        }
    )


def build(
    cfg: TetherConfig, clock: Clock | None = None, backend: State | None = None
) -> tuple[Tether, Services]:
    """A Tether whose budget stage (and in-process state) run on ``clock``."""
    tether = Tether(cfg, state=backend or MemoryState(clock=clock or time.time))
    stages = [s for s in tether.pipeline.feature("f").stages if isinstance(s, BudgetStage)]
    assert len(stages) == 1
    if clock is not None:
        stages[0].clock = clock
    return tether, tether.services


def events(trace: Trace | None, kind: str) -> list[dict[str, Any]]:
    assert trace is not None
    return [e.data for e in trace.events if e.kind == kind]


HELLO = {"message": "hello world"}


async def run(tether: Tether, **kw: Any) -> Result:
    return await tether.run("f", HELLO, **kw)


async def spent(
    services: Services, clock: Clock | None = None, **who: Any
) -> dict[str, tuple[float, float]]:
    rows = await status(services, "f", now=None if clock is None else clock.now, **who)
    return {f"{r.scope}.{r.dimension}": (r.spent, r.reserved) for r in rows}


def worst_case(stage_tether: Tether) -> float:
    """One call's maximum reservation: its estimated prompt and max_tokens, priced."""
    request = stage_tether.pipeline.feature("f").build_request({"message": "hello world"})
    return (estimate_request(request) * 0.001) + 10 * 0.002


async def concurrent_calls(tethers: list[Tether], n: int, user: str = "u1") -> list[Result]:
    rng = random.Random(7)

    async def one(i: int) -> Result:
        await asyncio.sleep(rng.random() * 0.2)  # arrivals spread, settles interleave
        return await run(tethers[i % len(tethers)], user=user)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


REPLIES = [{"text": ANSWER, "delay_s": d} for d in (0.0, 0.005, 0.01, 0.02, 0.04)]


def check_spend(results: list[Result], limit: float, worst: float, settled: float) -> None:
    served = [r for r in results if not r.degraded]
    refused = [r for r in results if r.degraded]
    assert served and refused
    assert {r.reason for r in refused} == {"budget_exceeded"}
    total = sum(r.cost_usd for r in served)
    assert total == pytest.approx(len(served) * CALL_COST)
    assert settled == pytest.approx(total)
    assert settled <= limit + worst  # never more than one call's maximum reservation over


async def test_200_concurrent_calls_hold_one_user_budget_then_the_period_rolls() -> None:
    clock = Clock()
    limit = 0.5
    cfg = config({"user": {"cost_usd": limit, "per": "minute"}}, replies=REPLIES)
    tether, services = build(cfg, clock)
    async with tether:
        results = await concurrent_calls([tether], 200)
        levels = await spent(services, clock, user="u1")
        settled, reserved = levels["user.cost_usd"]
        check_spend(results, limit, worst_case(tether), settled)
        assert reserved == 0.0
        assert settled > limit / 2  # the budget was used, not refused from the start
        refused = next(r for r in results if r.degraded)
        [exceeded] = events(refused.trace, "budget_exceeded")
        assert exceeded["scope"] == "user" and exceeded["mode"] == "hard"
        assert exceeded["resets_at"] == 1_800_000_000.0 // 60 * 60 + 60

        # what the burst left (reservations it saw may have settled lower): one call at a
        # time until the budget refuses, then it keeps refusing
        for _ in range(int(limit / CALL_COST) + 1):
            if (await run(tether, user="u1")).degraded:
                break
        else:
            pytest.fail("the user budget never ran out")
        assert (await spent(services, clock, user="u1"))["user.cost_usd"][0] <= limit
        assert (await run(tether, user="u1")).degraded
        assert not (await run(tether, user="u2")).degraded  # every user has a budget of their own
        clock.now += 60  # the next minute: a new period
        assert not (await run(tether, user="u1")).degraded


async def test_two_replicas_on_redis_share_one_budget(redis_url: str, state_prefix: str) -> None:
    from tether.state.redis import RedisState

    limit = 0.4
    cfg = config({"user": {"cost_usd": limit, "per": "day"}}, replies=REPLIES)
    backends = [RedisState(redis_url, prefix=state_prefix) for _ in range(2)]
    built = [build(cfg, backend=b) for b in backends]
    tethers = [t for t, _ in built]
    try:
        results = await concurrent_calls(tethers, 200)
        for _, services in built:  # each replica reads the same counter
            settled, reserved = (await spent(services, user="u1"))["user.cost_usd"]
            check_spend(results, limit, worst_case(tethers[0]), settled)
            assert reserved == pytest.approx(0.0, abs=1e-9)
        assert {r.degraded for r in results[:0]} == set()
        served = {id(t): 0 for t in tethers}
        for i, r in enumerate(results):
            served[id(tethers[i % 2])] += not r.degraded
        assert all(served.values())  # both replicas served some
    finally:
        for t in tethers:
            await t.aclose()
        for b in backends:
            await b.aclose()


async def test_soft_budget_lets_calls_through_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = config({"user": {"cost_usd": 0.05, "per": "day", "mode": "soft"}})
    clock = Clock()
    tether, services = build(cfg, clock)
    async with tether:
        with caplog.at_level("WARNING", logger="tether.budgets"):
            results = [await run(tether, user="u1") for _ in range(6)]
    assert not any(r.degraded for r in results)
    soft = [events(r.trace, "budget_soft_exceeded") for r in results]
    assert soft[:2] == [[], []] and all(soft[2:])  # each call that goes over says so
    assert soft[-1][0]["scope"] == "user" and soft[-1][0]["limit"] == 0.05
    assert caplog.text.count("soft budget exceeded") == 1  # the log, once per period
    levels = await spent(services, clock, user="u1")
    assert levels["user.cost_usd"][0] == pytest.approx(6 * CALL_COST)


async def test_degrade_answers_from_the_failure_path_reject_raises() -> None:
    budget = {"user": {"cost_usd": 0.04, "per": "hour"}}
    clock = Clock()
    tether, _ = build(config(budget), clock)
    async with tether:
        while not (result := await run(tether, user="u1")).degraded:
            pass
        assert result.reason == "budget_exceeded"
        assert result.output == "Budget spent, try later."
        # the degraded answer says when the budget's period resets
        assert result.retry_after_s == pytest.approx(clock.now // 3600 * 3600 + 3600 - clock.now)
        assert result.to_dict()["retry_after_s"] == round(result.retry_after_s, 3)

    tether, _ = build(config(budget | {"on_exceeded": "reject"}), clock)
    async with tether:
        await run(tether, user="u1")
        with pytest.raises(BudgetExceeded) as raised:
            for _ in range(5):
                await run(tether, user="u1")
    error = raised.value
    assert error.to_caller and error.scope == "user"
    hour_end = clock.now // 3600 * 3600 + 3600
    assert error.resets_at == hour_end
    assert error.retry_after_s == pytest.approx(hour_end - clock.now)


async def test_request_budget_caps_max_tokens_and_refuses_a_prompt_too_long() -> None:
    tether, _ = build(config({"request": {"max_tokens": 15}}))
    async with tether:
        result = await run(tether)
        up = tether.provider("up")
        assert isinstance(up, ScriptedProvider)
        [capped] = events(result.trace, "max_tokens_capped")
        assert capped["by"] == "budget" and capped["asked"] == 10
        assert up.calls[-1].max_tokens == capped["limit"] < 10
        long = await tether.run("f", {"message": "word " * 40})
        assert long.degraded and long.reason == "budget_exceeded"
        assert events(long.trace, "budget_exceeded")[0]["scope"] == "request"
        assert len(up.calls) == 1  # never sent

    tether, _ = build(config({"request": {"max_cost_usd": 0.02}}))
    async with tether:
        result = await run(tether)
        up = tether.provider("up")
        assert isinstance(up, ScriptedProvider)
        prompt = estimate_request(tether.pipeline.feature("f").build_request(HELLO))
        assert up.calls[-1].max_tokens == int((0.02 - prompt * 0.001) / 0.002) < 10


async def test_a_scope_without_identity_does_not_apply_and_says_so() -> None:
    cfg = config({"tenant": {"tokens": 40, "per": "day"}, "feature": {"tokens": 10_000}})
    tether, services = build(cfg)
    async with tether:
        result = await run(tether, user="u1")
        assert events(result.trace, "budget_scope_skipped") == [{"scope": "tenant"}]
        assert events(result.trace, "budget_reserved")[0]["scopes"] == ["feature"]
        for _ in range(3):
            await run(tether, tenant="acme")
        # 7 tokens a call, 23 reserved: the 4th would take 21 + 23 past 40
        assert (await run(tether, tenant="acme")).degraded
        levels = await spent(services, tenant="acme")
        assert levels["tenant.tokens"][0] == 3 * 7
        assert levels["feature.tokens"][0] == 4 * 7


async def test_a_stream_the_caller_leaves_is_charged_for_what_was_generated() -> None:
    words = " ".join(f"w{i}" for i in range(40))
    replies = [{"text": words, "chunk_delay_s": 0.01}]
    cfg = config({"user": {"cost_usd": 1.0}}, replies=replies, max_tokens=100)
    tether, services = build(cfg)
    async with tether:
        chunks = tether.stream("f", {"message": "hello world"}, user="u1")
        seen = ""
        async for chunk in chunks:
            seen += chunk.text
            if len(seen) >= 9:
                break
        await chunks.aclose()
        trace = tether.traces.traces[-1]
    [attempt] = trace.attempts
    assert 9 <= attempt.chars_out < len(words)
    [settled] = events(trace, "budget_settled")
    prompt = events(trace, "budget_reserved")[0]["tokens"] - 100
    out = -(-attempt.chars_out // CHARS_PER_TOKEN)
    assert settled["tokens"] == prompt + out
    assert settled["cost_usd"] == pytest.approx(prompt * 0.001 + out * 0.002)
    # the upstream's usage never came: the trace carries the estimate the budget charged
    assert (attempt.usage.input_tokens, attempt.usage.output_tokens) == (prompt, out)
    assert trace.cost_usd == pytest.approx(settled["cost_usd"])
    assert events(trace, "usage_estimated") == [
        {"model": attempt.model, "input_tokens": prompt, "output_tokens": out}
    ]
    charged, reserved = (await spent(services, user="u1"))["user.cost_usd"]
    assert charged == pytest.approx(settled["cost_usd"]) and reserved == 0.0
    assert charged < prompt * 0.001 + 40 * 0.002  # less than the whole answer


async def test_unknown_price_blocks_a_cost_budget_or_counts_zero() -> None:
    feature = {
        "model": "oa:mystery-9",
        "retry": {"max_attempts": 1},
        "timeout_s": 2,
        "on_failure": {"respond": "later"},
    }

    def cfg(policy: str) -> TetherConfig:
        budgets = {"user": {"cost_usd": 1.0}, "unknown_price": policy}
        return TetherConfig.model_validate(
            {
                "providers": {"oa": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
                "features": {"f": feature | {"budgets": budgets}},
            }
        )

    tether, _ = build(cfg("block"))
    async with tether:
        result = await tether.run("f", {"message": "hi"}, user="u1")
    assert result.reason == "budget_exceeded" and not result.trace.attempts  # type: ignore[union-attr]
    assert events(result.trace, "budget_exceeded")[0]["why"] == "unknown_price"

    tether, services = build(cfg("allow"))
    async with tether:
        result = await tether.run("f", {"message": "hi"}, user="u1")
    assert result.reason != "budget_exceeded" and result.trace and result.trace.attempts
    assert (await spent(services, user="u1"))["user.cost_usd"] == (0.0, 0.0)


async def test_an_unpriced_model_marks_the_trace_cost_unknown() -> None:
    from tether.testing.upstream import FaultyUpstream

    with FaultyUpstream(text="Hello there!") as up:
        cfg = TetherConfig.model_validate(
            {
                "providers": {"oa": {"kind": "openai", "base_url": up.base_url}},
                "features": {
                    "f": {
                        "model": "oa:house-model",
                        "fallbacks": ["oa:gpt-4o-mini"],
                        "on_failure": {"respond": "later"},
                    },
                },
            }
        )
        async with Tether(cfg) as tether:
            result = await tether.run("f", {"message": "hi"})
    trace = result.trace
    assert trace is not None and not result.degraded
    assert trace.cost_unknown and trace.attempts[0].cost_unknown
    assert events(trace, "cost_unknown") == [{"model": "oa:house-model"}]
    assert trace.to_dict()["cost_unknown"] is True


async def test_embedding_calls_reserve_their_prompt_and_settle_their_usage() -> None:
    cfg = TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted", "prices": PRICES}},
            "features": {
                "e": {
                    "kind": "embedding",
                    "model": "up:m",
                    "budgets": {"user": {"tokens": 12, "per": "day"}, "on_exceeded": "reject"},
                    "on_failure": {"raise": True},
                }
            },
        }
    )
    async with Tether(cfg) as tether:
        result = await tether.embed("e", ["alpha beta", "gamma"], user="u1")
        assert len(result.vectors) == 2 and result.cost_usd == pytest.approx(3 * 0.001)
        trace = tether.traces.traces[-1]
        [reserved] = events(trace, "budget_reserved")
        assert 3 <= reserved["tokens"] < 12  # the prompt alone: an embedding has no output
        assert events(trace, "budget_settled") == [{"tokens": 3, "cost_usd": 0.003}]
        with pytest.raises(BudgetExceeded) as raised:
            for _ in range(4):
                await tether.embed("e", ["alpha beta", "gamma"], user="u1")
        assert raised.value.scope == "user"
        rows = await status(tether.services, "e", user="u1")
        assert [(r.dimension, r.spent, r.reserved) for r in rows] == [("tokens", 9.0, 0.0)]


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
async def test_state_unreachable_takes_the_policy(policy: str) -> None:
    from tether.state.redis import RedisState
    from tether.testing.upstream import refused_base_url

    port = refused_base_url().removesuffix("/v1").rsplit(":", 1)[1]  # nothing listens there
    cfg = config({"user": {"cost_usd": 1.0}})
    cfg = cfg.model_copy(update={"state": cfg.state.model_copy(update={"on_unavailable": policy})})
    backend = RedisState(f"redis://127.0.0.1:{port}/0", prefix="b-test:", timeout_s=0.2)
    tether, _ = build(cfg, backend=backend)
    async with tether:
        result = await run(tether, user="u1")
    trace = result.trace
    if policy == "fail_closed":
        assert result.degraded and result.reason == "state_unavailable"
        assert trace is not None and not trace.attempts
    else:
        assert not result.degraded and result.output == ANSWER
        assert {"what": "budget", "policy": "fail_open"} in events(trace, "state_unavailable")
        assert events(trace, "budget_settled")  # settled: the spend is recorded when it can be


async def test_a_call_refused_by_a_rate_limit_leaves_no_budget_reserved(backend: Backend) -> None:
    """A call the rate limit refuses is refused for that reason, before the model, even when
    the budget refuses it too (on Redis the take is deferred: it runs alongside the budget's
    reservation), and what the budget reserved for it is released."""
    cost = {"cost_usd": 1.0, "per": "day"}
    cfg = config({"user": cost}, rate_limits={"user": {"rpm": 1}})
    tether, services = build(cfg, backend=backend.state)
    try:
        await run(tether, user="u1")
        after_one = await spent(services, user="u1")
        with pytest.raises(RateLimitExceeded):
            await run(tether, user="u1")
        assert await spent(services, user="u1") == after_one  # nothing left reserved
        assert after_one["user.cost_usd"][1] == 0.0
    finally:
        await tether.aclose()

    # a budget too small for any call, behind a spent rate limit: the rate limit speaks
    tiny = config({"user": {"cost_usd": 1e-9, "per": "day"}}, rate_limits={"user": {"rpm": 1}})
    tether, services = build(tiny, backend=backend.state)
    try:
        first = await run(tether, user="u2")
        assert first.degraded  # the budget's failure path: the rate limit let it through
        with pytest.raises(RateLimitExceeded):
            await run(tether, user="u2")
    finally:
        await tether.aclose()
