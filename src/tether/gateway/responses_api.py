"""``POST /v1/responses`` (and ``GET`` / ``DELETE /v1/responses/{response_id}``): the OpenAI
Responses API on the feature a request names.

A Responses request is translated to the chat request the chat endpoint would build
(:mod:`tether.gateway.responses_wire`) and runs through the same ``Tether.run`` /
``Tether.stream``: the same guards (``instructions`` and ``function_call_output`` items are
caller messages like any other), budgets, traces and failure path. The answer comes back as a
``response`` object whose ``model`` is the model that answered.

Streaming (``stream: true``) sends server-sent events with ``event:`` lines in the documented
order, each with a ``sequence_number``::

    response.created · response.in_progress
    response.output_item.added (message) · response.content_part.added
      response.output_text.delta … · response.output_text.done
      response.content_part.done · response.output_item.done
    response.output_item.added (function_call)
      response.function_call_arguments.delta … · .done · response.output_item.done
    response.completed (or response.incomplete: the full response, usage included)

A failure before the first content is an HTTP error status, as for chat; after it, an
``error`` event ends the stream (never a silent cut).

Storage. Unless ``store: false``, the response is written to tether's store before it is
returned (``response.completed`` is sent after the write): its input items as the model saw
them (earlier turns included) and its output, kept as the feature's trace capture keeps text
(a feature that redacts PII stores the redacted text the model saw; text past
``trace.max_chars`` is cut the same way). A feature whose trace captures ``metadata`` only keeps
no text, so its responses are not stored (``"store": false`` in the response says so).
``previous_response_id`` continues a stored response: its input and output go before this
request's input. Only the API key that stored a response can read or continue it; for any
other key it does not exist (404 ``response_not_found``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tether.errors import FeatureNotFound, ResponseNotFound, TetherError
from tether.gateway import responses_wire as rw
from tether.gateway import wire
from tether.gateway.asgi import Handler
from tether.gateway.errors import envelope
from tether.gateway.http import (
    caller,
    error_response,
    read_body,
    remember,
    require_json,
    result_headers,
    started_trace,
    tether_headers,
)
from tether.pipeline.result import Result, StreamChunk
from tether.store.responses import StoredResponse
from tether.types import ModelRequest, ToolCall, ToolCallDelta

if TYPE_CHECKING:
    from tether.gateway.runtime import GatewayRuntime
    from tether.store.keys import ApiKey

log = logging.getLogger("tether.gateway")


@dataclass(slots=True)
class _Call:
    """One Responses request, parsed and translated."""

    req: rw.ResponsesRequest
    feature: str
    asked: ModelRequest
    variables: dict[str, Any]
    dropped: list[str]
    owner: str | None
    who: dict[str, Any]  # user, tenant, key, cache: :func:`tether.gateway.http.caller`
    created_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def own_messages(self) -> int:
        """How many of the request's messages are the conversation (not ``instructions``)."""
        return len(self.asked.messages) - (1 if self.req.instructions else 0)


def _owner(key: ApiKey | None) -> str | None:
    return None if key is None else key.id


def _canonical(runtime: GatewayRuntime, name: str) -> str:
    """The feature's own name (an alias resolved), or ``name`` when no feature has it (the
    scope check then answers before the call reports the unknown name)."""
    try:
        return runtime.tether.pipeline.feature(name).name
    except FeatureNotFound:
        return name


async def _prepare(runtime: GatewayRuntime, request: Request) -> _Call:
    key = await runtime.auth.key(request.headers)
    require_json(request.headers)
    body = await read_body(request, runtime.settings.max_body_bytes)
    req = wire.parse_body(rw.ResponsesRequest, body)
    feature = req.model.partition(":")[0]
    runtime.auth.check_scope(key, _canonical(runtime, feature))
    who = caller(request.headers, key, req.user)
    extra, dropped = rw.passed_extra(req)
    history = []
    if req.previous_response_id is not None:
        earlier = await asyncio.to_thread(
            runtime.store.responses.get, req.previous_response_id, _owner(key)
        )
        if earlier is None:
            raise ResponseNotFound(
                f"previous_response_id: no stored response {req.previous_response_id!r} for "
                "this API key (it was stored with store: false, by another key, or never); "
                "send the whole conversation as input instead",
                param="previous_response_id",
            )
        history = rw.history_messages([*earlier.input, *earlier.output])
    asked = rw.to_model_request(req, history, extra)
    variables = rw.template_variables(req, asked)
    return _Call(req, feature, asked, variables, dropped, _owner(key), who)


def _kept_input(result: Result) -> dict[str, Any] | None:
    """What the call's trace captured of its request, when the capture keeps text (None for
    a feature whose trace captures ``metadata`` only)."""
    captured = result.trace.input if result.trace is not None else None
    if captured is None or captured.get("capture") == "metadata":
        return None
    return captured


