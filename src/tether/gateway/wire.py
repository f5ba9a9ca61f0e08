"""The OpenAI chat-completions wire format, both ways.

Requests are validated: known fields strictly, numbers finite. Of the fields the OpenAI API
knows but tether does not model, only those that tune how the model answers pass through to
the provider (:data:`PASSED_FIELDS`); fields that would replace or add to what the feature and
tether build (the prompt, the model, the stream) are refused (:data:`REFUSED_FIELDS`), and any
other field is dropped and named on the trace. What the caller sent is kept as sent: content
parts (``text``, ``image_url``, ``input_audio``, ``file``: :attr:`~tether.types.Message.parts`,
with the text parts joined as ``content`` for what reads only text), ``developer`` messages,
the name of the output limit (``max_completion_tokens``). Responses and stream chunks are built
in the exact shape the ``openai`` SDK parses, with the model that answered as ``model``
(:func:`answering_model`), the upstream's ``logprobs``, ``refusal``, ``system_fingerprint`` and
cached / reasoning token counts, and tether's own facts under an extra ``tether`` key that
clients may ignore.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from tether.errors import InvalidRequest
from tether.pipeline.embedding import EmbeddingResult
from tether.pipeline.result import Result, StreamChunk
from tether.types import Message, ModelRequest, ToolCall, ToolCallDelta, Usage

NOT_FINITE = (
    "numbers must be finite; NaN, Infinity and numbers beyond 1.8e308 are not JSON numbers, "
    "send a finite number or a string"
)
_SCALARS = frozenset((str, int, bool, type(None)))


def has_non_finite(value: Any) -> bool:
    """Whether ``value`` (dicts, lists, scalars) holds a float that is not finite."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return True
        elif kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
    return False


