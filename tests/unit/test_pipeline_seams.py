"""The pipeline's other seams, on the scripted provider: a VariantPicker decides each call's
variant, user wrappers go around every model of a chain, the chain says which position
answered, the SDK takes a caller's own request (and leaves it as it was), and a failure
feature runs within the parent call's deadline."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether import Tether
from tether.config.models import TetherConfig
from tether.errors import UpstreamError
from tether.pipeline import StreamChunk
from tether.pipeline.feature import CompiledFeature
from tether.providers.base import CallContext, Model
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.resilience.chain import Chain, UpstreamHealth, build_chain
from tether.telemetry.trace import Trace
from tether.types import Message, ModelChunk, ModelRequest, ModelResponse

FAILURE = "Sorry, not now."


def config(**features: dict[str, Any]) -> TetherConfig:
    defaults = {"retry": {"max_attempts": 1}, "on_failure": {"respond": FAILURE}}
    return TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted"}, "spare": {"kind": "scripted"}},
            "features": {
                name: {"prompt": {"template": "{{ message }}"}, **defaults, **spec}
                for name, spec in features.items()
            },
        }
    )


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [c async for c in chunks]


# ---------------------------------------------------------------- the variant picker


class ByUser:
    """Half the users see the new prompt: a sticky pick from the user id."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def pick(self, feature: CompiledFeature, trace: Trace) -> str:
        self.asked.append((feature.name, trace.user))
        return "new-prompt" if trace.user == "u-2" else "baseline"


async def test_a_variant_picker_decides_the_variant_of_every_call() -> None:
    picker = ByUser()
    up = ScriptedProvider([Reply("hi")], name="up")
    tether = Tether(config(f={"model": "up:m"}), providers={"up": up}, variant_picker=picker)
    first = await tether.run("f", {"message": "a"}, user="u-1")
    second = await tether.run("f", {"message": "a"}, user="u-2")
    chunks = await collect(tether.stream("f", {"message": "a"}, user="u-2"))
    assert (first.variant, second.variant) == ("baseline", "new-prompt")
    assert first.trace is not None and first.trace.variant == "baseline"
    streamed = chunks[-1].result
    assert streamed is not None and streamed.variant == "new-prompt"
    assert [t.variant for t in tether.traces.traces] == ["baseline", "new-prompt", "new-prompt"]
    assert picker.asked == [("f", "u-1"), ("f", "u-2"), ("f", "u-2")]


async def test_without_a_picker_every_call_runs_the_baseline() -> None:
    tether = Tether(config(f={"model": "up:m"}), providers={"up": ScriptedProvider(name="up")})
    assert (await tether.run("f", {"message": "a"})).variant == "default"


# ---------------------------------------------------------------- wrappers


@dataclasses.dataclass
class Counting:
    """A user wrapper: counts the calls each model gets (pydantic-ai's wrapper-model shape)."""

    inner: Model
    seen: Counter[str]

    @property
    def name(self) -> str:
        return self.inner.name

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        self.seen[self.inner.name] += 1
        return await self.inner.complete(request, ctx)

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        self.seen[self.inner.name] += 1
        async for chunk in self.inner.stream(request, ctx):
            yield chunk


async def test_a_wrapper_sees_every_attempt_of_the_primary_and_the_fallbacks() -> None:
    seen: Counter[str] = Counter()
    flaky = [Fail(UpstreamError("busy", status_code=503)), Fail(UpstreamError("busy"))]
    up = ScriptedProvider(flaky, name="up")
    spare = ScriptedProvider([Reply("from spare")], name="spare")
    feature = {
        "model": "up:big",
        "fallbacks": ["spare:small"],
        "retry": {"max_attempts": 2, "backoff_base_s": 0.001, "backoff_max_s": 0.001},
    }
    tether = Tether(
        config(f=feature),
        providers={"up": up, "spare": spare},
        wrappers=[lambda model: Counting(model, seen)],
    )
    result = await tether.run("f", {"message": "a"})
    assert result.output == "from spare" and result.trace is not None
    attempts = Counter(a.model for a in result.trace.attempts)
    assert attempts == {"up:big": 2, "spare:small": 1}
    assert seen == attempts
    seen.clear()
    chunks = await collect(tether.stream("f", {"message": "a"}))
    assert chunks[-1].result is not None and chunks[-1].result.output == "from spare"
    assert seen == {"up:big": 2, "spare:small": 1}


async def test_wrappers_nest_the_first_outermost() -> None:
    order: list[str] = []

    def tagging(tag: str) -> Any:
        def wrap(model: Model) -> Model:
            @dataclasses.dataclass
            class Tagged:
                inner: Model

                @property
                def name(self) -> str:
                    return self.inner.name

                async def complete(self, request: ModelRequest, ctx: CallContext) -> Any:
                    order.append(tag)
                    return await self.inner.complete(request, ctx)

                def stream(self, request: ModelRequest, ctx: CallContext) -> Any:
                    return self.inner.stream(request, ctx)

            return Tagged(model)

        return wrap

    up = ScriptedProvider([Reply("hi")], name="up")
    tether = Tether(
        config(f={"model": "up:m"}), providers={"up": up}, wrappers=[tagging("a"), tagging("b")]
    )
    await tether.run("f", {"message": "x"})
    assert order == ["a", "b"]