def _stored(call: _Call, result: Result, response: dict[str, Any]) -> StoredResponse | None:
    """What the store keeps of an answered call: its text as the feature's trace capture
    kept it (None when that is no text)."""
    captured = _kept_input(result)
    if captured is None or result.trace is None:
        return None
    n = call.own_messages
    messages = rw.captured_messages(captured["messages"][-n:] if n else [])
    output = rw.output_items(result, text=result.trace.output or "")
    return StoredResponse(
        id=response["id"],
        owner=call.owner,
        feature=result.feature,
        trace_id=result.trace_id,
        input=rw.message_items(messages),
        output=output,
        response={**response, "output": output},
    )


async def _keep(runtime: GatewayRuntime, call: _Call, result: Result, body: dict[str, Any]) -> None:
    """Store the response (when it is to be stored) before the caller hears of it."""
    if not body["store"]:
        return
    stored = _stored(call, result, body)
    if stored is not None:
        await asyncio.to_thread(runtime.store.responses.save, stored)


def _final(call: _Call, result: Result, output: list[dict[str, Any]]) -> dict[str, Any]:
    return rw.response_object(
        call.req,
        response_id=f"resp_{result.trace_id}",
        created_at=call.created_at,
        model=wire.answering_model(result, call.req.model),
        result=result,
        output=output,
        stored=call.req.stored and _kept_input(result) is not None,
    )


def responses_handler(runtime: GatewayRuntime) -> Handler:
    """``POST /v1/responses`` on ``runtime``'s pipeline."""

    async def create_response(request: Request) -> Response:
        call = await _prepare(runtime, request)
        started = remember(request, call.dropped)
        options: dict[str, Any] = {
            "request": call.asked,
            "metadata": call.req.metadata,
            "on_start": started,
            **call.who,
        }
        tether = runtime.tether
        if call.req.stream:
            chunks = tether.stream(call.feature, call.variables, **options)
            return await _stream(runtime, request, call, chunks)
        try:
            result = await tether.run(call.feature, call.variables, **options)
        except TetherError as exc:
            return error_response(exc, started_trace(request))
        body = _final(call, result, rw.output_items(result))
        await _keep(runtime, call, result, body)
        return JSONResponse(body, headers=result_headers(request, result))

    return create_response


def retrieve_handler(runtime: GatewayRuntime) -> Handler:
    """``GET /v1/responses/{response_id}``: a stored response, for the key that stored it."""

    async def retrieve_response(request: Request) -> Response:
        key = await runtime.auth.key(request.headers)
        response_id = request.path_params["response_id"]
        stored = await asyncio.to_thread(runtime.store.responses.get, response_id, _owner(key))
        if stored is None:
            raise ResponseNotFound(
                f"no stored response {response_id!r} for this API key", param="response_id"
            )
        return JSONResponse(stored.response)

    return retrieve_response


def delete_handler(runtime: GatewayRuntime) -> Handler:
    """``DELETE /v1/responses/{response_id}``: a stored response deleted, by the key that
    stored it (404 for any other key, as if it did not exist)."""

    async def delete_response(request: Request) -> Response:
        key = await runtime.auth.key(request.headers)
        response_id = request.path_params["response_id"]
        deleted = await asyncio.to_thread(runtime.store.responses.delete, response_id, _owner(key))
        if not deleted:
            raise ResponseNotFound(
                f"no stored response {response_id!r} for this API key", param="response_id"
            )
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})

    return delete_response


async def _stream(
    runtime: GatewayRuntime, request: Request, call: _Call, chunks: AsyncIterator[StreamChunk]
) -> Response:
    """Read the first chunk before answering, so a failure before any content gets a proper
    status (or a degraded header) instead of a broken stream."""
    try:
        first = await anext(chunks)
    except TetherError as exc:
        return error_response(exc, started_trace(request))
    trace = started_trace(request)
    assert trace is not None  # the first chunk came from a started call
    headers = tether_headers(trace, first.degraded, first.reason)
    headers["cache-control"] = "no-cache"
    events = _Events(call, f"resp_{trace.id}", wire.stream_model(first, call.req.model))
    body = events.relay(runtime, first, chunks)
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


@dataclass(slots=True)
class _Open:
    """The output item being streamed: a message (its text so far) or a function call."""

    item: dict[str, Any]
    index: int  # output_index
    text: str = ""
    call: int | None = None  # the tool call's index in the chunks, for a function call


