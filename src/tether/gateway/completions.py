"""``POST /v1/completions``: OpenAI's legacy completions API (prompt in, text out), mapped onto
the same features as chat.

A completion request is the one-message chat request the chat endpoint would get: its
``prompt`` is the caller's user message, under the feature's own system prompt, and it runs
through the same pieces (:func:`tether.gateway.wire.passed_extra`,
:func:`~tether.gateway.wire.to_model_request`, then the pipeline: the feature's stages and
guards, its model chain, failure path and trace). Only the shapes differ::

    {"model": "assistant", "prompt": "Say hi", "max_tokens": 20}
      → chat: {"model": "assistant", "messages": [{"role": "user", "content": "Say hi"}], ...}
      ← {"object": "text_completion", "choices": [{"text": "Hi!", "index": 0,
         "logprobs": null, "finish_reason": "stop"}], "usage": {...}, "tether": {...}}

What the completions API has and a feature cannot honour is refused with a 400 naming the
field: several prompts (send one request per prompt), token-id prompts, ``echo``, ``suffix``,
``best_of`` and ``n`` above 1. ``logprobs: N`` asks the upstream for the chat equivalent
(``logprobs: true, top_logprobs: N``) and answers in the completions shape. Fields the chat API
declares but completions does not (``messages``, ``tools``, ...) are dropped and named on the
trace, like any unknown field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tether.errors import InvalidRequest, TetherError
from tether.gateway import wire
from tether.gateway.asgi import Handler
from tether.gateway.errors import envelope, internal_envelope
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
from tether.telemetry.trace import Trace

if TYPE_CHECKING:
    from tether.gateway.runtime import GatewayRuntime

log = logging.getLogger("tether.gateway")

TOKEN_PROMPT = (
    "token-id prompts are not taken: send the prompt as text (the feature builds the prompt "
    "and its tokens are counted upstream)"
)
ONE_PROMPT = (
    "send one prompt (a string, or a list of one string); for several prompts send one request each"
)
# completions fields with no counterpart in a feature's call; their neutral values pass
REFUSED = {
    "echo": "the feature's prompt is not echoed; leave echo out or false",
    "suffix": "insertion after a suffix is not supported; leave suffix out",
    "best_of": "server-side best-of is not supported; leave best_of out or 1",
}


def _one_prompt(value: Any) -> Any:
    """Before type validation: one text prompt, named clearly when it is token ids or several
    prompts (the union's own errors would only say "not a string")."""
    if isinstance(value, float) and wire.has_non_finite(value):
        raise PydanticCustomError("not_finite", wire.NOT_FINITE)
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise PydanticCustomError("prompt_type", "send the prompt as a string")
    if any(isinstance(v, int | list) for v in value):
        raise PydanticCustomError("token_prompt", TOKEN_PROMPT)
    if len(value) != 1 or not isinstance(value[0], str):
        raise PydanticCustomError("prompts", ONE_PROMPT)
    return value


Prompt = Annotated[
    str | Annotated[list[str], Field(min_length=1, max_length=1)],
    BeforeValidator(_one_prompt),
]


class CompletionRequest(BaseModel):
    """``POST /v1/completions``. ``model`` names a feature, or ``feature:variant``; ``prompt``
    is the caller's user message. Other fields pass, are refused or are dropped as the chat
    endpoint does."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[str, wire.Json]
    model: str = Field(min_length=1)
    prompt: Prompt = Field(description="One prompt: a string, or a list of one string.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Capped at the feature's; unset: the feature's."
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stream: bool = False
    stream_options: wire.StreamOptions | None = None
    stop: Annotated[str | list[str] | None, BeforeValidator(wire._finite_number)] = None
    user: str | None = None
    seed: int | None = None
    logprobs: int | None = Field(
        default=None, ge=0, le=20, description="Log probabilities of the N likeliest tokens."
    )
    echo: bool | None = Field(default=None, description="Only false: 400 otherwise.")
    suffix: str | None = Field(default=None, description="Not supported: 400 when set.")
    best_of: int | None = Field(default=None, description="Only 1: 400 otherwise.")

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def check_refused(self) -> None:
        """A 400 naming ``echo``, ``suffix`` or ``best_of`` when it asks for something."""
        asked = {"echo": bool(self.echo), "suffix": bool(self.suffix)}
        asked["best_of"] = self.best_of is not None and self.best_of != 1
        for name, wanted in asked.items():
            if wanted:
                raise InvalidRequest(
                    f"{name}: tether does not take this field ({REFUSED[name]})", param=name
                )


def to_chat(req: CompletionRequest) -> tuple[wire.ChatRequest, list[str]]:
    """The one-message chat request this completion request is, and the names of the chat
    API's own fields the caller sent (the completions API has none of them: dropped)."""
    chat_fields = wire.ChatRequest.model_fields
    extras = req.model_extra or {}
    body: dict[str, Any] = {k: v for k, v in extras.items() if k not in chat_fields}
    dropped = sorted(k for k in extras if k in chat_fields)
    body.update(
        model=req.model,
        messages=[{"role": "user", "content": req.prompt_text()}],
        stream=req.stream,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop,
        user=req.user,
    )
    if req.stream_options is not None:
        body["stream_options"] = req.stream_options.model_dump()
    if req.seed is not None:
        body["seed"] = req.seed
    if req.logprobs is not None:  # the chat equivalent; answered in the completions shape
        body["logprobs"], body["top_logprobs"] = True, req.logprobs
    try:
        return wire.ChatRequest.model_validate(body), dropped
    except ValidationError as exc:  # a field the completions request validated already
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}", param=where) from None


