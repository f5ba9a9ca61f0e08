"""The embedding path: texts in, one vector each out, through the same pipeline pieces as chat.

    start    resolve the feature (an alias too); it must be ``kind: embedding`` (a chat
             feature is an InvalidRequest naming its kind); the VariantPicker decides the
             call's variant. The inputs are seen as one user message each, so the input guards
             and the trace's capture treat them as they treat a conversation
    before   the feature's stages that apply to embedding calls, in slot order, as for chat:
             input guards on every input text (``block`` refuses the call, ``redact`` embeds
             the redacted text, ``fallback`` starts the chain further on), rate limits,
             budget reserve, cache lookup (a hit answers: the model is not called)
    model    the feature's Chain ``embed``: per model WithRetry(WithBreaker(Recorded(
             WithTimeout(wrappers(model))))), fallback across them; every attempt on the trace
    after    the same stages in reverse (cache store, budget settle)
    result   the vectors, the trace's usage and cost, the model that answered
    failure  on_failure ``feature`` (another embedding feature, the same inputs, within what is
             left of the deadline: a degraded result) or ``raise`` (FeatureFailed); embedding
             features have no static answer
    finish   the trace keeps the inputs per the feature's ``trace.capture`` and "N vectors of D
             dims" as its output, and goes to the sink like any call's

A stage runs here when it says ``applies_to_embeddings = True`` (its answers then have
``vectors`` and no text); stages of one's own that do not are left out of embedding features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.errors import InvalidRequest, TetherError
from tether.pipeline.call import Answer, Call, Caller
from tether.pipeline.pipeline import Pipeline
from tether.telemetry.trace import Trace
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelRequest,
    ModelResponse,
    Usage,
)


@dataclass(slots=True)
class EmbeddingResult:
    """An embedding call's answer: ``vectors[i]`` embeds the i-th input.

    ``model`` is the upstream that answered (``provider:model``), ``response_model`` the model
    as that upstream named it (e.g. ``text-embedding-3-small``); ``degraded`` is true when the
    failure path's feature answered, and ``reason`` then says why the feature's own chain did
    not."""

    vectors: list[list[float]]
    feature: str
    trace_id: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    model: str | None = None
    response_model: str | None = None
    degraded: bool = False
    reason: str | None = None
    latency_ms: float = 0.0
    variant: str = "default"
    trace: Trace | None = field(default=None, repr=False, compare=False)

    @property
    def dimensions(self) -> int:
        """The vectors' length (0 when there are none)."""
        return len(self.vectors[0]) if self.vectors else 0


@dataclass(slots=True)
class EmbeddingCall:
    """One embedding call: the pipeline :class:`Call` its guards, chain and trace use (its
    request is the inputs as user messages) and what the model is asked besides the texts."""

    call: Call
    asked: EmbeddingRequest


def start(
    pipeline: Pipeline,
    feature: str,
    inputs: list[str],
    *,
    dimensions: int | None = None,
    user: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    caller: Caller | None = None,
) -> EmbeddingCall:
    """Resolve the feature and pick its variant (raises InvalidRequest on caller error: a chat
    feature, no inputs, an empty text)."""
    compiled = pipeline.feature(feature)
    if compiled.config.kind != "embedding":
        raise InvalidRequest(
            f"feature {feature!r} is a {compiled.config.kind} feature: it answers messages, it "
            "does not embed; call it with POST /v1/chat/completions or Tether.run, or name an "
            "embedding feature (kind: embedding)",
            param="model",
            reason="wrong_feature_kind",
        )
    check_inputs(inputs)
    trace, caller = pipeline.trace_for(compiled, user, metadata, caller)
    compiled = compiled.variant(trace.variant)
    asked = EmbeddingRequest(list(inputs), dimensions, dict(extra or {}))
    request = as_messages(inputs)
    request.extra.update(asked.extra)  # what the stages see of the options (the cache key)
    if dimensions is not None:
        request.extra["dimensions"] = dimensions
    call = Call.begin(compiled, trace, request, {}, caller=caller)
    return EmbeddingCall(call, asked)


