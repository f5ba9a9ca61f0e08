"""The request pipeline, top to bottom.

    request -> rollout (pick variant) -> input guards -> budget reserve -> cache
            -> resilient model call (timeout · retry · breaker · fallback chain · stream buffer)
            -> output guards -> review routing -> budget settle -> response
    every step appends to the call's trace; the trace goes to the sink off the hot path
    any failure -> the feature's failure path (on_failure), never a bare error

Pillars that have not landed yet are marked where they plug in. A caller's own mistake (an
unknown feature, a missing template variable) raises :class:`~tether.errors.InvalidRequest`
instead of taking the failure path: the failure path is for the system around the model.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from tether.errors import FeatureFailed, FeatureNotFound, ProviderError, TetherError
from tether.pipeline.feature import CompiledFeature
from tether.pipeline.result import Result, StreamChunk
from tether.providers.base import CallContext
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
        if request is not None:
            built = compiled.adopt(request, variables)
        else:
            built = compiled.build_request(variables)
        return Call(compiled, trace, built, variables)

    # ------------------------------------------------------------------ one-shot

    async def run(self, call: Call) -> Result:
        try:
            return await self._run(call)
        finally:
            await self._finish(call.trace)

    async def _run(self, call: Call) -> Result:
        # input guards, budget reserve and cache plug in here
        ctx = call.context()
        try:
            response = await call.feature.model.complete(call.request, ctx)
        except TetherError as exc:
            return await self._failure_path(call, exc)
        # output guards, review routing and budget settle plug in here
        return self._answered(call, response)

    def _answered(self, call: Call, response: ModelResponse) -> Result:
        trace = call.trace
        trace.status = "ok"
        trace.output = response.text
        answered = [a for a in trace.attempts if a.status == "ok"]
        trace.model = answered[-1].model if answered else f"{response.provider}:{response.model}"
        return self._result(
            call, response.text, trace.model, response.finish_reason, response.tool_calls
        )

    async def _failure_path(self, call: Call, error: TetherError) -> Result:
        """The feature's designed answer for when the model could not give one."""
        on_failure = call.feature.config.on_failure
        trace = call.trace
        if on_failure.feature is not None:
            trace.event(
                "failure_path",
                via="feature",
                feature=on_failure.feature,
                reason=error.reason,
                error=str(error),
            )
            other = self.feature(on_failure.feature)
            request = other.build_request(call.variables)
            result = await self._run(Call(other, trace, request, call.variables))
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

    async def _finish(self, trace: Trace) -> None:
        if trace.status == "running":
            trace.status = "error"
        trace.latency_ms = trace.latency_ms or trace.now_ms()
        await self.sink.write(trace)

    # ------------------------------------------------------------------ streaming

    async def stream(self, call: Call) -> AsyncIterator[StreamChunk]:
        try:
            async for chunk in self._stream(call):
                yield chunk
        finally:
            await self._finish(call.trace)

    async def _stream(self, call: Call) -> AsyncIterator[StreamChunk]:
        # input guards, budget reserve and cache plug in here
        ctx = call.context()
        parts: list[str] = []
        tools: list[ToolCallDelta] = []
        last = ModelChunk()
        source = call.feature.model.stream(call.request, ctx)
        try:
            async for chunk in source:
                # output guards on overlapping windows plug in here
                if chunk.has_content:
                    parts.append(chunk.text)
                    tools.extend(chunk.tool_calls or [])
                    yield StreamChunk(text=chunk.text, tool_calls=chunk.tool_calls)
                if chunk.finish_reason is not None or chunk.usage is not None:
                    last = chunk
        except TetherError as exc:
            if not parts and not tools:
                async for piece in self._stream_failure(call, exc):
                    yield piece
                return
            yield self._interrupted(call, exc, "".join(parts))
            return
        response = ModelResponse(
            "".join(parts),
            last.usage or Usage(),
            last.model,
            last.provider,
            finish_reason=last.finish_reason,
        )
        result = self._answered(call, response)
        yield StreamChunk(done=True, result=result)

    async def _stream_failure(self, call: Call, error: TetherError) -> AsyncIterator[StreamChunk]:
        on_failure = call.feature.config.on_failure
        if on_failure.feature is not None:
            call.trace.event(
                "failure_path",
                via="feature",
                feature=on_failure.feature,
                reason=error.reason,
                error=str(error),
            )
            other = self.feature(on_failure.feature)
            nested = Call(other, call.trace, other.build_request(call.variables), call.variables)
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

    def _interrupted(self, call: Call, error: TetherError, partial: str) -> StreamChunk:
        """A stream that broke after content reached the caller: say so explicitly."""
        trace = call.trace
        reason = "stream_interrupted" if isinstance(error, ProviderError) else error.reason
        trace.event("stream_interrupted", error=str(error), chars_sent=len(partial))
        trace.output = partial
        trace.model = trace.attempts[-1].model if trace.attempts else None
        result = self._result(call, partial, trace.model, None, None)
        self._degrade(trace, result, reason)
        return StreamChunk(done=True, result=result, error=str(error), degraded=True, reason=reason)
