"""The embedded SmolLM2 model as the judge of ``llm-rubric``: a weak judge, so its verdicts are
not the point; that each is a readable Score (JSON mode through a llama.cpp grammar), never an
exception, and is cached on disk so a re-run asks it nothing, is."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import Tether
from tether.config import parse_config
from tether.evals.judge import close_judge
from tether.evals.scorers.model_graded import FACTORIES
from tether.evals.types import Assertion, Case, Output, ScoringContext

pytestmark = pytest.mark.local_model

CONFIG = """
providers:
  local: {kind: local}
features:
  assistant:
    prompt: {template: "{{ question }}"}
    model: local:smollm2
    on_failure: {respond: sorry}
    evals: {judge: {model: local:smollm2}}
"""
CASE = Case(index=0, id="c0", vars={"question": "What is the capital of France?"})
OUTPUTS = ["Paris is the capital of France.", "I like turtles."]


async def test_the_local_model_judges_a_rubric_readably_and_is_cached(tmp_path: Path) -> None:
    assertion = Assertion("llm-rubric", "Names Paris as the capital of France")
    async with Tether(parse_config(CONFIG, "t.yaml", {})) as tether:
        runs = []
        for _ in range(2):  # the second run reads every verdict from the cache
            ctx = ScoringContext(
                tether=tether, feature="assistant", judge_model="local:smollm2", cache_dir=tmp_path
            )
            scorer = FACTORIES["llm-rubric"](assertion, ctx)
            runs.append([await scorer.score(CASE, Output(text=text)) for text in OUTPUTS])
            await close_judge(ctx)
    first, second = runs
    for score in first:
        assert "could not be read" not in score.reason, score.reason  # JSON mode: readable
        assert 0.0 <= score.value <= 1.0 and score.reason
        assert score.judge is not None and (score.judge.calls, score.judge.cached) == (1, 0)
        assert score.judge.input_tokens > 0 and score.judge.output_tokens > 0
    for made, cached in zip(first, second, strict=True):
        assert cached.judge is not None and (cached.judge.calls, cached.judge.cached) == (0, 1)
        assert (cached.passed, cached.value, cached.reason) == (
            made.passed,
            made.value,
            made.reason,
        )