def non_finite_path(value: Any) -> tuple[str | int, ...]:
    """Where in ``value`` the first float that is not finite is; ``()`` when it is ``value``
    itself (or when there is none)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if type(item) is float and not math.isfinite(item):
            return path
        if type(item) is dict:
            stack.extend(((*path, k), v) for k, v in reversed(item.items()))
        elif type(item) is list:
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(item))))
    return ()


def _finite(value: Any) -> Any:
    """Validator of the fields typed ``Any`` (the JSON parser reads ``NaN``, ``Infinity`` and
    ``1e400`` as floats): refuse a number that is not finite anywhere inside. The path is only
    worked out for a value that has one."""
    if type(value) in _SCALARS or not has_non_finite(value):
        return value
    raise PydanticCustomError("not_finite", NOT_FINITE, {"path": non_finite_path(value)})


def _finite_number(value: Any) -> Any:
    """A validator that runs before a union of types: a number that is not finite is named as
    such (the union alone would say "not a string" for each of its members)."""
    if type(value) is float and not math.isfinite(value):
        raise PydanticCustomError("not_finite", NOT_FINITE, {"path": ()})
    return value


FINITE = AfterValidator(_finite)
Json = Annotated[Any, FINITE]  # any JSON value, numbers finite


class WireToolFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Json]
    name: str
    arguments: str = ""


class WireToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Json]
    id: str
    type: str = "function"
    function: WireToolFunction


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Json]
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[
        str | list[dict[str, Any]] | None,
        BeforeValidator(_finite_number),  # named as not finite, not as "not a string"
        AfterValidator(_finite),  # checked here, not inside the union: errors name no member
    ] = None
    name: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Json]
    include_usage: bool = False


MAX_CHOICES = 8  # ``n``: each choice is one more run of the feature


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``. ``model`` names a feature, or ``feature:variant``."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[str, Json]
    model: str = Field(min_length=1)
    messages: list[WireMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stop: Annotated[str | list[str] | None, BeforeValidator(_finite_number)] = None
    tools: Annotated[list[dict[str, Any]] | None, FINITE] = None
    tool_choice: Json = None
    response_format: Annotated[dict[str, Any] | None, FINITE] = None
    user: str | None = None
    metadata: Annotated[dict[str, Any] | None, FINITE] = None

    @field_validator("tools")
    @classmethod
    def _function_tools_are_named(
        cls, tools: list[dict[str, Any]] | None
    ) -> list[dict[str, Any]] | None:
        for tool in tools or []:
            function = tool.get("function")
            if tool.get("type", "function") == "function" and not (
                isinstance(function, dict) and isinstance(function.get("name"), str)
            ):
                raise ValueError(
                    'a function tool needs {"type": "function", "function": {"name": "...", '
                    '"parameters": {...}}}'
                )
        return tools


class NativeRunRequest(BaseModel):
    """``POST /v1/features/{name}/run``."""

    model_config = ConfigDict(extra="forbid")
    variables: Annotated[dict[str, Any], FINITE] = Field(default_factory=dict)
    user: str | None = None
    metadata: Annotated[dict[str, Any], FINITE] = Field(default_factory=dict)


M = TypeVar("M", bound=BaseModel)
VARIABLES_FIELD = "tether_variables"  # extra body field: template variables, not for the model
# sampling options a caller may tune; they cannot change the prompt, the model or the stream
PASSED_FIELDS = frozenset(
    {
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "parallel_tool_calls",
        "reasoning_effort",
        "verbosity",
        "service_tier",
        "top_k",
        "min_p",
        "repetition_penalty",
    }
)
# fields that would replace, add to or reveal the prompt the feature builds, or that the
# providers build themselves: a 400 naming the field
REFUSED_FIELDS = {
    "system": "the feature's system prompt is its own; send a system message instead",
    "prompt": "the feature builds the prompt; send messages",
    "input": "the feature builds the prompt; send messages",
    "instructions": "the feature's system prompt is its own; send a system message instead",
    "suffix": "the feature builds the prompt; send messages",
    "echo": "the feature's prompt is not echoed",
    "documents": "the feature builds the prompt; send documents as messages",
    "chat_template": "the upstream's chat template is not the caller's to change",
    "chat_template_kwargs": "the upstream's chat template is not the caller's to change",
    "add_generation_prompt": "the upstream's chat template is not the caller's to change",
    "continue_final_message": "the upstream's chat template is not the caller's to change",
    "functions": "send tools",
    "function_call": "send tool_choice",
    "stop_sequences": "send stop",
}


def parse_body(model: type[M], body: bytes) -> M:
    """Parse and validate a JSON body in one pass; errors name the field and what it should
    be, also a number that is not finite (``NaN``, ``Infinity``, ``1e400``)."""
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error", first["msg"])
            raise InvalidRequest(f"the request body is not valid JSON ({reason})") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise InvalidRequest("the request body must be a JSON object") from None
        loc = (*first["loc"], *first.get("ctx", {}).get("path", ()))
        where = ".".join(str(p) for p in loc) or "body"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise InvalidRequest(f"{where}: {first['msg']}{more}", param=where) from None


def passed_extra(chat: ChatRequest) -> tuple[dict[str, Any], list[str]]:
    """The caller's extra fields that go to the provider, and the names of those dropped.
    Raises InvalidRequest for a field that would override what the feature builds."""
    passed: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in (chat.model_extra or {}).items():
        if name in PASSED_FIELDS:
            passed[name] = value
        elif name in REFUSED_FIELDS:
            raise InvalidRequest(
                f"{name}: tether does not take this field ({REFUSED_FIELDS[name]})", param=name
            )
        elif name != VARIABLES_FIELD:
            dropped.append(name)
    return passed, dropped


PART_TYPES = frozenset({"text", "image_url", "input_audio", "file"})
_PART_FIELDS = {"image_url": "url", "input_audio": "data", "file": None}


def _content(
    content: str | list[dict[str, Any]] | None, where: str
) -> tuple[str | None, list[dict[str, Any]] | None]:
    """A message's text view, and its parts as sent when one of them is not text (image,
    audio, file); ``where`` names the message in errors (``messages.2.content``)."""
    if content is None or isinstance(content, str):
        return content, None
    texts: list[str] = []
    media = False
    for n, part in enumerate(content):
        kind = part.get("type")
        if kind not in PART_TYPES:
            raise InvalidRequest(
                f"{where}.{n}.type: content parts of type {kind!r} are not supported; send "
                "text, image_url, input_audio or file parts",
                param=f"{where}.{n}.type",
            )
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(
                    f"{where}.{n}.text: a text part needs a string", param=f"{where}.{n}.text"
                )
            texts.append(text)
            continue
        media = True
        body = part.get(kind)
        needed = _PART_FIELDS[kind]
        if not isinstance(body, dict) or (needed is not None and not body.get(needed)):
            shape = f'{{"{needed}": "..."}}' if needed else "an object"
            raise InvalidRequest(
                f"{where}.{n}.{kind}: a {kind} part needs {shape}", param=f"{where}.{n}.{kind}"
            )
    return "".join(texts), (list(content) if media else None)


def to_model_request(chat: ChatRequest, extra: dict[str, Any]) -> ModelRequest:
    """The caller's conversation and options; ``extra`` from :func:`passed_extra`."""
    messages = []
    for i, m in enumerate(chat.messages):
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or []]
        text, parts = _content(m.content, f"messages.{i}.content")
        messages.append(Message(m.role, text, calls or None, m.tool_call_id, m.name, parts))
    stop = [chat.stop] if isinstance(chat.stop, str) else chat.stop
    completion_field = chat.max_completion_tokens is not None
    return ModelRequest(
        max_tokens_field="max_completion_tokens" if completion_field else "max_tokens",
        messages=messages,
        max_tokens=chat.max_completion_tokens or chat.max_tokens,
        temperature=chat.temperature,
        top_p=chat.top_p,
        stop=stop,
        tools=chat.tools,
        tool_choice=chat.tool_choice,
        response_format=chat.response_format,
        extra=extra,
    )


