"""Anthropic's Messages API: ``POST {base_url}/v1/messages``, in one piece or streamed.

System (and developer) messages go to the top-level ``system`` field, image parts become
image blocks, ``max_tokens`` is always sent (the
config's ``default_max_tokens`` when the request has none), tool calls map to ``tool_use`` /
``tool_result`` blocks and stop reasons map to OpenAI finish reasons. ``response_format`` has no
Messages API equivalent and is not sent: validate structured output with a schema guard. Every
failure raises a :class:`~tether.errors.ProviderError`; nothing is written to the trace here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from tether.config.models import AnthropicProviderConfig
from tether.errors import InvalidRequest, ProviderError, RateLimited, UpstreamError
from tether.providers._http import HTTPClient, Target, malformed, parse_json_event
from tether.providers.base import CallContext
from tether.providers.pricing import PriceTable
from tether.providers.transport import Transport
from tether.providers.transports import transport_for
from tether.types import (
    Message,
    ModelChunk,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolCallDelta,
    Usage,
)

KIND = "anthropic"
PATH = "/v1/messages"
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic error ``type`` -> (HTTP status it comes with, retryable)
ERROR_TYPES = {
    "overloaded_error": (529, True),
    "api_error": (500, True),
    "rate_limit_error": (429, True),
    "timeout_error": (504, True),
    "invalid_request_error": (400, False),
    "authentication_error": (401, False),
    "permission_error": (403, False),
    "not_found_error": (404, False),
    "request_too_large": (413, False),
}
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, AttributeError, ValueError)
SYSTEM_ROLES = ("system", "developer")  # the Messages API has one system prompt for both


class AnthropicProvider:
    """Anthropic's API: auth headers, base URL and the transport its requests go through."""

    kind = KIND

    def __init__(
        self,
        config: AnthropicProviderConfig,
        name: str,
        prices: PriceTable,
        *,
        transport: Transport | None = None,
    ) -> None:
        """``transport``: what requests go through (:mod:`tether.providers.transport`); by
        default the one ``config.transport`` names. The provider closes it in ``aclose()``."""
        self.name = name
        self.config = config
        self.pricing = prices.pricing(name, config)  # its `prices:` over the packaged table
        headers = {
            "accept": "application/json",
            "anthropic-version": config.anthropic_version,
            **config.headers,
        }
        if config.api_key is not None:
            headers["x-api-key"] = config.api_key.get_secret_value()
        base = config.base_url.rstrip("/")
        self.http = HTTPClient(
            base_url=base.removesuffix("/v1"),
            headers=headers,
            transport=transport or transport_for(config),
            provider=name,
        )

    def model(self, name: str) -> AnthropicModel:
        return AnthropicModel(self, name)

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass(slots=True)
class AnthropicModel:
    """One Claude model. ``name`` is ``provider:model``."""

    provider: AnthropicProvider
    model_name: str

    @property
    def name(self) -> str:
        return f"{self.provider.name}:{self.model_name}"

    def _target(self) -> Target:
        return Target(self.provider.name, self.model_name, self.provider.http.url(PATH))

    def _body(self, request: ModelRequest, stream: bool) -> dict[str, Any]:
        default = self.provider.config.default_max_tokens
        return request_body(self.model_name, request, default_max_tokens=default, stream=stream)

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        target = self._target()
        data = await self.provider.http.post_json(target, self._body(request, False), ctx)
        if data.get("type") == "error":
            raise event_error(target, data)
        try:
            text, tool_calls = parse_content(data["content"])
            usage = parse_usage(data.get("usage"))
            stop = data.get("stop_reason")
        except _SHAPE_ERRORS as exc:
            raise malformed(
                target, f"the response is not a Messages API message ({exc!r})"
            ) from None
        model = str(data.get("model") or self.model_name)
        priced = self.provider.pricing.cost(usage, model, fallback=self.model_name)
        return ModelResponse(
            text=text,
            usage=usage,
            model=model,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
            finish_reason=finish_reason(stop),
            tool_calls=tool_calls or None,
        )

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        target = self._target()
        state = _StreamState(target)
        body = self._body(request, True)
        async with aclosing(self.provider.http.events(target, body, ctx)) as events:
            async for event in events:
                if state.done:
                    continue  # read to the end so the connection goes back to the pool
                chunk = state.feed(event.event, event.data)
                if chunk is not None:
                    chunk.model = state.model or self.model_name
                    chunk.provider = self.provider.name
                    yield chunk
        if not state.done and state.stop_reason is None:
            raise malformed(
                target, "the stream ended before the answer was complete (no message_stop)"
            )
        reported = state.model or self.model_name
        priced = self.provider.pricing.cost(state.usage, reported, fallback=self.model_name)
        yield ModelChunk(
            usage=state.usage,
            finish_reason=finish_reason(state.stop_reason),
            model=reported,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
        )