def completion_logprobs(chat_logprobs: Any, offset: int = 0) -> dict[str, Any] | None:
    """A chat choice's ``logprobs`` (``{"content": [{token, logprob, top_logprobs}]}``) in the
    completions shape (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``);
    ``offset`` is where the first token starts in the answer. None when there are none."""
    content = chat_logprobs.get("content") if isinstance(chat_logprobs, dict) else None
    if not isinstance(content, list):
        return None
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top: list[dict[str, float] | None] = []
    offsets: list[int] = []
    for item in content:
        if not isinstance(item, dict):
            continue
        token = str(item.get("token", ""))
        tokens.append(token)
        token_logprobs.append(item.get("logprob"))
        alternatives = item.get("top_logprobs") or []
        top.append({str(a.get("token")): a.get("logprob") for a in alternatives} or None)
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top,
        "text_offset": offsets,
    }


def text_completion(result: Result, model: str, want_logprobs: bool) -> dict[str, Any]:
    """The ``text_completion`` object of a whole answer."""
    body: dict[str, Any] = {
        "id": f"cmpl-{result.trace_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "text": result.output,
                "index": 0,
                "logprobs": completion_logprobs(result.logprobs) if want_logprobs else None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": wire.wire_usage(result.usage),
        "tether": wire.tether_facts(result),
    }
    if result.system_fingerprint:
        body["system_fingerprint"] = result.system_fingerprint
    return body


def finish_reason(result: Result) -> str:
    """``stop``, ``length`` or ``content_filter``, the completions API's three."""
    reason = result.finish_reason or "stop"
    return reason if reason in ("length", "content_filter") else "stop"


