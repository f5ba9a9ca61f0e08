"""The request pipeline, top to bottom.

    request -> rollout (pick variant) -> input guards -> budget reserve -> cache
            -> resilient model call (timeout · retry · breaker · fallback chain · stream buffer)
            -> output guards -> review routing -> budget settle -> response
    every step appends to the call's trace; the trace goes to the sink off the hot path
    any failure -> the feature's failure path (on_failure), never a bare error

Pillars that have not landed yet are marked where they plug in. A caller's own mistake (an
unknown feature, a missing template variable) raises :class:`~tether.errors.InvalidRequest`
instead of taking the failure path: the failure path is for the system around the model.

Guards (only for a feature that declares them; the unguarded path does not pay for them):
input guards check every message the caller supplies, whatever its role (its text and its tool
calls' arguments; never the feature's own system prompt), before the model call (``block`` ->
the failure path with reason ``guard_blocked``, ``redact`` -> the model sees placeholders,
``fallback`` -> the chain starts at its next model); output guards check the answer
(``redact`` rewrites it and restores the user's originals, ``reask`` asks the same model again
with the validation error, ``fallback`` asks the next model, ``block`` -> the failure path).
``review`` and ``log`` only record. A stream is guarded on the fly (redaction mid-stream, a
block ends it with an explicit error) unless its output guards may re-ask or fall back: then it
is answered in one piece once the guards passed. See :mod:`tether.pipeline.guarding` and
docs/guards.md.

When the call ends, the trace keeps what was asked (the messages as the model saw them, the
variables) and the answer as the feature's ``trace.capture`` says
(:mod:`tether.pipeline.capture`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from tether.errors import FeatureFailed, FeatureNotFound, ProviderError, TetherError
from tether.guards import GuardedStream, GuardOutcome
from tether.pipeline.feature import CompiledFeature
from tether.pipeline.guarding import CallGuards
from tether.pipeline.result import Result, StreamChunk
from tether.providers.base import CallContext
from tether.resilience.streams import close_quietly
from tether.telemetry.sink import TraceSink
from tether.telemetry.trace import Trace
from tether.types import ModelChunk, ModelRequest, ModelResponse, ToolCallDelta, Usage


@dataclass(slots=True)
class Call:
    """One call on its way through the pipeline."""

    feature: CompiledFeature
    trace: Trace
    request: ModelRequest
    variables: Mapping[str, Any]
    guards: CallGuards | None = None  # this call's guards, once they ran

    def context(self) -> CallContext:
        return CallContext(self.trace, time.monotonic() + self.feature.config.deadline_s)


class Pipeline:
    def __init__(self, features: Mapping[str, CompiledFeature], sink: TraceSink) -> None:
        self.features = features
        self.sink = sink

    def feature(self, name: str) -> CompiledFeature:
        try:
            return self.features[name]
        except KeyError:
            known = ", ".join(sorted(self.features)) or "none"
            raise FeatureNotFound(
                f"no feature named {name!r} (declared: {known}); check the name or add it to "
                "tether.yaml"
            ) from None

    def start(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        request: ModelRequest | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Call:
        """Resolve the feature and build its request (raises InvalidRequest on caller error)."""
        compiled = self.feature(feature)
        variables = variables or {}
        trace = Trace(feature=feature, user=user, metadata=dict(metadata or {}))
        # rollout: variant selection plugs in here (trace.variant)
        if request is None:
            return Call(compiled, trace, compiled.build_request(variables), variables)
        asked = request.max_tokens
        built = compiled.adopt(request, variables)
        if asked is not None and built.max_tokens != asked:
            trace.event("max_tokens_capped", asked=asked, limit=built.max_tokens)
        return Call(compiled, trace, built, variables)

    # ------------------------------------------------------------------ one-shot

    async def run(self, call: Call) -> Result:
        try:
            return await self._run(call)
        finally:
            await self._finish(call)

    async def _run(self, call: Call) -> Result:
        ctx = call.context()
        runner = call.feature.guards
        outcome: GuardOutcome | None = None
        try:
            if runner is None:
                # budget reserve and cache plug in here
                response = await call.feature.model.complete(call.request, ctx)
            else:
                guards = call.guards = CallGuards(runner, call.feature, call.trace)
                await guards.check_input(call.request)  # block raises; redact; fallback
                # budget reserve and cache plug in here
                response, outcome = await self._guarded_answer(guards, ctx)
        except TetherError as exc:
            return await self._failure_path(call, exc)
        # review routing and budget settle plug in here
        return self._answered(call, response, outcome)

    async def _guarded_answer(
        self, guards: CallGuards, ctx: CallContext
    ) -> tuple[ModelResponse, GuardOutcome]:
        """Call the model until the output guards pass: a ``reask`` asks the model that answered
        again with the validation error (at most ``max_reasks`` times, then it blocks), a
        ``fallback`` asks the next model in the chain; ``block`` raises GuardBlocked. Every
        model call is an attempt on the trace."""
        assert guards.request is not None
        request, position = guards.request, guards.start
        while True:
            response = await guards.model_at(position).complete(request, ctx)
            outcome = await guards.check_output(response)
            if outcome.decision == "reask":
                position = ctx.chain_position
                request = guards.reask(request, response.text, outcome)
            elif outcome.decision == "fallback":
                position = guards.fallback(outcome, ctx.chain_position)
                request = guards.request
            else:
                outcome.raise_for_decision()
                return response, outcome

    def _answered(
        self, call: Call, response: ModelResponse, outcome: GuardOutcome | None = None
    ) -> Result:
        """The model's answer, as the output guards left it (the trace keeps placeholders)."""
        trace = call.trace
        trace.status = "ok"
        output = response.text if outcome is None else outcome.text
        trace.output = response.text if outcome is None else outcome.traced_text
        answered = [a for a in trace.attempts if a.status == "ok"]
        trace.model = answered[-1].model if answered else f"{response.provider}:{response.model}"
        result = self._result(
            call, output, trace.model, response.finish_reason, response.tool_calls
        )
        if outcome is not None:
            result.value = outcome.value
        return result

    async def _failure_path(self, call: Call, error: TetherError) -> Result:
        """The feature's designed answer for when the model could not give one."""
        on_failure = call.feature.config.on_failure
        trace = call.trace
        nested = self._failure_feature(call, error)
        if nested is not None:
            result = await self._run(nested)
            return self._degrade(trace, result, error.reason)
        if on_failure.respond is not None:
            trace.event("failure_path", via="respond", reason=error.reason, error=str(error))
            trace.output = on_failure.respond
            result = self._result(call, on_failure.respond, None, "stop", None)
            return self._degrade(trace, result, error.reason)
        trace.event("failure_path", via="raise", reason=error.reason, error=str(error))
        trace.status, trace.degraded, trace.reason = "error", True, error.reason
        raise FeatureFailed(
            f"feature {call.feature.name!r} failed ({error.reason}): {error}", cause=error
        ) from error

    def _failure_feature(self, call: Call, error: TetherError) -> Call | None:
        """The call of the feature ``on_failure.feature`` names (the event recorded), if any."""
        name = call.feature.config.on_failure.feature
        if name is None:
            return None
        call.trace.event(
            "failure_path", via="feature", feature=name, reason=error.reason, error=str(error)
        )
        other = self.feature(name)
        return Call(other, call.trace, other.build_request(call.variables), call.variables)

    @staticmethod
    def _degrade(trace: Trace, result: Result, reason: str) -> Result:
        trace.status, trace.degraded, trace.reason = "degraded", True, reason
        result.degraded, result.reason = True, reason
        return result

    def _result(
        self,
        call: Call,
        output: str,
        model: str | None,
        finish_reason: str | None,
        tool_calls: Any,
    ) -> Result:
        trace = call.trace
        usage = Usage()
        for attempt in trace.attempts:
            usage = usage + attempt.usage
        trace.usage = usage
        trace.cost_usd = sum(a.cost_usd for a in trace.attempts)
        trace.latency_ms = trace.now_ms()
        return Result(
            output=output,
            feature=trace.feature,
            trace_id=trace.id,
            usage=usage,
            cost_usd=trace.cost_usd,
            latency_ms=trace.latency_ms,
            variant=trace.variant,
            model=model,
            finish_reason=finish_reason,
            tool_calls=tool_calls,
            trace=trace,
        )

    async def _finish(self, call: Call) -> None:
        trace = call.trace
        if trace.status == "running":
            trace.status = "error"
        trace.latency_ms = trace.latency_ms or trace.now_ms()
        guards = call.guards
        if guards is None or guards.request is None:
            call.feature.capture.record(trace, call.request, call.variables)
        else:
            call.feature.capture.record(
                trace, guards.request, call.variables, guards.ctx.redactor, guards.pii_clean
            )
        await self.sink.write(trace)

    # ------------------------------------------------------------------ streaming

    async def stream(self, call: Call) -> AsyncGenerator[StreamChunk, None]:
        chunks = self._stream(call)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # a caller that stops reading closes the model's stream too
            await self._finish(call)

    async def _stream(self, call: Call) -> AsyncGenerator[StreamChunk, None]:
        ctx = call.context()
        runner = call.feature.guards
        model, request, shield = call.feature.model, call.request, None
        if runner is not None:
            guards = call.guards = CallGuards(runner, call.feature, call.trace)
            try:
                request = await guards.check_input(call.request)  # before the stream starts
                model = guards.model_at(guards.start)
            except TetherError as exc:
                async for piece in self._stream_failure(call, exc):
                    yield piece
                return
            if guards.whole_answer:  # re-ask / fallback / whole-text guards: one piece
                async for piece in self._stream_whole(call, guards, ctx):
                    yield piece
                return
            shield = guards.output_stream()
        # budget reserve and cache plug in here
        relay = self._relay(call, model.stream(request, ctx), shield)
        try:
            async for piece in relay:
                yield piece
        finally:
            await relay.aclose()

    async def _relay(
        self, call: Call, source: AsyncIterator[ModelChunk], shield: GuardedStream | None
    ) -> AsyncGenerator[StreamChunk, None]:
        """Hand the model's deltas on, through the output guards' stream when there is one
        (it holds back a tail, redacts, and raises GuardBlocked on a blocking verdict)."""
        parts: list[str] = []  # the model's text, as it came
        sent = False  # whether anything reached the caller
        last = ModelChunk()
        try:
            async for chunk in source:
                if chunk.has_content:
                    parts.append(chunk.text)
                    text = chunk.text if shield is None else await shield.afeed(chunk.text)
                    if text or chunk.tool_calls:
                        sent = True
                        yield StreamChunk(text=text, tool_calls=chunk.tool_calls)
                if chunk.finish_reason is not None or chunk.usage is not None:
                    last = chunk
            tail = await shield.afinish() if shield is not None else ""
            if tail:
                sent = True
                yield StreamChunk(text=tail)
        except TetherError as exc:
            if not sent:
                async for piece in self._stream_failure(call, exc):
                    yield piece
                return
            shown = "".join(parts) if shield is None else shield.text
            traced = shown if shield is None else shield.traced_text
            yield self._interrupted(call, exc, shown, traced)
            return
        finally:
            await close_quietly(source)
        response = ModelResponse(
            "".join(parts),
            last.usage or Usage(),
            last.model,
            last.provider,
            finish_reason=last.finish_reason,
        )
        result = self._answered(call, response, None if shield is None else shield.outcome)
        yield StreamChunk(done=True, result=result)

    async def _stream_whole(
        self, call: Call, guards: CallGuards, ctx: CallContext
    ) -> AsyncIterator[StreamChunk]:
        """Output guards that may re-ask or fall back, or judge only the whole text, see the
        whole answer before the caller sees any of it: the answer comes in one piece."""
        try:
            response, outcome = await self._guarded_answer(guards, ctx)
        except TetherError as exc:
            async for piece in self._stream_failure(call, exc):
                yield piece
            return
        result = self._answered(call, response, outcome)
        tools = [
            ToolCallDelta(i, t.id, t.name, t.arguments)
            for i, t in enumerate(response.tool_calls or [])
        ]
        yield StreamChunk(text=result.output, tool_calls=tools or None)
        yield StreamChunk(done=True, result=result)

    async def _stream_failure(self, call: Call, error: TetherError) -> AsyncIterator[StreamChunk]:
        nested = self._failure_feature(call, error)
        if nested is not None:
            async for chunk in self._stream(nested):
                if chunk.result is not None and not chunk.result.degraded:
                    self._degrade(call.trace, chunk.result, error.reason)
                if not chunk.degraded:
                    chunk.degraded, chunk.reason = True, error.reason
                yield chunk
            return
        result = await self._failure_path(call, error)  # respond, or raise FeatureFailed
        yield StreamChunk(text=result.output, degraded=True, reason=result.reason)
        yield StreamChunk(done=True, result=result, degraded=True, reason=result.reason)

    def _interrupted(
        self, call: Call, error: TetherError, partial: str, traced: str
    ) -> StreamChunk:
        """A stream that broke (or a guard stopped) after content reached the caller: say so
        explicitly. ``traced`` is ``partial`` with placeholders still in, for the trace."""
        trace = call.trace
        reason = "stream_interrupted" if isinstance(error, ProviderError) else error.reason
        trace.event("stream_interrupted", error=str(error), chars_sent=len(partial))
        trace.output = traced
        trace.model = trace.attempts[-1].model if trace.attempts else None
        result = self._result(call, partial, trace.model, None, None)
        self._degrade(trace, result, reason)
        return StreamChunk(done=True, result=result, error=str(error), degraded=True, reason=reason)