@dataclass(slots=True)
class _StreamState:
    """What a Messages API stream has said so far."""

    target: Target
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    model: str = ""
    done: bool = False
    tool_index: dict[int, int] = field(default_factory=dict)

    def feed(self, event: str, data: str) -> ModelChunk | None:
        """Digest one event; return a chunk when it carries text or a tool-call piece."""
        obj = parse_json_event(self.target, data)
        kind = str(obj.get("type") or event)
        if kind == "error":
            raise event_error(self.target, obj)
        try:
            return self._digest(kind, obj)
        except _SHAPE_ERRORS as exc:
            raise malformed(
                self.target, f"unexpected {kind} event {data[:80]!r} ({exc!r})"
            ) from None

    def _digest(self, kind: str, obj: dict[str, Any]) -> ModelChunk | None:
        if kind == "message_start":
            message = obj["message"]
            self.model = str(message.get("model") or "")
            self.usage = parse_usage(message.get("usage"))
        elif kind == "content_block_start":
            return self._block_start(int(obj["index"]), obj["content_block"])
        elif kind == "content_block_delta":
            return self._block_delta(int(obj["index"]), obj["delta"])
        elif kind == "message_delta":
            stop = (obj.get("delta") or {}).get("stop_reason")
            self.stop_reason = str(stop) if stop else self.stop_reason
            self._merge_usage(obj.get("usage") or {})
        elif kind == "message_stop":
            self.done = True
        return None

    def _block_start(self, index: int, block: dict[str, Any]) -> ModelChunk | None:
        if block.get("type") == "tool_use":
            ordinal = self.tool_index.setdefault(index, len(self.tool_index))
            delta = ToolCallDelta(ordinal, id=block.get("id"), name=block.get("name"))
            return ModelChunk(tool_calls=[delta])
        if block.get("type") == "text" and block.get("text"):
            return ModelChunk(text=str(block["text"]))
        return None

    def _block_delta(self, index: int, delta: dict[str, Any]) -> ModelChunk | None:
        if delta.get("type") == "text_delta":
            return ModelChunk(text=str(delta.get("text") or "")) if delta.get("text") else None
        if delta.get("type") == "input_json_delta" and index in self.tool_index:
            piece = str(delta.get("partial_json") or "")
            return ModelChunk(tool_calls=[ToolCallDelta(self.tool_index[index], arguments=piece)])
        return None

    def _merge_usage(self, raw: dict[str, Any]) -> None:
        if "output_tokens" in raw:
            self.usage.output_tokens = int(raw["output_tokens"] or 0)
        if raw.get("input_tokens"):
            self.usage.input_tokens = parse_usage(raw).input_tokens
        if raw.get("cache_read_input_tokens"):
            self.usage.cached_input_tokens = int(raw["cache_read_input_tokens"])


# ---------------------------------------------------------------- wire mapping


def finish_reason(stop_reason: str | None) -> str:
    """An Anthropic ``stop_reason`` as an OpenAI ``finish_reason``."""
    if stop_reason is None:
        return "stop"
    return STOP_REASONS.get(stop_reason, stop_reason)