def check_inputs(inputs: list[str]) -> None:
    """At least one text, none empty (an empty text has no meaning to embed)."""
    if not inputs:
        raise InvalidRequest("input: send at least one text to embed", param="input")
    for i, text in enumerate(inputs):
        if not isinstance(text, str) or not text:
            raise InvalidRequest(
                f"input.{i}: send a non-empty string (an empty text has nothing to embed)",
                param="input",
            )


def as_messages(inputs: list[str]) -> ModelRequest:
    """The inputs as the guards and the trace's capture see them: one user message each."""
    return ModelRequest(messages=[Message("user", text) for text in inputs])


async def run(pipeline: Pipeline, embedding: EmbeddingCall) -> EmbeddingResult:
    """Run the call; the trace goes to the sink however it ends."""
    try:
        return await _run(pipeline, embedding.call, embedding.asked)
    finally:
        await pipeline._to_the_end(embedding.call, pipeline._finish(embedding.call))


async def _run(pipeline: Pipeline, call: Call, asked: EmbeddingRequest) -> EmbeddingResult:
    try:
        answer = await pipeline._before(call)  # input guards: block raises; redact; fallback
        if answer is None:
            texts = [message.content or "" for message in call.request.messages]
            embedded = await call.model.embed(dataclasses.replace(asked, inputs=texts), call.ctx)
            answer = as_answer(embedded)
        answer = await pipeline._after(call, answer)
    except TetherError as exc:
        if exc.to_caller:
            await pipeline._refuse(call, exc)
        return await _failure_path(pipeline, call, asked, exc)
    return _answered(call, answer)


def as_answer(response: EmbeddingResponse) -> Answer:
    """An embedding model's answer as the stages see it: the vectors, no text."""
    said = ModelResponse(
        "",
        response.usage,
        response.model,
        response.provider,
        cost_usd=response.cost_usd,
        position=response.position,
    )
    return Answer(said, "", "", vectors=response.vectors)


def _answered(call: Call, answer: Answer) -> EmbeddingResult:
    trace, response = call.trace, answer.response
    vectors = answer.vectors or []
    trace.status = "ok"
    count, width = len(vectors), len(vectors[0]) if vectors else 0
    trace.output = f"{count} vectors of {width} dims"
    answered = [a for a in trace.attempts if a.status == "ok"]
    trace.model = answered[-1].model if answered else f"{response.provider}:{response.model}"
    usage = Usage()
    for attempt in trace.attempts:
        usage = usage + attempt.usage
    trace.usage, trace.cost_usd = usage, sum(a.cost_usd for a in trace.attempts)
    trace.latency_ms = trace.now_ms()
    return EmbeddingResult(
        vectors=vectors,
        feature=trace.feature,
        trace_id=trace.id,
        usage=usage,
        cost_usd=trace.cost_usd,
        model=trace.model,
        response_model=response.model or None,
        latency_ms=trace.latency_ms,
        variant=trace.variant,
        trace=trace,
    )


async def _failure_path(
    pipeline: Pipeline, call: Call, asked: EmbeddingRequest, error: TetherError
) -> EmbeddingResult:
    """``on_failure: {feature: ...}`` embeds the same inputs with another embedding feature
    (degraded); else ``raise``."""
    await pipeline._failed(call, error)
    nested = pipeline._failure_feature(call, error, as_messages(asked.inputs))
    if nested is None:
        pipeline._raise_failed(call, error)
    try:
        result = await _run(pipeline, nested, asked)
    finally:
        await pipeline._abandoned(nested)
    trace = call.trace
    trace.status, trace.degraded, trace.reason = "degraded", True, error.reason
    result.degraded, result.reason = True, error.reason
    return result