# ---------------------------------------------------------------- the chain and its positions


def chain_of(*providers: ScriptedProvider) -> Chain:
    feature = config(
        f={"model": "up:m", "fallbacks": [f"{p.name}:m" for p in providers[1:]]}
    ).features["f"]
    by_name = {p.name: p for p in providers}
    return build_chain(feature, lambda ref: by_name[ref.split(":")[0]].model("m"), UpstreamHealth())


async def test_an_answer_says_which_chain_position_gave_it() -> None:
    up = ScriptedProvider([Fail(UpstreamError("down", retryable=False)), Reply("up")], name="up")
    spare = ScriptedProvider([Reply("spare")], name="spare")
    chain = chain_of(up, spare)
    request = ModelRequest([Message("user", "hi")])
    trace = Trace("f")
    first = await chain.complete(request, CallContext(trace))
    assert (first.text, first.position) == ("spare", 1)
    assert (await chain.complete(request, CallContext(trace))).position == 0
    later = chain.from_position(1)
    assert later.name == "spare:m" and later.names == ["up:m", "spare:m"]
    assert (await later.complete(request, CallContext(trace))).position == 1
    assert [a.chain_position for a in trace.attempts] == [0, 1, 0, 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.position = 0  # type: ignore[misc]
    with pytest.raises(ValueError, match="no model at position 2"):
        chain.from_position(2)


async def test_a_reask_goes_to_the_model_that_answered_after_an_input_fallback() -> None:
    up = ScriptedProvider([Reply("never")], name="up")
    spare = ScriptedProvider([Reply("not json"), Reply('{"answer": "yes"}')], name="spare")
    guards = {
        "input": [{"pii": {"action": "fallback"}}],
        "output": [{"json_schema": {"schema": {"type": "object"}, "action": "reask"}}],
    }
    feature = {"model": "up:big", "fallbacks": ["spare:small"], "guards": guards}
    tether = Tether(config(f=feature), providers={"up": up, "spare": spare})
    result = await tether.run("f", {"message": "I am ana@example.com"})
    assert result.value == {"answer": "yes"} and result.model == "spare:small"
    assert up.calls == [] and len(spare.calls) == 2
    assert result.trace is not None
    assert [(a.model, a.chain_position) for a in result.trace.attempts] == [
        ("spare:small", 1),
        ("spare:small", 1),
    ]


# ---------------------------------------------------------------- the SDK's request=


async def test_run_takes_a_request_of_the_callers_own_and_leaves_it_as_it_was() -> None:
    up = ScriptedProvider([Reply("hi")], name="up")
    feature = {"model": "up:m", "prompt": {"system": "Be brief.", "template": "x"}}
    tether = Tether(config(f={**feature, "max_tokens": 50}), providers={"up": up})
    request = ModelRequest([Message("user", "hello")], max_tokens=10_000)
    started: list[Trace] = []
    result = await tether.run("f", request=request, on_start=started.append)
    assert request == ModelRequest([Message("user", "hello")], max_tokens=10_000)
    (asked,) = up.calls
    assert [m.role for m in asked.messages] == ["system", "user"] and asked.max_tokens == 50
    assert [t.id for t in started] == [result.trace_id]
    chunks = await collect(tether.stream("f", request=request, on_start=started.append))
    assert chunks[-1].result is not None and started[-1].id == chunks[-1].result.trace_id
    assert request == ModelRequest([Message("user", "hello")], max_tokens=10_000)


# ---------------------------------------------------------------- the failure feature's deadline


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
async def test_a_failure_feature_runs_within_the_parent_calls_deadline(stream: bool) -> None:
    """The parent's total_timeout_s bounds its failure feature too: the backup, slower than
    what is left, times out and answers with its own failure path."""
    up = ScriptedProvider([Fail(UpstreamError("down", retryable=False))], name="up")
    spare = ScriptedProvider([Reply("too late", delay_s=3.0)], name="spare")
    features = config(
        main={"model": "up:m", "total_timeout_s": 0.3, "on_failure": {"feature": "backup"}},
        backup={"model": "spare:m", "timeout_s": 10, "on_failure": {"respond": "backup down"}},
    )
    tether = Tether(features, providers={"up": up, "spare": spare})
    if stream:
        result = (await collect(tether.stream("main", {"message": "a"})))[-1].result
    else:
        result = await tether.run("main", {"message": "a"})
    assert result is not None and result.output == "backup down"
    assert result.trace is not None
    (attempt,) = [a for a in result.trace.attempts if a.model == "spare:m"]
    assert attempt.error_class == "Timeout"
    failures = [e.data for e in result.trace.events if e.kind == "failure_path"]
    assert [(f["via"], f["reason"]) for f in failures] == [
        ("feature", "upstream_error"),
        ("respond", "timeout"),
    ]
