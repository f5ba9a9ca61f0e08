"""``ensemble`` guards: each mode, a cascade that asks its judge only inside the band (counted
on the judge's provider), errored members, nesting, the sync path, config errors, and
``decided_by`` on the trace of a call through Tether."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from tether import Tether
from tether.config.guards import GuardsConfig, GuardSpec
from tether.config.models import TetherConfig
from tether.errors import ConfigError
from tether.guards import GuardContext, GuardRunner, Verdict
from tether.guards.registry import GuardServices
from tether.providers.scripted import Reply, ScriptedProvider
from tether.telemetry.trace import Trace

SCORED = "tests.unit.test_guards_ensemble:scored"
VIOLATION = json.dumps({"violation": True, "score": 0.9, "reason": "an attack"})
CLEAN = json.dumps({"violation": False, "score": 0.1, "reason": "harmless"})


def scored(text: str, ctx: GuardContext, key: str = "a", limit: float = 0.5) -> Verdict:
    """A test member: its score is written in the text (``a=0.7 b=0.2``)."""
    found = re.search(rf"\b{key}=([0-9.]+)", text)
    score = float(found.group(1)) if found else 0.0
    if score >= limit:
        return Verdict.fail(f"{key} scored {score}", score=score)
    return Verdict.ok(score=score)


def member(key: str, **kw: Any) -> dict[str, Any]:
    return {SCORED: {"key": key, **kw}}


def services(judge: ScriptedProvider) -> GuardServices:
    config = TetherConfig.model_validate({"providers": {"judge": {"kind": "scripted"}}})
    return Tether(config, providers={"judge": judge}).guard_services


def ensemble(judge: ScriptedProvider | None = None, **body: Any) -> GuardRunner:
    config = GuardsConfig.model_validate({"input": [{"ensemble": body}]})
    return GuardRunner(config, services=services(judge or ScriptedProvider()))


def judge_member(**kw: Any) -> dict[str, Any]:
    return {"llm_judge": {"model": "judge:small", **kw}}


def members(trace: Trace) -> list[str]:
    return [e.data["member"] for e in trace.events if e.kind == "guard_member"]


@pytest.mark.parametrize(
    ("text", "passed", "decided_by", "asked"),
    [
        ("a=0.1 b=0.2", True, "scored[0]+scored[1]", 2),
        ("a=0.9 b=0.9", False, "scored[0]", 1),  # the first failure decides, b is not asked
        ("a=0.1 b=0.7", False, "scored[1]", 2),
    ],
)
def test_any_fails_when_a_member_fails(
    text: str, passed: bool, decided_by: str, asked: int
) -> None:
    guards = ensemble(mode="any", guards=[member("a"), member("b")])
    trace = Trace(feature="f")
    verdict = guards.check_input(text, GuardContext(trace=trace)).results[0].verdict
    assert (verdict.passed, verdict.decided_by) == (passed, decided_by)
    assert len(members(trace)) == asked


@pytest.mark.parametrize(
    ("text", "passed", "decided_by", "score"),
    [
        ("a=0.9 b=0.7", False, "scored[0]+scored[1]", 0.7),
        ("a=0.9 b=0.1", True, "scored[1]", 0.1),
        ("a=0.2 b=0.9", True, "scored[0]", 0.2),
    ],
)
def test_all_fails_only_when_every_member_fails(
    text: str, passed: bool, decided_by: str, score: float
) -> None:
    guards = ensemble(mode="all", guards=[member("a"), member("b")])
    verdict = guards.check_input(text, GuardContext()).results[0].verdict
    assert (verdict.passed, verdict.decided_by) == (passed, decided_by)
    assert verdict.score == pytest.approx(score)


def test_weighted_fails_on_the_weighted_mean_score_at_the_threshold() -> None:
    body = {"mode": "weighted", "weights": [3, 1], "threshold": 0.6}
    guards = ensemble(**body, guards=[member("a"), member("b")])
    high = guards.check_input("a=0.7 b=0.3", GuardContext()).results[0].verdict  # 0.6
    assert not high.passed and high.score == pytest.approx(0.6)
    assert high.decided_by == "scored[0]+scored[1]"
    low = guards.check_input("a=0.3 b=0.9", GuardContext()).results[0].verdict  # 0.45
    assert low.passed and low.score == pytest.approx(0.45)
    # b alone fails its own check, but the ensemble's verdict is the weighted one
    assert "weighted score 0.45 < 0.6" in low.reason


@pytest.mark.parametrize(
    ("text", "judge_calls", "passed", "decided_by"),
    [
        ("a=0.05", 0, True, "scored"),  # below the band: the fast member's pass stands
        ("a=0.95", 0, False, "scored"),  # above it: its block stands
        ("a=0.3", 1, False, "llm_judge"),  # unsure: the judge decides (here: an attack)
        ("a=0.7", 1, True, "llm_judge"),  # unsure: the judge decides (here: harmless)
    ],
)
async def test_cascade_asks_the_judge_only_inside_the_band(
    text: str, judge_calls: int, passed: bool, decided_by: str
) -> None:
    judge = ScriptedProvider(lambda request: VIOLATION if "a=0.3" in str(request) else CLEAN)
    body = {"mode": "cascade", "band": [0.2, 0.8], "guards": [member("a"), judge_member()]}
    guards = ensemble(judge, **body)
    outcome = await guards.acheck_input(text, GuardContext())
    assert len(judge.calls) == judge_calls
    verdict = outcome.results[0].verdict
    assert (verdict.passed, verdict.decided_by) == (passed, decided_by)
    assert outcome.decision == ("pass" if passed else "block")


async def test_a_cascade_member_that_errors_hands_over_and_the_last_ones_on_error_decides() -> None:
    judge = ScriptedProvider([Reply(CLEAN, delay_s=2.0)])
    body = {"mode": "cascade", "guards": [member("a"), judge_member(latency_budget_ms=30)]}
    open_ = await ensemble(judge, **body).acheck_input("a=0.5", GuardContext())
    assert open_.decision == "block"  # the judge timed out; its on_error is block (the default)
    assert "timed out" in open_.reason
    body["guards"] = [member("a"), judge_member(latency_budget_ms=30, on_error="pass")]
    closed = await ensemble(judge, **body).acheck_input("a=0.5", GuardContext())
    assert closed.decision == "pass"
    assert closed.results[0].verdict.decided_by == "llm_judge"
    # a first member that raises has no score: the next one is asked
    failing = {"mode": "cascade", "guards": [member("a", limit="x"), member("b")]}
    verdict = ensemble(**failing).check_input("a=0.1 b=0.1", GuardContext()).results[0].verdict
    assert verdict.passed and verdict.decided_by == "scored[1]"


async def test_nested_ensembles_name_the_inner_member_that_decided() -> None:
    judge = ScriptedProvider([Reply(VIOLATION)])
    inner = {"ensemble": {"mode": "cascade", "guards": [member("b"), judge_member()]}}
    guards = ensemble(judge, mode="any", guards=[member("a"), inner])
    outcome = await guards.acheck_input("a=0.1 b=0.5", GuardContext())
    assert outcome.decision == "block"
    assert outcome.results[0].verdict.decided_by == "ensemble/llm_judge"


def test_the_sync_path_refuses_an_async_member_without_leaving_it_unawaited() -> None:
    judge = ScriptedProvider([Reply(CLEAN)])
    body = {"mode": "cascade", "guards": [member("a"), judge_member()]}
    outcome = ensemble(judge, **body).check_input("a=0.5", GuardContext())
    assert outcome.decision == "block"  # fails closed (on_error: block)
    assert outcome.results[0].error is not None and "async path" in outcome.results[0].error
    assert judge.calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"guards": [{"pii": {"action": "block"}}]}, "set action on the ensemble itself"),
        ({"mode": "any", "weights": [1], "guards": ["pii"]}, "only apply with mode: weighted"),
        ({"mode": "weighted", "weights": [1], "guards": ["pii", "secrets"]}, "one weight"),
        ({"mode": "cascade", "band": [0.8, 0.2], "guards": ["pii"]}, "low <= high"),
        ({"guards": []}, "at least 1"),
        ({"guards": [{"llm_judge": {"modle": "a:b"}}]}, "modle"),
    ],
)
def test_ensemble_config_errors_say_what_to_fix(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GuardSpec.model_validate({"ensemble": body})


def test_a_threshold_on_an_ensemble_that_does_not_weigh_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="set the threshold on a member"):
        ensemble(mode="cascade", threshold=0.7, guards=[member("a"), member("b")])


def test_an_output_ensemble_with_a_judge_checks_the_whole_answer_once() -> None:
    body = {"guards": [{"pii": {}}, judge_member()]}
    guards = GuardRunner(
        GuardsConfig.model_validate({"output": [{"ensemble": body}]}),
        services=services(ScriptedProvider()),
    )
    assert guards.output[0].final_only


async def test_decided_by_is_on_the_calls_trace_through_tether() -> None:
    up = ScriptedProvider([Reply("an answer")], name="up")
    judge = ScriptedProvider([Reply(VIOLATION)], name="judge")
    body = {"mode": "cascade", "guards": [member("a"), judge_member()]}
    feature = {"model": "up:big", "guards": {"input": [{"ensemble": body}]},
               "on_failure": {"respond": "Sorry."}}  # fmt: skip
    providers = {"up": {"kind": "scripted"}, "judge": {"kind": "scripted"}}
    config = TetherConfig.model_validate({"providers": providers, "features": {"f": feature}})
    tether = Tether(config, providers={"up": up, "judge": judge})
    blocked = await tether.run("f", {"message": "a=0.5 please"})
    assert blocked.degraded and up.calls == []
    assert blocked.trace is not None
    event = next(e.data for e in blocked.trace.events if e.kind == "guard")
    assert event["decided_by"] == "llm_judge" and event["guard"] == "ensemble"
    answered = await tether.run("f", {"message": "a=0.1 please"})
    assert answered.output == "an answer" and len(judge.calls) == 1
    assert answered.trace is not None
    event = next(e.data for e in answered.trace.events if e.kind == "guard")
    assert event["decided_by"] == "scored" and event["passed"]
