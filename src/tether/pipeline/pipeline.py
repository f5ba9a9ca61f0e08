"""The request pipeline, top to bottom.

    start   the feature's request (its prompt, or a caller's conversation under its system
            prompt); the VariantPicker decides the call's variant (trace.variant)
    before  the feature's stages in slot order (:mod:`tether.pipeline.stages`):
                rollout -> input guards -> budget reserve -> review -> output guards -> cache
                lookup (a stage may answer: the model is not called); a check a stage
                deferred (Call.defer: the rate limit's round trip, alongside the budget's)
                has its verdict before the model is asked or a stage's answer is used
    model   the feature's Chain: per model WithRetry(WithBreaker(Recorded(WithTimeout(
            wrappers(model))))), fallback across them (:mod:`tether.resilience.chain`)
    after   the same stages in reverse: cache store -> output guards -> review -> budget settle
    result  the answer as the stages left it, and the trace's totals
    every step appends to the call's trace; when the call ends the trace keeps what was asked
    (:mod:`tether.pipeline.capture`) and goes to the sink off the hot path
    any failure -> the stages' ``failed`` (in reverse), then the feature's failure path
    (on_failure: a static answer, another feature within the same deadline, or raise), never a
    bare error; a static answer to a request that needs a tool call or JSON is respond_json
    shaped for it, or StructuredOutputUnavailable (:mod:`tether.pipeline.structured`)

There is one path for calls (:meth:`Pipeline.run`) and one for streams (:meth:`Pipeline.stream`);
a feature without guards or stages of its own has no stages and pays for none. A stream is
relayed as the model produces it, through the stages' stream filters (output guards redact on
the fly, a blocking verdict ends it with an explicit error), unless a stage must see the whole
answer first (output guards that may re-ask or fall back) or a stage answered: then it comes in
one piece once every ``after`` ran.

A caller's own mistake (an unknown feature, a missing template variable) raises
:class:`~tether.errors.InvalidRequest` instead of taking the failure path: the failure path is
for the system around the model. Guards in detail: :mod:`tether.pipeline.guarding` and
docs/guards.md; the whole picture: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, Coroutine, Mapping
from typing import Any, NoReturn

from tether.errors import (
    FeatureFailed,
    FeatureNotFound,
    InvalidRequest,
    ProviderError,
    StructuredOutputUnavailable,
    TetherError,
)
from tether.pipeline.call import Answer, Call, Caller
from tether.pipeline.feature import CompiledFeature
from tether.pipeline.result import Result, StreamChunk
from tether.pipeline.stages import Baseline, StreamFilter, VariantPicker
from tether.pipeline.structured import DoesNotFit, static_answer
from tether.resilience.streams import close_quietly
from tether.telemetry.sink import TraceSink
from tether.telemetry.trace import Trace
from tether.types import ModelChunk, ModelRequest, ModelResponse, ToolCallDelta, Usage

__all__ = ["Call", "Pipeline"]
log = logging.getLogger("tether.pipeline")


class Pipeline:
    def __init__(
        self,
        features: Mapping[str, CompiledFeature],
        sink: TraceSink,
        picker: VariantPicker | None = None,
    ) -> None:
        self.features = features
        self.sink = sink
        self.picker: VariantPicker = picker or Baseline()
        self.aliases = {a: name for name, f in features.items() for a in f.config.aliases}
        self._ending: set[asyncio.Task[None]] = set()  # endings outliving a cancelled caller

    def canonical(self, name: str) -> str:
        """The feature ``name`` stands for (a feature's alias: that feature's own name), or
        ``name`` when it is neither a feature nor an alias."""
        return name if name in self.features else self.aliases.get(name, name)

    def feature(self, name: str) -> CompiledFeature:
        """The feature called ``name``, or whose ``aliases`` include it."""
        try:
            return self.features[self.canonical(name)]
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
        caller: Caller | None = None,
        variant: str | None = None,
    ) -> Call:
        """Resolve the feature, pick its variant and build its request (raises InvalidRequest
        on caller error). ``request`` is a caller's own conversation (the gateway's chat
        completions), which is left as it was. ``caller`` says who the call is for (tenant,
        API key, whether the cache may answer); its ``user`` is ``user``. ``variant`` runs that
        declared variant instead of the picker's choice (an evaluation of a variant)."""
        compiled = self.feature(feature)
        if compiled.config.kind != "chat":
            raise InvalidRequest(
                f"feature {feature!r} is an {compiled.config.kind} feature: it embeds texts, it "
                "does not answer messages; call it with POST /v1/embeddings or Tether.embed",
                param="model",
                reason="wrong_feature_kind",
            )
        variables = variables or {}
        trace, caller = self.trace_for(compiled, user, metadata, caller, variant)
        compiled = compiled.variant(trace.variant)
        if request is None:
            built = compiled.build_request(variables)
            return Call.begin(compiled, trace, built, variables, caller=caller)
        built = _forwarded(compiled.adopt(request, variables), compiled, user, metadata)
        asked = request.max_tokens
        if asked is not None and built.max_tokens != asked:
            trace.event("max_tokens_capped", asked=asked, limit=built.max_tokens)
        return Call.begin(compiled, trace, built, variables, caller=caller)

    def trace_for(
        self,
        compiled: CompiledFeature,
        user: str | None,
        metadata: Mapping[str, Any] | None,
        caller: Caller | None,
        variant: str | None = None,
    ) -> tuple[Trace, Caller]:
        """A new call's trace (who it is for, the variant: ``variant`` when given, else the
        picker's choice, and that variant's config version) and its caller, whose ``user`` is
        ``user``."""
        if caller is None:
            caller = Caller(user=user)
        elif caller.user != user:
            caller = dataclasses.replace(caller, user=user)
        trace = Trace(feature=compiled.name, user=user, metadata=dict(metadata or {}))
        trace.tenant, trace.key_id = caller.tenant, caller.key
        if variant is not None:
            compiled.variant(variant, strict=True)  # a variant it does not declare: refused
        trace.variant = self.picker.pick(compiled, trace) if variant is None else variant
        trace.config_version = compiled.variant(trace.variant).version
        return trace, caller

    # ------------------------------------------------------------------ the stages

    async def _before(self, call: Call) -> Answer | None:
        """Each stage's ``before`` in order; the first answer ends the walk (that stage and
        the ones after it are not entered). Then the verdicts of the checks stages deferred
        (:meth:`Call.defer`): a refusal there comes first, even before a later stage's."""
        answer = None
        try:
            for stage in call.feature.stages:
                answer = await stage.before(call)
                if answer is not None:
                    break
                call.entered += 1
        except TetherError:
            await call.verdicts()
            raise
        except BaseException:
            for check in call.deferred:
                check.cancel()
            raise
        await call.verdicts()
        return answer

    async def _through(self, call: Call, answer: Answer | None) -> Answer:
        """The model's answer, unless a stage gave one, back out through the stages."""
        if answer is None:
            answer = Answer.of(await call.model.complete(call.request, call.ctx))
        return await self._after(call, answer)

    async def _after(
        self, call: Call, answer: Answer, filters: Mapping[int, StreamFilter] | None = None
    ) -> Answer:
        """The entered stages' ``after`` in reverse (a stage that filtered the stream: its
        filter's answer). A stage that raises gets no ``failed``; the ones outside it do."""
        stages = call.feature.stages
        while call.entered:
            call.entered -= 1
            stream_filter = filters.get(call.entered) if filters else None
            if stream_filter is not None:
                answer = stream_filter.answer(answer)
            else:
                answer = await stages[call.entered].after(call, answer)
        return answer

    async def _failed(self, call: Call, error: TetherError) -> None:
        """The entered stages' ``failed``, in reverse (once: the count goes to zero)."""
        stages = call.feature.stages
        while call.entered:
            call.entered -= 1
            await stages[call.entered].failed(call, error)

    # ------------------------------------------------------------------ one-shot

    async def run(self, call: Call) -> Result:
        try:
            return await self._run(call)
        finally:
            await self._to_the_end(call, self._finish(call))

    async def _to_the_end(self, call: Call, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (a call's ending: the stages' settle, the trace to the sink) to its end
        even when the caller's task is being cancelled: a client that disconnects cancels the
        gateway's task, and a settle or a trace cut short by that would leave a budget
        reserved and the call untraced. The caller still sees its cancellation. A call whose
        stages all had their ``after`` owes no hook that waits: its ending runs right here."""
        if not call.entered:
            await work
            return
        task = asyncio.ensure_future(work)
        self._ending.add(task)
        task.add_done_callback(self._ended)
        await asyncio.shield(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._ending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a call's ending failed: %s", error, exc_info=error)

    async def drain(self) -> None:
        """Wait for the endings still running (calls whose caller was cancelled)."""
        while self._ending:
            await asyncio.wait(list(self._ending))

    async def _run(self, call: Call) -> Result:
        try:
            answer = await self._through(call, await self._before(call))
        except TetherError as exc:
            if exc.to_caller:
                await self._refuse(call, exc)
            return await self._failure_path(call, exc)
        return self._answered(call, answer)

    async def _refuse(self, call: Call, error: TetherError) -> NoReturn:
        """An error meant for the caller (a rate limit, a budget that rejects): the stages'
        ``failed``, the trace says why, and the caller gets the error, not the failure path."""
        await self._failed(call, error)
        trace = call.trace
        trace.event("refused", reason=error.reason, error=str(error))
        trace.status, trace.reason = "error", error.reason
        raise error

    def _answered(self, call: Call, answer: Answer) -> Result:
        """The answer as the stages left it (the trace keeps placeholders where redacted)."""
        trace, response = call.trace, answer.response
        trace.status = "ok"
        trace.output = answer.traced
        answered = [a for a in trace.attempts if a.status == "ok"]
        trace.model = answered[-1].model if answered else f"{response.provider}:{response.model}"
        result = self._result(
            call, answer.text, trace.model, response.finish_reason, response.tool_calls
        )
        result.value = answer.value
        result.response_model = response.model or None
        result.refusal = response.refusal
        result.system_fingerprint = response.system_fingerprint
        if answer.text == response.text:  # a guard's rewrite has no logprobs of its own
            result.logprobs = response.logprobs
        return result

    async def _failure_path(self, call: Call, error: TetherError) -> Result:
        """The feature's designed answer for when the model could not give one."""
        await self._failed(call, error)
        on_failure = call.feature.config.on_failure
        trace = call.trace
        nested = self._failure_feature(call, error)
        if nested is not None:
            try:
                result = await self._run(nested)
            finally:
                await self._abandoned(nested)
            return self._degrade(trace, result, error.reason, error.retry_after_s)
        if on_failure.static:
            return self._static_answer(call, error)
        self._raise_failed(call, error)

    def _static_answer(self, call: Call, error: TetherError) -> Result:
        """``on_failure.respond`` / ``respond_json``, shaped for what the request needs (a
        tool call, JSON: :mod:`tether.pipeline.structured`); StructuredOutputUnavailable when
        it needs structure the feature's ``respond_json`` cannot give."""
        on_failure, trace = call.feature.config.on_failure, call.trace
        try:
            answer, need = static_answer(call.request, on_failure.respond, on_failure.respond_json)
        except DoesNotFit as exc:
            trace.event(
                "failure_path",
                via="structured_unavailable",
                reason=error.reason,
                error=str(error),
                problem=str(exc),
            )
            trace.status, trace.degraded, trace.reason = "error", True, error.reason
            raise StructuredOutputUnavailable(
                f"feature {call.feature.name!r} failed ({error.reason}: {error}) and its failure "
                f"answer cannot be given to this request: {exc}",
                cause=error,
            ) from error
        via = "respond" if need is None and on_failure.respond is not None else "respond_json"
        trace.event("failure_path", via=via, reason=error.reason, error=str(error))
        tool_calls = None if answer.tool_call is None else [answer.tool_call]
        trace.output = answer.text if answer.tool_call is None else answer.tool_call.arguments
        result = self._result(call, answer.text, None, answer.finish_reason, tool_calls)
        return self._degrade(trace, result, error.reason, error.retry_after_s)

    @staticmethod
    def _raise_failed(call: Call, error: TetherError) -> NoReturn:
        """The failure path's last resort, ``on_failure: {raise: true}``: FeatureFailed."""
        trace = call.trace
        trace.event("failure_path", via="raise", reason=error.reason, error=str(error))
        trace.status, trace.degraded, trace.reason = "error", True, error.reason
        raise FeatureFailed(
            f"feature {call.feature.name!r} failed ({error.reason}): {error}", cause=error
        ) from error

    def _failure_feature(
        self, call: Call, error: TetherError, request: ModelRequest | None = None
    ) -> Call | None:
        """The call of the feature ``on_failure.feature`` names (the event recorded), if any:
        on the same trace, within what is left of this call's deadline. It is asked its own
        prompt with the call's variables, or ``request`` (an embedding call's inputs); the
        call's ``tools``, ``tool_choice`` and ``response_format`` go with it, so it answers in
        the shape the caller asked for (its chain skips a model that cannot, its own static
        answer follows them: :mod:`tether.pipeline.structured`)."""
        name = call.feature.config.on_failure.feature
        if name is None:
            return None
        call.trace.event(
            "failure_path", via="feature", feature=name, reason=error.reason, error=str(error)
        )
        other = self.feature(name)
        if request is None:
            asked = call.request
            request = dataclasses.replace(
                other.build_request(call.variables),
                tools=asked.tools,
                tool_choice=asked.tool_choice,
                response_format=asked.response_format,
            )
        return Call.begin(
            other, call.trace, request, call.variables, call.ctx.deadline, call.caller
        )

    @staticmethod
    def _degrade(
        trace: Trace, result: Result, reason: str, retry_after_s: float | None = None
    ) -> Result:
        """``result`` as the failure path's answer; ``retry_after_s``: when its cause may
        pass (a budget's period end, a rate limit), for the caller."""
        trace.status, trace.degraded, trace.reason = "degraded", True, reason
        result.degraded, result.reason = True, reason
        if retry_after_s is not None:
            result.retry_after_s = retry_after_s
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

    async def _abandoned(self, call: Call) -> None:
        """The stages still owed a hook when a call ends without an answer or a failure path
        (cancelled, a caller that stopped reading, a stage's own bug) get ``failed``."""
        if call.entered:
            aborted = TetherError(
                "the call ended before its answer (cancelled, or the caller stopped reading)",
                reason="cancelled",
            )
            await self._failed(call, aborted)

    async def _finish(self, call: Call) -> None:
        await self._abandoned(call)
        trace = call.trace
        if trace.status == "running":
            trace.status = "error"
        trace.latency_ms = trace.latency_ms or trace.now_ms()
        if not trace.usage.total_tokens:  # a call that ended without a result: its attempts
            trace.usage = sum((a.usage for a in trace.attempts), Usage())
            trace.cost_usd = sum(a.cost_usd for a in trace.attempts)
        guards = call.guards
        if guards is None:
            call.feature.capture.record(trace, call.request, call.variables)
        else:
            call.feature.capture.record(
                trace, call.request, call.variables, guards.ctx.redactor, guards.pii_clean
            )
        await self.sink.write(trace)

    # ------------------------------------------------------------------ streaming

    async def stream(self, call: Call) -> AsyncGenerator[StreamChunk, None]:
        chunks = self._stream(call)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            # a caller that stops reading closes the model's stream too; a cancelled one
            # (a client gone) still gets the stream closed, the stages settled, the trace kept
            await self._to_the_end(call, _closed_then(chunks, self._finish(call)))

    async def _stream(self, call: Call) -> AsyncGenerator[StreamChunk, None]:
        """The stages' ``before``, then the answer on the fly (through the stages' filters) or,
        when a stage answered or must see the whole answer, in one piece."""
        pieces: AsyncGenerator[StreamChunk, None]
        try:
            answer = await self._before(call)
            if answer is not None or any(s.whole_answer for s in call.feature.stages):
                answer = await self._through(call, answer)
        except TetherError as exc:
            if exc.to_caller:
                await self._refuse(call, exc)
            pieces = self._stream_failure(call, exc)
        else:
            pieces = self._relay(call) if answer is None else self._one_piece(call, answer)
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()  # a caller that stops reading closes every stream inside

    async def _relay(self, call: Call) -> AsyncGenerator[StreamChunk, None]:
        """Hand the model's deltas on, through the stages' filters (innermost first: the
        output guards' holds back a tail, redacts, and raises GuardBlocked on a blocking
        verdict); the stages' ``after`` once the stream ended."""
        stages = call.feature.stages
        filters = {i: f for i, s in enumerate(stages) if (f := s.stream_filter(call)) is not None}
        inner_first = [filters[i] for i in sorted(filters, reverse=True)]
        source = call.model.stream(call.request, call.ctx)
        parts: list[str] = []  # the model's text, as it came
        sent = False  # whether anything reached the caller
        last = ModelChunk()
        try:
            async for chunk in source:
                if chunk.has_content:
                    parts.append(chunk.text)
                    text = await _feed(inner_first, chunk.text) if inner_first else chunk.text
                    if text or chunk.tool_calls or chunk.refusal:
                        sent = True
                        yield StreamChunk(
                            text=text,
                            tool_calls=chunk.tool_calls,
                            model=chunk.model,
                            # a filter may hold back or rewrite text: its tokens' logprobs
                            # would tell what it hid
                            logprobs=None if inner_first else chunk.logprobs,
                            refusal=chunk.refusal,
                            system_fingerprint=chunk.system_fingerprint,
                        )
                if chunk.finish_reason is not None or chunk.usage is not None:
                    last = chunk
            tail = await _flush(inner_first) if inner_first else ""
            if tail:
                sent = True
                yield StreamChunk(text=tail)
            answer = await self._after(call, _streamed(parts, last), filters)
        except TetherError as exc:
            if not sent:
                failure = self._stream_failure(call, exc)
                try:
                    async for piece in failure:
                        yield piece
                finally:
                    await failure.aclose()
                return
            shown = _streamed(parts, last)
            for stream_filter in inner_first:
                shown = stream_filter.answer(shown)
            yield await self._interrupted(call, exc, shown)
            return
        finally:
            await close_quietly(source)
        yield StreamChunk(done=True, result=self._answered(call, answer))

    async def _one_piece(self, call: Call, answer: Answer) -> AsyncGenerator[StreamChunk, None]:
        """An answer the stages saw whole before the caller sees any of it."""
        result = self._answered(call, answer)
        tools = [
            ToolCallDelta(i, t.id, t.name, t.arguments)
            for i, t in enumerate(answer.response.tool_calls or [])
        ]
        yield StreamChunk(
            text=result.output,
            tool_calls=tools or None,
            model=result.response_model or "",
            logprobs=result.logprobs,
            refusal=result.refusal,
            system_fingerprint=result.system_fingerprint,
        )
        yield StreamChunk(done=True, result=result)

    async def _stream_failure(
        self, call: Call, error: TetherError
    ) -> AsyncGenerator[StreamChunk, None]:
        await self._failed(call, error)
        nested = self._failure_feature(call, error)
        if nested is not None:
            chunks = self._stream(nested)
            try:
                async for chunk in chunks:
                    if chunk.result is not None and not chunk.result.degraded:
                        self._degrade(call.trace, chunk.result, error.reason, error.retry_after_s)
                    if not chunk.degraded:
                        chunk.degraded, chunk.reason = True, error.reason
                    yield chunk
            finally:
                await chunks.aclose()
                await self._abandoned(nested)
            return
        result = await self._failure_path(call, error)  # respond, or raise FeatureFailed
        calls = result.tool_calls or []
        tools = [ToolCallDelta(i, t.id, t.name, t.arguments) for i, t in enumerate(calls)]
        yield StreamChunk(
            text=result.output, tool_calls=tools or None, degraded=True, reason=result.reason
        )
        yield StreamChunk(done=True, result=result, degraded=True, reason=result.reason)

    async def _interrupted(self, call: Call, error: TetherError, shown: Answer) -> StreamChunk:
        """A stream that broke (or a guard stopped) after content reached the caller: say so
        explicitly. ``shown`` is what the caller saw (its ``traced``: with placeholders)."""
        await self._failed(call, error)
        trace = call.trace
        reason = "stream_interrupted" if isinstance(error, ProviderError) else error.reason
        trace.event("stream_interrupted", error=str(error), chars_sent=len(shown.text))
        trace.output = shown.traced
        trace.model = trace.attempts[-1].model if trace.attempts else None
        result = self._result(call, shown.text, trace.model, None, None)
        self._degrade(trace, result, reason)
        return StreamChunk(done=True, result=result, error=str(error), degraded=True, reason=reason)


async def _closed_then(
    chunks: AsyncGenerator[StreamChunk, None], then: Coroutine[Any, Any, None]
) -> None:
    """Close ``chunks``, then run ``then`` whatever closing raised."""
    try:
        await chunks.aclose()
    finally:
        await then


def _forwarded(
    request: ModelRequest,
    feature: CompiledFeature,
    user: str | None,
    metadata: Mapping[str, Any] | None,
) -> ModelRequest:
    """A caller's request with its ``user`` and ``metadata`` for the upstream, as far as the
    feature's ``forward`` lets them go (the providers map them to their API's fields)."""
    forward = feature.config.forward
    extra = dict(request.extra)
    if forward.user and user is not None:
        extra["user"] = user
    if forward.metadata and metadata:
        extra["metadata"] = dict(metadata)
    if extra == request.extra:
        return request
    return dataclasses.replace(request, extra=extra)


async def _feed(filters: list[StreamFilter], text: str) -> str:
    """A delta through the filters, innermost first (a filter holding it back stops it)."""
    for stream_filter in filters:
        text = await stream_filter.feed(text)
        if not text:
            break
    return text


async def _flush(filters: list[StreamFilter]) -> str:
    """The held-back tails, each through the filters outside the one that held it."""
    carried = ""
    for stream_filter in filters:
        if carried:
            carried = await stream_filter.feed(carried)
        carried += await stream_filter.finish()
    return carried


def _streamed(parts: list[str], last: ModelChunk) -> Answer:
    """The streamed answer (or what came of it), whole."""
    response = ModelResponse(
        "".join(parts),
        last.usage or Usage(),
        last.model,
        last.provider,
        finish_reason=last.finish_reason,
        system_fingerprint=last.system_fingerprint,
    )
    return Answer.of(response)
