"""``POST /v1/chat/completions``: the OpenAI wire format on the feature a request names.

The request's ``model`` names a feature (or one of its ``aliases``, or ``feature:variant``);
the caller's messages run through the feature's pipeline (guards, budgets, traces, failure
path) and the answer comes back in the shape the ``openai`` SDK parses, with the model that
answered as ``model`` (:func:`tether.gateway.wire.answering_model`).

``n`` choices are ``n`` runs of the feature, started together: each is guarded and traced on
its own, ``choices[i]`` is run ``i``, usage is summed and ``tether.trace_ids`` lists every
trace. Streamed, each choice's chunks carry its ``index`` and arrive as its run produces them;
the stream fails before any content (a proper status) if any run fails before its first chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tether.errors import TetherError
from tether.gateway import wire
from tether.gateway.asgi import Handler
from tether.gateway.errors import envelope, internal_envelope
from tether.gateway.http import (
    TRACE_KEY,
    caller,
    error_response,
    read_body,
    require_json,
    started_trace,
    tether_headers,
)
from tether.pipeline.result import Result, StreamChunk
from tether.telemetry.trace import Trace

if TYPE_CHECKING:
    from tether.gateway.runtime import GatewayRuntime

log = logging.getLogger("tether.gateway")
Chunks = AsyncIterator[StreamChunk]
T = TypeVar("T")


class _Starts:
    """The ``on_start`` of each of a request's runs: every run's trace is kept (by choice);
    the first run's is the request's (its id on the response, the 500 path's trace), and
    each trace names the request fields that were dropped."""

    def __init__(self, request: Request, n: int, dropped: list[str]) -> None:
        self.request = request
        self.traces: list[Trace | None] = [None] * n
        self.dropped = dropped

    def hook(self, index: int) -> Callable[[Trace], None]:
        def started(trace: Trace) -> None:
            self.traces[index] = trace
            if index == 0:
                self.request.scope[TRACE_KEY] = trace
            if self.dropped:
                trace.event("fields_dropped", fields=self.dropped)

        return started

    def first(self) -> Trace | None:
        return next((t for t in self.traces if t is not None), None)


def chat_handler(runtime: GatewayRuntime) -> Handler:
    """``POST /v1/chat/completions`` on ``runtime``'s pipeline."""

    async def chat_completions(request: Request) -> Response:
        key = await runtime.auth.key(request.headers)
        require_json(request.headers)
        body = await read_body(request, runtime.settings.max_body_bytes)
        chat = wire.parse_body(wire.ChatRequest, body)
        feature, _, _variant = chat.model.partition(":")
        runtime.auth.check_scope(key, runtime.tether.pipeline.canonical(feature))
        # the caller's conversation and the fields that pass through (those dropped named on
        # the trace); the SDK caps ``max_tokens`` at the feature's
        extra, dropped = wire.passed_extra(chat)
        variables: dict[str, Any] = {"message": wire.last_user_text(chat)}
        variables.update(wire.template_variables(chat))
        asked = wire.to_model_request(chat, extra)
        n = chat.n or 1
        starts = _Starts(request, n, dropped)
        tether = runtime.tether
        options: dict[str, Any] = {"request": asked, "metadata": chat.metadata}
        options.update(caller(request.headers, key, chat.user))
        if chat.stream:
            streams: list[Chunks] = [
                tether.stream(feature, variables, on_start=starts.hook(i), **options)
                for i in range(n)
            ]
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return await _stream(request, streams, starts, chat.model, include_usage)
        runs = [
            tether.run(feature, variables, on_start=starts.hook(i), **options) for i in range(n)
        ]
        outcomes = await _together(runs)
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if isinstance(failed, TetherError):
            return error_response(failed, started_trace(request) or starts.first())
        if failed is not None:
            raise failed
        results = [o for o in outcomes if isinstance(o, Result)]
        degraded = next((r for r in results if r.degraded), None)
        first = starts.first()
        assert first is not None  # a result comes from a call that started
        headers = tether_headers(
            first,
            degraded is not None,
            degraded.reason if degraded else None,
            degraded.retry_after_s if degraded else None,
        )
        return JSONResponse(wire.completion(results, chat.model), headers=headers)

    return chat_completions


async def _together(awaitables: Sequence[Awaitable[T]]) -> list[T | BaseException]:
    """Each awaitable's outcome, run concurrently; one alone is awaited right here (in the
    handler's own task and context, as a call without ``n`` always was). A tether error is
    an outcome, anything else raises."""
    if len(awaitables) == 1:
        try:
            return [await awaitables[0]]
        except TetherError as exc:
            return [exc]
    return await asyncio.gather(*awaitables, return_exceptions=True)


async def _first_chunks(streams: list[Chunks]) -> list[StreamChunk] | TetherError:
    """Each run's first chunk (read together), or the first run's error (every stream is
    then closed)."""
    firsts = await _together([anext(s) for s in streams])
    failed = next((f for f in firsts if isinstance(f, BaseException)), None)
    if failed is None:
        return [f for f in firsts if isinstance(f, StreamChunk)]
    for stream in streams:
        await _close(stream)
    if isinstance(failed, TetherError):
        return failed
    raise failed


async def _stream(
    request: Request,
    streams: list[Chunks],
    starts: _Starts,
    requested: str,
    include_usage: bool,
) -> Response:
    """Read each run's first chunk before answering, so a failure before any content (the
    call not starting, too) still gets a proper status (or a degraded header) instead of a
    broken stream."""
    firsts = await _first_chunks(streams)
    if isinstance(firsts, TetherError):
        return error_response(firsts, started_trace(request) or starts.first())
    trace = starts.first()
    assert trace is not None  # the first chunks came from started calls
    degraded = next((f for f in firsts if f.degraded), None)
    headers = tether_headers(trace, degraded is not None, degraded.reason if degraded else None)
    headers["cache-control"] = "no-cache"
    models = [wire.stream_model(f, requested) for f in firsts]
    body = _Relay(trace, models, include_usage).events(firsts, streams)
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


class _Single:
    """``(0, chunk)`` pairs of one stream. The stream is closed before its last chunk is
    handed on: the pipeline then gives the trace to the sink (the crash journal) before the
    caller sees the end of the answer."""

    def __init__(self, first: StreamChunk, stream: Chunks) -> None:
        self.pending: StreamChunk | None = first
        self.stream = stream

    async def next(self) -> tuple[int, StreamChunk] | None:
        chunk = self.pending
        self.pending = None
        if chunk is None:
            chunk = await anext(self.stream, None)
        if chunk is None:
            return None
        if chunk.done:
            await _close(self.stream)
        return 0, chunk

    async def aclose(self) -> None:
        await _close(self.stream)


class _Merge:
    """``(index, chunk)`` pairs of several streams, as each produces them. Each stream is read
    by a task of its own; closing the merge cancels the tasks and closes the streams. A
    stream's end is handed on once it has ended (its trace given to the sink)."""

    def __init__(self, firsts: list[StreamChunk], streams: list[Chunks]) -> None:
        self.streams = streams
        self.queue: asyncio.Queue[tuple[int, StreamChunk | BaseException | None]] = asyncio.Queue()
        for i, first in enumerate(firsts):
            self.queue.put_nowait((i, first))
        self.tasks = [asyncio.ensure_future(self._pump(i, s)) for i, s in enumerate(streams)]
        self.live = len(streams)

    async def _pump(self, index: int, stream: Chunks) -> None:
        try:
            async for chunk in stream:
                await self.queue.put((index, chunk))
        except BaseException as exc:  # handed to the reader, which raises it
            await self.queue.put((index, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        await self.queue.put((index, None))

    async def next(self) -> tuple[int, StreamChunk] | None:
        """The next chunk of any stream; None once every stream ended."""
        while self.live:
            index, item = await self.queue.get()
            if item is None:
                self.live -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            return index, item
        return None

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for stream in self.streams:
            await _close(stream)


class _Relay:
    """The SSE events of a streamed answer of one or more choices."""

    def __init__(self, trace: Trace, models: list[str], include_usage: bool) -> None:
        self.trace = trace
        self.models = models
        self.include_usage = include_usage
        self.fingerprint: str | None = None

    def _chunk(self, index: int, delta: dict[str, Any] | None, **extra: Any) -> bytes:
        return wire.sse(
            wire.chunk(
                self.trace.id,
                self.models[index],
                delta,
                index=index,
                system_fingerprint=self.fingerprint,
                **extra,
            )
        )

    async def events(
        self, firsts: list[StreamChunk], streams: list[Chunks]
    ) -> AsyncIterator[bytes]:
        source = _Merge(firsts, streams) if len(streams) > 1 else _Single(firsts[0], streams[0])
        results: list[Result] = []
        self.fingerprint = next(
            (f.system_fingerprint for f in firsts if f.system_fingerprint), None
        )
        try:
            for index in range(len(streams)):
                yield self._chunk(index, {"role": "assistant", "content": ""})
            while (pending := await source.next()) is not None:
                index, piece = pending
                self.fingerprint = piece.system_fingerprint or self.fingerprint
                if piece.done and piece.error is not None:
                    for broken in self._broken(piece):
                        yield broken
                    return
                if piece.done:
                    assert piece.result is not None
                    results.append(piece.result)
                    yield self._finish(index, piece.result)
                elif (event := self._delta(index, piece)) is not None:
                    yield event
            for end in self._end(results):
                yield end
        except TetherError as exc:
            _, body = envelope(exc)
            yield wire.sse(body)
            yield wire.sse("[DONE]")
        except Exception:  # the answer has started: an explicit error event, never a cut
            log.exception("unhandled error in a stream (trace %s)", self.trace.id)
            yield wire.sse(internal_envelope(self.trace.id))
            yield wire.sse("[DONE]")
        finally:
            await source.aclose()

    def _delta(self, index: int, piece: StreamChunk) -> bytes | None:
        delta: dict[str, Any] = {"content": piece.text} if piece.text else {}
        if piece.tool_calls:
            delta["tool_calls"] = wire.tool_delta(piece.tool_calls)
        if piece.refusal:
            delta["refusal"] = piece.refusal
        if not delta:
            return None
        return self._chunk(index, delta, logprobs=piece.logprobs)

    def _finish(self, index: int, result: Result) -> bytes:
        finish = result.finish_reason or "stop"
        return self._chunk(index, {}, finish_reason=finish, tether=wire.tether_facts(result))

    def _broken(self, last: StreamChunk) -> list[bytes]:
        """Never a silent truncation: an explicit error event the SDKs raise on."""
        return wire.broken_stream(last)

    def _end(self, results: list[Result]) -> list[bytes]:
        events = []
        if self.include_usage:
            usage = wire.wire_usage(wire.summed_usage(results))
            events.append(self._chunk(0, None, usage=usage))
        events.append(wire.sse("[DONE]"))
        return events


async def _close(stream: Chunks) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
