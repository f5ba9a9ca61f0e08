"""LLM-as-judge scorers (``llm-rubric``, ``model-graded-closedqa``, ``factuality``) with a
scripted judge: verdicts are read robustly (an unreadable one is a failed score, never an
exception), pass rules follow promptfoo's, verdicts are cached on disk by judge model, prompt and
parameters, and judge calls are priced apart from the feature's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tether import Tether
from tether.config import parse_config
from tether.errors import ConfigError, DatasetError, RateLimited, UpstreamError
from tether.evals.judge import (
    close_judge,
    closedqa_verdict,
    factuality_verdict,
    first_json_object,
    judge_for,
    judge_model,
    rubric_verdict,
)
from tether.evals.scorers.model_graded import FACTORIES
from tether.evals.types import Assertion, Case, Output, Score, ScoringContext
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.types import ModelRequest, Usage

CONFIG = """
providers:
  app: {kind: scripted}
  judge:
    kind: scripted
    prices: {grader: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
  small: {kind: local}
features:
  f:
    prompt: {template: "Question: {{ q }}"}
    model: app:m
    on_failure: {respond: sorry}
"""

CASE = Case(index=0, id="c0", vars={"q": "What is the capital of France?"})
ANSWER = Output(text="Paris is the capital of France.")


def setup(
    script: Any, *, cache_dir: Path | None = None, **ctx: Any
) -> tuple[ScriptedProvider, ScoringContext]:
    judge = ScriptedProvider(script, name="judge")
    tether = Tether(parse_config(CONFIG, "t.yaml", {}), providers={"judge": judge})
    context = ScoringContext(
        tether=tether, feature="f", judge_model="judge:grader", cache_dir=cache_dir, **ctx
    )
    return judge, context


async def grade(
    ctx: ScoringContext, type_: str, value: Any, output: Output = ANSWER, **kw: Any
) -> Score:
    scorer = FACTORIES[type_](Assertion(type_, value, **kw), ctx)
    return await scorer.score(CASE, output)


# ---------------------------------------------------------------------------- reading verdicts


@pytest.mark.parametrize(
    ("text", "passed", "score"),
    [
        ('{"reason": "greets", "pass": true, "score": 1.0}', True, 1.0),
        ('{"reason": "no", "pass": false, "score": 0}', False, 0.0),
        ('Sure! Here is my verdict:\n```json\n{"pass": true, "score": 0.7}\n```\nBye', True, 0.7),
        ('{"reason": "r", "pass": "yes"}', True, 1.0),
        ('{"reason": "a raw\nnewline", "pass": true, "score": 0.9}', True, 0.9),
        ('{"reason": "r", "score": 0.2}', False, 0.2),
        ('{"pass": true, "score": 7}', True, 1.0),  # clamped to 0..1
        ("Yes, the output is polite.", True, 1.0),
        ("FAIL", False, 0.0),
    ],
)
def test_rubric_verdicts_are_read_from_json_prose_or_a_plain_word(
    text: str, passed: bool, score: float
) -> None:
    verdict = rubric_verdict(text)
    assert (verdict.passed, verdict.score) == (passed, score)


@pytest.mark.parametrize(
    "text", ['{"reason": "ok", "pass": tru', "I think it is fine overall", "", '{"reason": "x"}']
)
def test_an_unreadable_verdict_is_a_failed_score_naming_the_answer(text: str) -> None:
    verdict = rubric_verdict(text)
    assert not verdict.passed and verdict.score == 0.0
    assert verdict.reason.startswith("the judge's answer could not be read: ")
    assert text.strip()[:10] in verdict.reason


def test_the_first_json_object_is_found_past_braces_that_are_not_json() -> None:
    assert first_json_object('set {a, b} then {"pass": false} and {"pass": true}') == {
        "pass": False
    }
    assert first_json_object("no object [1, 2]") is None


def test_closedqa_and_factuality_answers_map_to_pass_and_fail() -> None:
    assert closedqa_verdict("It names Paris.\nY").passed
    assert not closedqa_verdict("It names Lyon.\nN\nN").passed
    assert closedqa_verdict('{"reasoning": "fine", "answer": "Y"}').passed
    assert closedqa_verdict("Meets it: Y.").passed
    assert not closedqa_verdict("The city is NY").passed  # a word ending in Y is no verdict
    maybe = closedqa_verdict("Hard to say.")
    assert not maybe.passed and "could not be read" in maybe.reason
    assert factuality_verdict('{"category": "A", "reason": "subset"}').passed
    assert factuality_verdict("(B) it adds the population").passed
    disagree = factuality_verdict('{"category": "D", "reason": "says Lyon"}')
    assert not disagree.passed and disagree.reason.startswith("(D)")
    assert not factuality_verdict('{"category": "Z"}').passed


# ---------------------------------------------------------------------------- scorers


async def test_llm_rubric_passes_fails_and_applies_its_threshold() -> None:
    judge, ctx = setup(
        [
            '{"reason": "names Paris", "pass": true, "score": 1}',
            '{"reason": "rude", "pass": false, "score": 0.1}',
            '{"reason": "mostly", "pass": true, "score": 0.6}',
        ]
    )
    good = await grade(ctx, "llm-rubric", "Names the capital of {{ q | length > 0 }}")
    bad = await grade(ctx, "llm-rubric", "Is polite")
    low = await grade(ctx, "judge", "Is complete", threshold=0.8, metric="complete")
    assert (good.passed, good.value, good.reason) == (True, 1.0, "names Paris")
    assert (bad.passed, bad.value) == (False, 0.1)
    assert not low.passed and low.value == 0.6 and "below the threshold 0.8" in low.reason
    assert low.name == "complete" and good.name == "llm-rubric"
    prompt = judge.calls[0].messages[-1].content or ""
    assert "Paris is the capital of France." in prompt
    assert "Names the capital of True" in prompt  # the value rendered with the case's vars
    assert good.judge is not None and good.judge.calls == 1


async def test_closedqa_and_factuality_judge_against_the_task_and_reference() -> None:
    judge, ctx = setup(["Paris is named.\nY", '{"category": "D", "reason": "disagrees"}'])
    closed = await grade(ctx, "model-graded-closedqa", "names a city")
    fact = await grade(ctx, "factuality", "The capital of France is {{ 'Lyon' }}.")
    assert closed.passed and closed.value == 1.0
    assert not fact.passed and fact.value == 0.0 and "disagrees" in fact.reason
    closed_prompt, fact_prompt = (call.messages[-1].content or "" for call in judge.calls)
    assert "Question: What is the capital of France?" in closed_prompt  # the rendered task
    assert "names a city" in closed_prompt
    assert "The capital of France is Lyon." in fact_prompt


async def test_factuality_categories_are_scored_as_the_option_says() -> None:
    _, ctx = setup(['{"category": "A", "reason": "subset"}'])
    default = await grade(ctx, "factuality", "Paris")
    strict = await grade(ctx, "factuality", "Paris", options={"factuality": {"subset": 0}})
    assert default.passed and default.value == 1.0
    assert not strict.passed and strict.value == 0.0


async def test_a_rubric_prompt_replaces_the_default() -> None:
    judge, ctx = setup(['{"pass": true, "score": 1, "reason": "ok"}'])
    rubric_prompt = [
        {"role": "system", "content": "Grade strictly."},
        {"role": "user", "content": "Q={{ q }} A={{ output }} R={{ rubric }}"},
    ]
    score = await grade(ctx, "llm-rubric", "is short", options={"rubricPrompt": rubric_prompt})
    assert score.passed
    sent = [(m.role, m.content) for m in judge.calls[0].messages]
    assert sent == [
        ("system", "Grade strictly."),
        ("user", "Q=What is the capital of France? A=Paris is the capital of France. R=is short"),
    ]


async def test_a_rubric_prompt_can_be_a_file_relative_to_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "grader.yaml").write_text(
        "- {role: system, content: Be fair.}\n- {role: user, content: 'Judge {{ output }}'}\n"
    )
    (tmp_path / "grader.txt").write_text("Plain {{ rubric }}")
    judge, ctx = setup(['{"pass": false, "score": 0, "reason": "no"}'], base_dir=tmp_path)
    await grade(ctx, "llm-rubric", "x", options={"rubricPrompt": "file://grader.yaml"})
    await grade(ctx, "llm-rubric", "is short", options={"rubricPrompt": "file://grader.txt"})
    assert [(m.role, m.content) for m in judge.calls[0].messages] == [
        ("system", "Be fair."),
        ("user", "Judge Paris is the capital of France."),
    ]
    assert [(m.role, m.content) for m in judge.calls[1].messages] == [("user", "Plain is short")]
    with pytest.raises(DatasetError, match=r"missing\.txt could not be read"):
        await grade(ctx, "llm-rubric", "x", options={"rubricPrompt": "file://missing.txt"})


async def test_a_judge_that_fails_gives_a_failed_score_not_an_exception() -> None:
    down = UpstreamError("judge down", status_code=400, retryable=False)
    judge, ctx = setup([Fail(down)])
    score = await grade(ctx, "llm-rubric", "Is polite")
    assert not score.passed and "the judge could not be asked" in score.reason
    errored = await grade(ctx, "llm-rubric", "Is polite", Output(text="", error="boom"))
    assert not errored.passed and "boom" in errored.reason
    assert len(judge.calls) == 1  # a failed call is not judged


async def test_a_rate_limited_judge_is_retried_after_its_retry_after() -> None:
    judge, ctx = setup(
        [Fail(RateLimited("slow down", retry_after_s=0.01)), '{"pass": true, "score": 1}']
    )
    score = await grade(ctx, "llm-rubric", "Is polite")
    assert score.passed and len(judge.calls) == 2


async def test_a_judge_that_never_answers_times_out_into_a_failed_score() -> None:
    judge, ctx = setup([Reply("{}", delay_s=5)])
    judge_for(ctx).attempt_s, judge_for(ctx).backoff_s = 0.02, 0.0
    score = await grade(ctx, "llm-rubric", "Is polite")
    assert not score.passed and "no answer within" in score.reason
    assert len(judge.calls) == 4  # a timeout is transient: retried, then given up


async def test_an_unknown_judge_fails_when_the_scorer_is_built() -> None:
    _, ctx = setup(["{}"])
    with pytest.raises(DatasetError, match="nowhere"):
        FACTORIES["llm-rubric"](
            Assertion("llm-rubric", "x", options={"provider": "nowhere:m"}), ctx
        )
    with pytest.raises(DatasetError, match="needs a value"):
        FACTORIES["model-graded-closedqa"](Assertion("model-graded-closedqa", None), ctx)


async def test_factuality_without_a_value_compares_with_the_rows_expected() -> None:
    judge, ctx = setup(['{"category": "C", "reason": "same"}'])
    scorer = FACTORIES["factuality"](Assertion("factuality"), ctx)
    row = Case(index=1, id="c1", vars=CASE.vars, expected="Paris, on the {{ 'Seine' }}.")
    score = await scorer.score(row, ANSWER)
    assert score.passed and "Paris, on the Seine." in (judge.calls[0].messages[-1].content or "")
    missing = await scorer.score(CASE, ANSWER)
    assert not missing.passed and "expected" in missing.reason and len(judge.calls) == 1


async def test_the_default_judge_is_the_features_model() -> None:
    app = ScriptedProvider(['{"pass": true, "score": 1}'], name="app")
    tether = Tether(parse_config(CONFIG, "t.yaml", {}), providers={"app": app})
    score = await grade(ScoringContext(tether=tether, feature="f"), "llm-rubric", "Is polite")
    assert score.passed and len(app.calls) == 1


def test_the_judge_is_the_provider_option_else_the_configured_judge() -> None:
    ctx = ScoringContext(judge_model="judge:grader")
    assert judge_model(ctx) == "judge:grader"
    assert judge_model(ctx, "app:m") == "app:m"
    assert judge_model(ctx, {"id": "openai:chat:gpt-4o-mini"}) == "openai:gpt-4o-mini"
    with pytest.raises(ConfigError, match="needs a judge"):
        judge_model(ScoringContext())


def test_the_local_judge_answers_in_json_mode() -> None:
    _, ctx = setup(["{}"])
    judge = judge_for(ctx)
    schema = {"type": "object"}
    local = judge.request("small:smollm2", [], schema).response_format
    assert local is not None and local["json_schema"]["schema"] == schema
    assert judge.request("judge:grader", [], schema).response_format is None


# ---------------------------------------------------------------------------- cache and cost


async def test_a_rerun_hits_the_judge_cache_and_makes_no_call(tmp_path: Path) -> None:
    verdict = '{"reason": "ok", "pass": true, "score": 1}'
    first_judge, first = setup([verdict], cache_dir=tmp_path)
    made = await grade(first, "llm-rubric", "Is polite")
    await close_judge(first)
    again_judge, again = setup([verdict], cache_dir=tmp_path)  # a new run, same cache file
    cached = await grade(again, "llm-rubric", "Is polite")
    assert made.judge is not None and (made.judge.calls, made.judge.cached) == (1, 0)
    assert cached.judge is not None and (cached.judge.calls, cached.judge.cached) == (0, 1)
    assert cached.judge.cost_usd == 0.0
    assert (cached.passed, cached.reason) == (made.passed, made.reason)
    assert len(first_judge.calls) == 1 and len(again_judge.calls) == 0
    await close_judge(again)
    other_judge, other = setup([verdict], cache_dir=tmp_path, judge_temperature=0.7)
    changed = await grade(other, "llm-rubric", "Is polite")  # another parameter: a miss
    assert changed.judge is not None and changed.judge.calls == 1 and len(other_judge.calls) == 1
    await close_judge(other)
    assert (tmp_path / "judge-cache.sqlite").stat().st_mode & 0o777 == 0o600


async def test_the_same_judgement_asked_at_once_is_asked_once(tmp_path: Path) -> None:
    judge, ctx = setup([Reply('{"pass": true, "score": 1}', delay_s=0.05)], cache_dir=tmp_path)
    scores = await asyncio.gather(*(grade(ctx, "llm-rubric", "Is polite") for _ in range(3)))
    assert all(s.passed for s in scores) and len(judge.calls) == 1
    assert sorted(s.judge.cached for s in scores if s.judge) == [0, 1, 1]
    await close_judge(ctx)


async def test_a_waiter_asks_again_when_the_asker_is_cancelled(tmp_path: Path) -> None:
    verdict = '{"pass": true, "score": 1}'
    judge, ctx = setup([Reply(verdict, delay_s=5), Reply(verdict)], cache_dir=tmp_path)
    asker = asyncio.create_task(grade(ctx, "llm-rubric", "Is polite"))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(grade(ctx, "llm-rubric", "Is polite"))
    await asyncio.sleep(0.01)
    asker.cancel()
    score = await waiter
    assert asker.cancelled() and score.passed and len(judge.calls) == 2
    assert score.judge is not None and score.judge.calls == 1
    await close_judge(ctx)


async def test_an_unreadable_cache_file_does_not_stop_judging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "judge-cache.sqlite").write_bytes(b"not a database" * 100)
    judge, ctx = setup(['{"pass": true, "score": 1}'], cache_dir=tmp_path)
    score = await grade(ctx, "llm-rubric", "Is polite")
    assert score.passed and len(judge.calls) == 1
    assert "judge cache" in caplog.text and "unreadable" in caplog.text
    await close_judge(ctx)


async def test_judge_calls_are_priced_apart_from_the_feature() -> None:
    def priced(_: ModelRequest) -> Reply:
        return Reply('{"pass": true, "score": 1}', usage=Usage(1000, 500))

    _, ctx = setup(priced)
    score = await grade(ctx, "llm-rubric", "Is polite")
    assert score.judge is not None
    assert (score.judge.input_tokens, score.judge.output_tokens) == (1000, 500)
    assert score.judge.cost_usd == pytest.approx(1000 * 1.0 / 1e6 + 500 * 2.0 / 1e6)