def parse_usage(raw: Any) -> Usage:
    """Input (including cache reads and writes) and output tokens."""
    if not isinstance(raw, dict):
        return Usage()
    prompt = sum(
        int(raw.get(key) or 0)
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    cached = int(raw.get("cache_read_input_tokens") or 0)
    return Usage(prompt, int(raw.get("output_tokens") or 0), cached)


def parse_content(blocks: list[dict[str, Any]]) -> tuple[str, list[ToolCall]]:
    """The text and the tool calls of a message's content blocks."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(ToolCall(str(block["id"]), str(block["name"]), arguments))
    return "".join(texts), calls


def event_error(target: Target, obj: dict[str, Any]) -> ProviderError:
    """An ``error`` event (or a 2xx error body) as the matching tether error."""
    raw = obj.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = str(error.get("type") or "api_error")
    detail = str(error.get("message") or kind)
    status, retryable = ERROR_TYPES.get(kind, (500, True))
    message = f"{target.name}: the upstream reported {kind}: {detail}. " + (
        "Retry later or add a fallback model." if retryable else "Fix the request or config."
    )
    if status == 429:
        return RateLimited(
            message, provider=target.provider, model=target.model, status_code=status
        )
    return UpstreamError(
        message,
        provider=target.provider,
        model=target.model,
        status_code=status,
        retryable=retryable,
    )


def _tool_input(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        raise InvalidRequest(
            f"tool call {call.id!r} ({call.name}) has arguments that are not valid JSON: "
            f"{call.arguments[:80]!r}; Anthropic needs a JSON object"
        ) from None


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls or []:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call)}
        )
    return blocks


def wire_messages(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """The ``system`` prompt and the ``messages`` list; tool results become user blocks."""
    system = [m.content for m in messages if m.role in SYSTEM_ROLES and m.content]
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role in SYSTEM_ROLES:
            continue
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content or "",
            }
            last = out[-1] if out else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            out.append({"role": "assistant", "content": _assistant_blocks(message)})
        elif message.parts is not None:
            out.append({"role": message.role, "content": [_block(p) for p in message.parts]})
        else:
            out.append({"role": message.role, "content": message.content or ""})
    return ("\n\n".join(system) or None), out


def _block(part: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI content part as an Anthropic content block: text, or an image from a base64
    ``data:`` URL or a URL. Audio and file parts have no block here: InvalidRequest (a chain
    skips a model without the capability before it is asked)."""
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "image_url":
        url = str((part.get("image_url") or {}).get("url") or "")
        if url.startswith("data:"):
            media_type, _, data = url[5:].partition(";base64,")
            if media_type and data:
                source = {"type": "base64", "media_type": media_type, "data": data}
                return {"type": "image", "source": source}
            raise InvalidRequest("an image data URL must be data:<media type>;base64,<data>")
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest(
        f"content parts of type {kind!r} cannot be sent to Anthropic's Messages API here; "
        "send text or image parts, or route the feature to a model that takes them"
    )


def wire_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shaped function tools as Anthropic tools (Anthropic-shaped ones pass through)."""
    out = []
    for tool in tools:
        function = tool.get("function")
        if tool.get("type") == "function" and isinstance(function, dict):
            if not isinstance(function.get("name"), str):
                raise InvalidRequest(
                    f"a function tool has no name ({str(tool)[:80]}); send "
                    '{"type": "function", "function": {"name": ..., "parameters": ...}}'
                )
            converted = {
                "name": function["name"],
                "input_schema": function.get("parameters") or {"type": "object"},
            }
            if function.get("description"):
                converted["description"] = function["description"]
            out.append(converted)
        else:
            out.append(tool)
    return out


def wire_tool_choice(choice: Any) -> Any:
    """OpenAI ``tool_choice`` values as Anthropic ones."""
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    return choice


def request_body(
    model: str, request: ModelRequest, *, default_max_tokens: int, stream: bool
) -> dict[str, Any]:
    """The JSON body for ``/v1/messages``. ``request.extra`` goes in first, so what tether
    builds (model, system, messages, max_tokens, options, stream) always wins over it."""
    system, messages = wire_messages(request.messages)
    body: dict[str, Any] = dict(request.extra)
    # a forwarded caller's id is Anthropic's metadata.user_id; OpenAI's metadata tags have no
    # Anthropic equivalent (only Anthropic-shaped metadata passes)
    user, metadata = body.pop("user", None), body.pop("metadata", None)
    if isinstance(metadata, dict) and metadata and set(metadata) <= {"user_id"}:
        body["metadata"] = metadata
    elif isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    body["model"] = model
    body["messages"] = messages
    body["max_tokens"] = request.max_tokens or default_max_tokens
    options = {
        "system": system,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop_sequences": request.stop,
        "tools": wire_tools(request.tools) if request.tools else None,
        "tool_choice": wire_tool_choice(request.tool_choice),
    }
    body.update({key: value for key, value in options.items() if value is not None})
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body