class _Events:
    """One streamed response's events, numbered in order."""

    def __init__(self, call: _Call, response_id: str, model: str) -> None:
        self.call = call
        self.id = response_id
        self.model = model
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.open: _Open | None = None
        self.refusal = ""

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        data = json.dumps(payload, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()

    def _response(self, result: Result | None) -> dict[str, Any]:
        if result is not None:
            return _final(self.call, result, self.output)
        return rw.response_object(
            self.call.req,
            response_id=self.id,
            created_at=self.call.created_at,
            model=self.model,
            result=None,
            output=[],
            stored=self.call.req.stored,
        )

    async def relay(
        self, runtime: GatewayRuntime, first: StreamChunk, rest: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[bytes]:
        yield self.event("response.created", response=self._response(None))
        yield self.event("response.in_progress", response=self._response(None))
        pending: StreamChunk | None = first
        try:
            while pending is not None:
                if pending.done:
                    # the pipeline's stream closes first: it records what the trace captures
                    # (what the store keeps) and hands the trace to the sink
                    close = getattr(rest, "aclose", None)
                    if close is not None:
                        await close()
                    for event in await self._end(runtime, pending):
                        yield event
                    return
                for event in self._chunk(pending):
                    yield event
                pending = await anext(rest, None)
        except TetherError as exc:
            _, body = envelope(exc)
            yield self._error(body["error"])
        except Exception:  # the answer has started: an explicit error event, never a cut
            trace_id = self.id.removeprefix("resp_")
            log.exception("unhandled error in a Responses stream (trace %s)", trace_id)
            yield self._error(
                {
                    "message": f"tether hit an internal error (trace {trace_id}); the gateway "
                    "log has the details",
                    "type": "internal_error",
                    "param": None,
                    "code": "internal_error",
                }
            )
        finally:
            close = getattr(rest, "aclose", None)
            if close is not None:
                await close()

    def _error(self, error: dict[str, Any]) -> bytes:
        """The ``error`` event (its ``error`` object makes the SDKs raise)."""
        return self.event(
            "error",
            code=error.get("code"),
            message=error.get("message"),
            param=error.get("param"),
            error=error,
        )

    def _chunk(self, chunk: StreamChunk) -> list[bytes]:
        events: list[bytes] = []
        if chunk.refusal:
            self.refusal += chunk.refusal
        if chunk.text:
            events += self._text(chunk.text)
        for delta in chunk.tool_calls or []:
            events += self._call_delta(delta)
        return events

    def _text(self, text: str) -> list[bytes]:
        events = []
        if self.open is not None and self.open.call is not None:
            events += self._close()
        if self.open is None:
            events += self._open_message()
        assert self.open is not None
        self.open.text += text
        events.append(
            self.event(
                "response.output_text.delta",
                item_id=self.open.item["id"],
                output_index=self.open.index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _open_message(self) -> list[bytes]:
        item = rw.message_item(f"msg_{self.id.removeprefix('resp_')}", "", None, "in_progress")
        item["content"] = []
        self.open = _Open(item, len(self.output))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": item["id"], "output_index": self.open.index}
        return [
            self.event("response.output_item.added", output_index=self.open.index, item=item),
            self.event("response.content_part.added", **where, content_index=0, part=part),
        ]

    def _call_delta(self, delta: ToolCallDelta) -> list[bytes]:
        events = []
        if self.open is not None and self.open.call != delta.index:
            events += self._close()
        if self.open is None:
            trace_id = self.id.removeprefix("resp_")
            call = ToolCall(delta.id or "", delta.name or "", "")
            item = rw.call_item(f"fc_{trace_id}_{delta.index}", call, "in_progress")
            self.open = _Open(item, len(self.output), call=delta.index)
            events.append(
                self.event("response.output_item.added", output_index=self.open.index, item=item)
            )
        item = self.open.item
        if delta.id and not item["call_id"]:
            item["call_id"] = delta.id
        if delta.name and not item["name"]:
            item["name"] = delta.name
        if delta.arguments:
            self.open.text += delta.arguments
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self.open.index,
                    delta=delta.arguments,
                )
            )
        return events

    def _close(self, status: str = "completed") -> list[bytes]:
        """The ``.done`` events of the open item, which joins the output."""
        current, self.open = self.open, None
        if current is None:
            return []
        where = {"item_id": current.item["id"], "output_index": current.index}
        if current.call is not None:
            item = {**current.item, "arguments": current.text, "status": "completed"}
            self.output.append(item)
            return [
                self.event(
                    "response.function_call_arguments.done",
                    **where,
                    name=item["name"],
                    arguments=current.text,
                ),
                self.event("response.output_item.done", output_index=current.index, item=item),
            ]
        item = rw.message_item(current.item["id"], current.text, self.refusal or None, status)
        self.output.append(item)
        part = {"type": "output_text", "text": current.text, "annotations": [], "logprobs": []}
        return [
            self.event(
                "response.output_text.done",
                **where,
                content_index=0,
                text=current.text,
                logprobs=[],
            ),
            self.event("response.content_part.done", **where, content_index=0, part=part),
            self.event("response.output_item.done", output_index=current.index, item=item),
        ]

    async def _end(self, runtime: GatewayRuntime, last: StreamChunk) -> list[bytes]:
        result = last.result
        assert result is not None
        if last.error is not None:
            error = {
                "message": f"the stream broke after the answer had started: {last.error}",
                "type": "stream_interrupted",
                "param": None,
                "code": result.reason,
            }
            return [self._error(error)]
        status = "incomplete" if rw.incomplete_reason(result.finish_reason) else "completed"
        events = []
        if self.open is None and not self.output:
            events += self._open_message()  # an empty answer is an empty message
        events += self._close(status)
        body = self._response(result)
        await _keep(runtime, self.call, result, body)
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        events.append(self.event(kind, response=body))
        return events
