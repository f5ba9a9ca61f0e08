"""The pipeline's stage slots, on the scripted provider: a recording stage in each slot the
coming pillars fill (rollout, budget, review, cache) proves the order of ``before``, ``after``
and ``failed`` around the model and the guards, for calls and streams, and that every hook
sees the call's trace."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tether import Tether
from tether.config.models import TetherConfig
from tether.errors import BudgetExceeded, TetherError, UpstreamError
from tether.pipeline import SLOTS, Answer, Call, Slot, Stage, StreamChunk
from tether.pipeline.stages import arrange
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.types import ModelResponse, Usage

FAILURE = "Sorry, not now."
EMAIL = "ana.lopez@example.com"
PILLARS: tuple[Slot, ...] = ("rollout", "budget", "review", "cache")
# guards that record a verdict on every text they see (pii, action log), before and after
LOGGING_GUARDS = {"input": [{"pii": {"action": "log"}}], "output": [{"pii": {"action": "log"}}]}


@dataclasses.dataclass
class Hook:
    slot: str
    hook: str
    trace_id: str
    guarded: tuple[str, ...]  # the guard stages (input/output) that had run, from the trace


class Recording(Stage):
    """Records each hook it gets, with the trace it saw and the guards that ran before it."""

    def __init__(self, slot: Slot, log: list[Hook]) -> None:
        self.slot = slot
        self.log = log

    def note(self, call: Call, hook: str) -> None:
        guarded = tuple(sorted({e.data["stage"] for e in call.trace.events if e.kind == "guard"}))
        self.log.append(Hook(self.slot, hook, call.trace.id, guarded))

    async def before(self, call: Call) -> Answer | None:
        self.note(call, "before")
        return None

    async def after(self, call: Call, answer: Answer) -> Answer:
        self.note(call, "after")
        return answer

    async def failed(self, call: Call, error: TetherError) -> None:
        self.note(call, f"failed:{error.reason}")


def make(
    up: ScriptedProvider,
    *,
    guards: dict[str, Any] | None = None,
    stages: list[Stage] | None = None,
    spare: ScriptedProvider | None = None,
) -> Tether:
    feature: dict[str, Any] = {
        "prompt": {"system": "You help.", "template": "{{ message }}"},
        "model": "up:big",
        "fallbacks": ["spare:small"] if spare is not None else [],
        "retry": {"max_attempts": 1},
        "guards": guards or {},
        "on_failure": {"respond": FAILURE},
    }
    config = TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted"}, "spare": {"kind": "scripted"}},
            "features": {"support": feature},
        }
    )
    spare = spare or ScriptedProvider([Reply("spare answer")], name="spare")
    return Tether(config, providers={"up": up, "spare": spare}, stages=stages or [])


def recorders(log: list[Hook]) -> list[Stage]:
    """One recording stage per pillar slot, given in reverse so that the slot decides."""
    return [Recording(slot, log) for slot in reversed(PILLARS)]


def hooks(log: list[Hook]) -> list[str]:
    return [f"{h.slot}.{h.hook}" for h in log]


CALL_ORDER = [
    "rollout.before",
    "budget.before",
    "review.before",
    "cache.before",
    "cache.after",
    "review.after",
    "budget.after",
    "rollout.after",
]


async def collect(tether: Tether, message: str) -> list[StreamChunk]:
    return [c async for c in tether.stream("support", {"message": message})]


@pytest.mark.parametrize("guards", [None, LOGGING_GUARDS], ids=["unguarded", "guarded"])
async def test_stages_run_in_slot_order_around_the_model_and_see_the_trace(
    guards: dict[str, Any] | None,
) -> None:
    log: list[Hook] = []
    up = ScriptedProvider([Reply("fine")], name="up")
    result = await make(up, guards=guards, stages=recorders(log)).run(
        "support", {"message": f"I am {EMAIL}"}
    )
    assert result.output == "fine" and not result.degraded
    assert hooks(log) == CALL_ORDER
    assert {h.trace_id for h in log} == {result.trace_id}
    if guards is not None:  # input guards before the budget, output guards before review
        assert [h.guarded for h in log] == [
            (),
            ("input",),
            ("input",),
            ("input",),
            ("input",),
            ("input", "output"),
            ("input", "output"),
            ("input", "output"),
        ]


@pytest.mark.parametrize(
    ("guards", "hooks_before_text"),
    [
        (None, 4),
        (LOGGING_GUARDS, 4),  # on the fly: the text passes between before and after
        ({"output": [{"json_schema": {"schema": {}, "action": "reask"}}]}, 8),  # one piece
    ],
    ids=["unguarded", "on-the-fly", "whole-answer"],
)
async def test_streams_run_the_same_stages(
    guards: dict[str, Any] | None, hooks_before_text: int
) -> None:
    log: list[Hook] = []
    answer = '{"a": "write to ops@partner.example, they will help"}'
    up = ScriptedProvider([Reply(answer, chunks=4)], name="up")
    tether = make(up, guards=guards, stages=recorders(log))
    seen: list[str] = []
    async for chunk in tether.stream("support", {"message": f"I am {EMAIL}"}):
        seen.append("done" if chunk.done else f"text:{len(log)}")
        if chunk.done:
            assert chunk.result is not None and not chunk.result.degraded
            assert {h.trace_id for h in log} == {chunk.result.trace_id}
    assert hooks(log) == CALL_ORDER
    texts = [s for s in seen if s.startswith("text")]
    assert texts and all(s == f"text:{hooks_before_text}" for s in texts)
    assert seen[-1] == "done"
    if guards is LOGGING_GUARDS:  # on the fly, the output guards judge the text as it passes
        assert log[1].guarded == ("input",) and log[5].guarded == ("input", "output")


async def test_a_failed_model_call_gives_every_entered_stage_failed_in_reverse() -> None:
    for stream in (False, True):
        log: list[Hook] = []
        up = ScriptedProvider([Fail(UpstreamError("down", retryable=False))], name="up")
        tether = make(up, guards=LOGGING_GUARDS, stages=recorders(log))
        if stream:
            chunks = await collect(tether, "hi")
            result = chunks[-1].result
        else:
            result = await tether.run("support", {"message": "hi"})
        assert result is not None and result.output == FAILURE and result.degraded
        assert hooks(log) == [
            "rollout.before",
            "budget.before",
            "review.before",
            "cache.before",
            "cache.failed:upstream_error",
            "review.failed:upstream_error",
            "budget.failed:upstream_error",
            "rollout.failed:upstream_error",
        ]
        assert {h.trace_id for h in log} == {result.trace_id}


async def test_an_input_block_ends_before_the_budget_is_entered() -> None:
    log: list[Hook] = []
    up = ScriptedProvider([Reply("never")], name="up")
    guards = {"input": [{"banned": {"keywords": ["lawsuit"]}}]}
    tether = make(up, guards=guards, stages=recorders(log))
    for stream in (False, True):
        log.clear()
        if stream:
            result = (await collect(tether, "a lawsuit"))[-1].result
        else:
            result = await tether.run("support", {"message": "a lawsuit"})
        assert result is not None and result.reason == "guard_blocked"
        assert hooks(log) == ["rollout.before", "rollout.failed:guard_blocked"]
    assert up.calls == []


async def test_an_output_block_fails_the_stages_outside_the_output_guards() -> None:
    log: list[Hook] = []
    up = ScriptedProvider([Reply("Try Competitor Inc.")], name="up")
    guards = {"output": [{"banned": {"keywords": ["competitor inc"]}}]}
    result = await make(up, guards=guards, stages=recorders(log)).run("support", {"message": "?"})
    assert result.reason == "guard_blocked"
    assert hooks(log) == [
        *CALL_ORDER[:5],  # the cache (inside the output guards) got the model's answer
        "review.failed:guard_blocked",
        "budget.failed:guard_blocked",
        "rollout.failed:guard_blocked",
    ]


class Cached(Stage):
    """A cache hit: answers in ``before`` with a stored answer."""

    slot: Slot = "cache"

    def __init__(self, text: str) -> None:
        self.text = text

    async def before(self, call: Call) -> Answer | None:
        return Answer.of(ModelResponse(self.text, Usage(), "cache", "tether"))


async def test_a_stage_that_answers_skips_the_model_and_its_answer_is_guarded() -> None:
    log: list[Hook] = []
    skipped: list[Hook] = []
    up = ScriptedProvider([Reply("never")], name="up")
    guards = {"output": [{"pii": {"action": "redact"}}]}
    stages = [*recorders(log), Cached(f"write to {EMAIL}"), Recording("cache", skipped)]
    tether = make(up, guards=guards, stages=stages)
    result = await tether.run("support", {"message": "hi"})
    assert result.output == "write to [EMAIL]" and not result.degraded
    assert result.model == "tether:cache"
    chunks = await collect(tether, "hi")
    assert [c.text for c in chunks] == ["write to [EMAIL]", ""]  # one piece
    assert up.calls == []
    # the stages before the one that answered are entered (and get after); none after it
    assert hooks(log) == CALL_ORDER + CALL_ORDER
    assert skipped == []


class Refusing(Stage):
    slot: Slot = "budget"

    async def before(self, call: Call) -> Answer | None:
        raise BudgetExceeded("support: the daily budget of $5.00 is spent; raise it or wait")


async def test_a_stage_that_refuses_takes_the_failure_path_without_the_model() -> None:
    log: list[Hook] = []
    up = ScriptedProvider([Reply("never")], name="up")
    tether = make(up, stages=[Recording("rollout", log), Refusing(), Recording("cache", log)])
    result = await tether.run("support", {"message": "hi"})
    assert result.output == FAILURE and result.reason == "budget_exceeded"
    assert hooks(log) == ["rollout.before", "rollout.failed:budget_exceeded"]
    chunks = await collect(tether, "hi")
    assert chunks[-1].reason == "budget_exceeded" and up.calls == []


class Holding(Stage):
    """Review that holds an answer: the caller gets a holding message instead."""

    slot: Slot = "review"
    whole_answer = True

    async def after(self, call: Call, answer: Answer) -> Answer:
        call.trace.event("review_held")
        return dataclasses.replace(answer, text="A person will reply shortly.")


async def test_an_after_hook_may_replace_the_answer() -> None:
    up = ScriptedProvider([Reply("a risky answer", chunks=3)], name="up")
    tether = make(up, stages=[Holding()])
    result = await tether.run("support", {"message": "hi"})
    assert result.output == "A person will reply shortly."
    assert result.trace is not None and result.trace.output == "a risky answer"
    chunks = await collect(tether, "hi")  # whole_answer: the stream comes in one piece
    assert [c.text for c in chunks] == ["A person will reply shortly.", ""]


async def test_a_caller_that_stops_reading_gives_the_stages_failed() -> None:
    log: list[Hook] = []
    up = ScriptedProvider([Reply("one two three four five six", chunks=6)], name="up")
    chunks = make(up, stages=recorders(log)).stream("support", {"message": "hi"})
    first = await anext(chunks)
    assert first.text and not first.done
    await chunks.aclose()
    assert hooks(log) == [
        *CALL_ORDER[:4],
        "cache.failed:cancelled",
        "review.failed:cancelled",
        "budget.failed:cancelled",
        "rollout.failed:cancelled",
    ]


def with_backup() -> TetherConfig:
    return TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted"}},
            "features": {
                "main": {
                    "prompt": {"template": "hi"},
                    "model": "up:a",
                    "retry": {"max_attempts": 1},
                    "on_failure": {"feature": "backup"},
                },
                "backup": {
                    "prompt": {"template": "hi"},
                    "model": "up:a",
                    "on_failure": {"respond": FAILURE},
                },
            },
        }
    )


async def test_a_failure_feature_runs_its_own_stages_on_the_same_trace() -> None:
    log: list[Hook] = []
    up = ScriptedProvider([Fail(UpstreamError("down", retryable=False)), Reply("backup")])
    stages: list[Stage] = [Recording("budget", log)]
    result = await Tether(with_backup(), providers={"up": up}, stages=stages).run("main")
    assert result.output == "backup" and result.reason == "upstream_error"
    assert hooks(log) == [
        "budget.before",
        "budget.failed:upstream_error",
        "budget.before",  # the backup feature's call
        "budget.after",
    ]
    assert {h.trace_id for h in log} == {result.trace_id}


async def test_a_caller_that_stops_reading_a_failure_features_stream_fails_its_stages() -> None:
    log: list[Hook] = []
    down = Fail(UpstreamError("down", retryable=False))
    up = ScriptedProvider([down, Reply("one two three four five six", chunks=6)])
    tether = Tether(with_backup(), providers={"up": up}, stages=[Recording("budget", log)])
    chunks = tether.stream("main")
    first = await anext(chunks)
    assert first.text and first.degraded and not first.done
    await chunks.aclose()
    assert hooks(log) == [
        "budget.before",
        "budget.failed:upstream_error",
        "budget.before",  # the backup feature's call, which the caller stopped reading
        "budget.failed:cancelled",
    ]


def test_stages_are_ordered_by_slot_keeping_their_order_within_one() -> None:
    log: list[Hook] = []
    first, second = Recording("budget", log), Recording("budget", log)
    rollout, cache = Recording("rollout", log), Recording("cache", log)
    assert arrange([cache, first, rollout, second]) == (rollout, first, second, cache)
    tether = make(ScriptedProvider(), guards=LOGGING_GUARDS, stages=[cache, rollout])
    stages = tether.pipeline.features["support"].stages
    assert [s.slot for s in stages] == ["rollout", "input", "output", "cache"]
    assert SLOTS == ("rollout", "input", "budget", "review", "output", "cache")
    assert make(ScriptedProvider()).pipeline.features["support"].stages == ()


def test_a_stage_with_an_unknown_slot_is_refused() -> None:
    stage = Recording("budget", [])
    stage.slot = "billing"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="slot 'billing'; use one of rollout, input"):
        arrange([stage])