def template_variables(chat: ChatRequest) -> dict[str, Any]:
    """The ``tether_variables`` object of a chat request (template variables, not for the
    model); an empty dict when absent."""
    value = (chat.model_extra or {}).get(VARIABLES_FIELD)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(
            f'{VARIABLES_FIELD}: send an object of template variables, e.g. {{"customer": "ACME"}}',
            param=VARIABLES_FIELD,
        )
    return value


def last_user_text(chat: ChatRequest) -> str:
    for i in range(len(chat.messages) - 1, -1, -1):
        m = chat.messages[i]
        if m.role == "user":
            return _content(m.content, f"messages.{i}.content")[0] or ""
    return ""


def answering_model(result: Result | EmbeddingResult, feature: str) -> str:
    """The response's ``model`` field: the model that answered, as its upstream named it
    (``gpt-4o-mini-2024-07-18``), else the model part of ``provider:model``; ``feature`` (the
    name the caller sent) when no model answered (the static failure answer)."""
    if result.response_model:
        return result.response_model
    if result.model:
        return result.model.partition(":")[2] or result.model
    return feature


def stream_model(first: StreamChunk, requested: str) -> str:
    """The ``model`` of a streamed answer's events: the upstream's name for the model
    streaming it, else (a failure-path answer) :func:`answering_model`'s."""
    if first.model:
        return first.model
    if first.result is not None:
        return answering_model(first.result, requested)
    return requested


def wire_usage(usage: Usage) -> dict[str, Any]:
    """Usage as OpenAI reports it (cached input and reasoning tokens in the details)."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def summed_usage(results: Sequence[Result]) -> Usage:
    total = Usage()
    for result in results:
        total = total + result.usage
    return total


def tether_facts(result: Result | EmbeddingResult) -> dict[str, Any]:
    facts = {
        "trace_id": result.trace_id,
        "degraded": result.degraded,
        "reason": result.reason,
        "variant": result.variant,
        "upstream": result.model,
        "cost_usd": result.cost_usd,
    }
    if isinstance(result, Result) and result.retry_after_s is not None:
        facts["retry_after_s"] = round(result.retry_after_s, 3)  # when the cause may pass
    return facts


def _choice(index: int, result: Result) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": result.output,
        "refusal": result.refusal,
    }
    if result.tool_calls:
        message["tool_calls"] = [
            {"id": t.id, "type": t.type, "function": {"name": t.name, "arguments": t.arguments}}
            for t in result.tool_calls
        ]
        message["content"] = result.output or None
    if result.refusal is not None and not result.output:
        message["content"] = None
    return {
        "index": index,
        "message": message,
        "finish_reason": result.finish_reason or "stop",
        "logprobs": result.logprobs,
    }


def completion(results: Result | Sequence[Result], requested: str) -> dict[str, Any]:
    """A ``chat.completion``: one choice per result (``n``), ``model`` the model that answered
    the first (``requested``, the name the caller sent, when none did), usage summed; tether's
    facts are the first result's (``degraded`` when any is, ``trace_ids`` all of them)."""
    results = [results] if isinstance(results, Result) else list(results)
    first = results[0]
    facts = tether_facts(first)
    if len(results) > 1:
        facts["trace_ids"] = [r.trace_id for r in results]
        degraded = next((r for r in results if r.degraded), None)
        if degraded is not None:
            facts["degraded"], facts["reason"] = True, degraded.reason
        facts["cost_usd"] = sum(r.cost_usd for r in results)
    return {
        "id": f"chatcmpl-{first.trace_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answering_model(first, requested),
        "system_fingerprint": first.system_fingerprint,
        "choices": [_choice(i, r) for i, r in enumerate(results)],
        "usage": wire_usage(summed_usage(results)),
        "tether": facts,
    }


def chunk(
    trace_id: str,
    model: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    *,
    index: int = 0,
    logprobs: Any = None,
    system_fingerprint: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``: ``delta`` for choice ``index`` (None: no choice, e.g. the
    usage chunk), with the delta's ``logprobs`` when it has some."""
    choices: list[dict[str, Any]] = []
    if delta is not None:
        choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        choices.append(choice)
    out: dict[str, Any] = {
        "id": f"chatcmpl-{trace_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if system_fingerprint is not None:
        out["system_fingerprint"] = system_fingerprint
    out.update(extra)
    return out


def tool_delta(calls: list[ToolCallDelta]) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        item: dict[str, Any] = {"index": c.index, "function": {"arguments": c.arguments}}
        if c.id is not None:
            item["id"], item["type"] = c.id, "function"
        if c.name is not None:
            item["function"]["name"] = c.name
        out.append(item)
    return out


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def broken_stream(last: StreamChunk) -> list[bytes]:
    """The end of a chat or completions stream that broke after its answer had started (``last``
    carries the error and the result): never a silent truncation, an explicit error event the
    SDKs raise on, then ``[DONE]``."""
    result = last.result
    assert result is not None
    error = {
        "message": f"the stream broke after the answer had started: {last.error}",
        "type": "stream_interrupted",
        "param": None,
        "code": result.reason,
    }
    return [sse({"error": error, "tether": tether_facts(result)}), sse("[DONE]")]