def completion_chunk(
    trace_id: str,
    model: str,
    text: str | None,
    finish: str | None = None,
    logprobs: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One streamed ``text_completion`` event; ``text=None``: the usage event (no choices)."""
    choices = (
        []
        if text is None
        else [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}]
    )
    return {
        "id": f"cmpl-{trace_id}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        **extra,
    }


def completions_handler(runtime: GatewayRuntime) -> Handler:
    """``POST /v1/completions`` on ``runtime``'s pipeline."""

    async def completions(request: Request) -> Response:
        key = await runtime.auth.key(request.headers)
        require_json(request.headers)
        body = await read_body(request, runtime.settings.max_body_bytes)
        req = wire.parse_body(CompletionRequest, body)
        req.check_refused()
        feature, _, _variant = req.model.partition(":")
        runtime.auth.check_scope(key, runtime.tether.pipeline.canonical(feature))
        chat, dropped = to_chat(req)
        extra, unknown = wire.passed_extra(chat)
        variables: dict[str, Any] = {"message": wire.last_user_text(chat)}
        variables.update(wire.template_variables(chat))
        asked = wire.to_model_request(chat, extra)
        started = remember(request, sorted([*dropped, *unknown]))
        who = caller(request.headers, key, chat.user)
        tether = runtime.tether
        if req.stream:
            chunks = tether.stream(feature, variables, request=asked, on_start=started, **who)
            return await _stream(request, chunks, req)
        try:
            result = await tether.run(feature, variables, request=asked, on_start=started, **who)
        except TetherError as exc:
            return _error(request, exc)
        model = wire.answering_model(result, req.model)
        return JSONResponse(
            text_completion(result, model, req.logprobs is not None),
            headers=result_headers(request, result),
        )

    return completions


def _error(request: Request, error: TetherError) -> Response:
    return error_response(error, started_trace(request))


async def _stream(
    request: Request, chunks: AsyncIterator[StreamChunk], req: CompletionRequest
) -> Response:
    """Read the first chunk before answering: a failure before any content gets a proper
    status (a degraded answer its header), not a broken stream."""
    try:
        first = await anext(chunks)
    except TetherError as exc:
        return _error(request, exc)
    trace = started_trace(request)
    assert trace is not None  # the first chunk came from a started call
    headers = tether_headers(trace, first.degraded, first.reason)
    headers["cache-control"] = "no-cache"
    model = wire.stream_model(first, req.model)
    events = _events(first, chunks, trace, model, req)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _events(
    first: StreamChunk,
    rest: AsyncIterator[StreamChunk],
    trace: Trace,
    model: str,
    req: CompletionRequest,
) -> AsyncIterator[bytes]:
    """The SSE body: a ``text_completion`` event per piece of text, then one with the
    ``finish_reason`` and the ``tether`` facts, the usage event when asked, ``[DONE]``. A
    stream that breaks after its first token ends with an ``error`` event."""
    want_logprobs = req.logprobs is not None
    sent = 0  # characters so far: the text_offset of the next piece's logprobs
    mark: dict[str, Any] = {}  # the upstream's system_fingerprint, once a piece had one
    pending: StreamChunk | None = first
    close = getattr(rest, "aclose", None)
    try:
        while pending is not None:
            if pending.done:
                if close is not None:  # hands the trace to the sink before the caller sees
                    await close()  # the end of the answer
                for event in _final_events(pending, trace, model, req, mark):
                    yield event
                return
            if pending.system_fingerprint:
                mark["system_fingerprint"] = pending.system_fingerprint
            if pending.text:
                logprobs = completion_logprobs(pending.logprobs, sent) if want_logprobs else None
                piece = completion_chunk(trace.id, model, pending.text, None, logprobs, **mark)
                yield wire.sse(piece)
                sent += len(pending.text)
            pending = await anext(rest, None)
    except TetherError as exc:
        _, body = envelope(exc)
        yield wire.sse(body)
        yield wire.sse("[DONE]")
    except Exception:  # the answer has started: an explicit error event, never a cut
        log.exception("unhandled error in a completions stream (trace %s)", trace.id)
        yield wire.sse(internal_envelope(trace.id))
        yield wire.sse("[DONE]")
    finally:
        if close is not None:
            await close()


def _final_events(
    last: StreamChunk, trace: Trace, model: str, req: CompletionRequest, mark: dict[str, Any]
) -> list[bytes]:
    result = last.result
    assert result is not None
    if last.error is not None:
        return wire.broken_stream(last)
    facts = wire.tether_facts(result)
    end = completion_chunk(trace.id, model, "", finish_reason(result), tether=facts, **mark)
    events = [wire.sse(end)]
    if req.stream_options is not None and req.stream_options.include_usage:
        usage = wire.wire_usage(result.usage)
        events.append(wire.sse(completion_chunk(trace.id, model, None, usage=usage, **mark)))
    events.append(wire.sse("[DONE]"))
    return events
