"""The OpenAI chat-completions wire format, both ways.

Requests are validated (known fields strictly; unknown fields pass through to the provider);
responses and stream chunks are built in the exact shape the ``openai`` SDK parses, with
tether's own facts under an extra ``tether`` key that clients may ignore.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import InvalidRequest
from tether.pipeline.result import Result
from tether.types import Message, ModelRequest, ToolCall, ToolCallDelta, Usage


class WireToolFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str = ""


class WireToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: str = "function"
    function: WireToolFunction


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``. ``model`` names a feature, or ``feature:variant``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[WireMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None


class NativeRunRequest(BaseModel):
    """``POST /v1/features/{name}/run``."""

    model_config = ConfigDict(extra="forbid")
    variables: dict[str, Any] = Field(default_factory=dict)
    user: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


M = TypeVar("M", bound=BaseModel)
VARIABLES_FIELD = "tether_variables"  # extra body field: template variables, not for the model


def parse_body(model: type[M], body: bytes) -> M:
    """Parse and validate a JSON body in one pass; errors name the field and what it should
    be."""
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error", first["msg"])
            raise InvalidRequest(f"the request body is not valid JSON ({reason})") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise InvalidRequest("the request body must be a JSON object") from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise InvalidRequest(f"{where}: {first['msg']}{more}", param=where) from None


def _text(content: str | list[dict[str, Any]] | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise InvalidRequest(
                f"message content parts of type {part.get('type')!r} are not supported; "
                "send text parts"
            )
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def to_model_request(chat: ChatRequest) -> ModelRequest:
    messages = []
    for m in chat.messages:
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or []]
        role = "system" if m.role == "developer" else m.role
        messages.append(Message(role, _text(m.content), calls or None, m.tool_call_id, m.name))
    extra = {k: v for k, v in (chat.model_extra or {}).items() if k != VARIABLES_FIELD}
    stop = [chat.stop] if isinstance(chat.stop, str) else chat.stop
    return ModelRequest(
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


def last_user_text(chat: ChatRequest) -> str:
    for m in reversed(chat.messages):
        if m.role == "user":
            return _text(m.content) or ""
    return ""


def wire_usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def tether_facts(result: Result) -> dict[str, Any]:
    return {
        "trace_id": result.trace_id,
        "degraded": result.degraded,
        "reason": result.reason,
        "variant": result.variant,
        "upstream": result.model,
        "cost_usd": result.cost_usd,
    }


def completion(result: Result, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.output}
    if result.tool_calls:
        message["tool_calls"] = [
            {"id": t.id, "type": t.type, "function": {"name": t.name, "arguments": t.arguments}}
            for t in result.tool_calls
        ]
        message["content"] = result.output or None
    return {
        "id": f"chatcmpl-{result.trace_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": result.finish_reason or "stop"}
        ],
        "usage": wire_usage(result.usage),
        "tether": tether_facts(result),
    }


def chunk(
    trace_id: str,
    model: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    )
    return {
        "id": f"chatcmpl-{trace_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        **extra,
    }


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
