"""Any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp, tether).

``POST {base_url}/chat/completions``, in one piece or streamed as server-sent events
(``stream: true`` with ``stream_options.include_usage`` so the last chunk carries usage). Every
failure raises a :class:`~tether.errors.ProviderError`; nothing is written to the trace here
(the resilience wrappers do that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from tether.config.models import OpenAIProviderConfig
from tether.errors import ProviderError, UpstreamError
from tether.providers import openai_embeddings
from tether.providers._http import (
    HTTPClient,
    Target,
    error_detail,
    malformed,
    parse_json_event,
)
from tether.providers.base import CallContext
from tether.providers.pricing import Priced, PriceTable
from tether.providers.transport import Transport
from tether.providers.transports import transport_for
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelChunk,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolCallDelta,
    Usage,
)

KIND = "openai"
PATH = "/chat/completions"


class OpenAIProvider:
    """One OpenAI-compatible upstream: auth, base URL and the transport its requests go through."""

    kind = KIND

    def __init__(
        self,
        config: OpenAIProviderConfig,
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
        headers = {"accept": "application/json", **config.headers}
        if config.api_key is not None:
            headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self.http = HTTPClient(
            base_url=config.base_url,
            headers=headers,
            transport=transport or transport_for(config),
            provider=name,
        )

    def model(self, name: str) -> OpenAIModel:
        return OpenAIModel(self, name)

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass(slots=True)
class OpenAIModel:
    """One model behind an OpenAI-compatible endpoint. ``name`` is ``provider:model``."""

    provider: OpenAIProvider
    model_name: str

    @property
    def name(self) -> str:
        return f"{self.provider.name}:{self.model_name}"

    def _target(self) -> Target:
        return Target(self.provider.name, self.model_name, self.provider.http.url(PATH))

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        target = self._target()
        data = await self.provider.http.post_json(
            target, request_body(self.model_name, request, stream=False), ctx
        )
        try:
            return self._response(data, target)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise malformed(target, f"the response is not a chat completion ({exc!r})") from None

    def _response(self, data: dict[str, Any], target: Target) -> ModelResponse:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            if "error" in data:
                raise body_error(target, data)
            raise malformed(target, "the response has no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        usage = parse_usage(data.get("usage"))
        tool_calls = [parse_tool_call(raw) for raw in message.get("tool_calls") or []]
        reported = str(data.get("model") or self.model_name)
        priced = self.provider.pricing.cost(usage, reported, fallback=self.model_name)
        return ModelResponse(
            text=message.get("content") or "",
            usage=usage,
            model=reported,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
            finish_reason=choice.get("finish_reason") or "stop",
            tool_calls=tool_calls or None,
            logprobs=choice.get("logprobs"),
            refusal=_text_or_none(message.get("refusal")),
            system_fingerprint=_text_or_none(data.get("system_fingerprint")),
        )

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        """``POST {base_url}/embeddings`` (:mod:`tether.providers.openai_embeddings`); priced
        by input tokens."""
        url = self.provider.http.url(openai_embeddings.PATH)
        target = Target(self.provider.name, self.model_name, url)
        body = openai_embeddings.request_body(self.model_name, request)
        data = await self.provider.http.post_json(target, body, ctx)
        vectors, usage, reported = openai_embeddings.parse_response(
            target, data, len(request.inputs)
        )
        model = reported or self.model_name
        priced = self.provider.pricing.cost(usage, model, fallback=self.model_name)
        return EmbeddingResponse(
            vectors,
            usage,
            model,
            self.provider.name,
            priced.usd,
            cost_unknown=not priced.known,
        )

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        target = self._target()
        state = _StreamState(target)
        body = request_body(self.model_name, request, stream=True)
        async with aclosing(self.provider.http.events(target, body, ctx)) as events:
            async for event in events:
                if state.done:
                    continue  # read to the end so the connection goes back to the pool
                chunk = state.feed(event.data)
                if chunk is not None:
                    chunk.model = state.model or self.model_name
                    chunk.provider = self.provider.name
                    yield chunk
        if not state.done and state.finish_reason is None:
            raise malformed(
                target,
                "the stream ended before the answer was complete (no finish_reason, no [DONE])",
            )
        usage = state.usage
        priced = Priced(0.0)
        if usage is not None:
            reported = state.model or self.model_name
            priced = self.provider.pricing.cost(usage, reported, fallback=self.model_name)
        yield ModelChunk(
            usage=usage,
            finish_reason=state.finish_reason or "stop",
            model=state.model or self.model_name,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
            system_fingerprint=state.system_fingerprint,
        )


@dataclass(slots=True)
class _StreamState:
    """What a chat completions stream has said so far."""

    target: Target
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""
    system_fingerprint: str | None = None
    done: bool = False

    def feed(self, data: str) -> ModelChunk | None:
        """Digest one event's data; return a chunk when it carries text, tool calls or a
        refusal (with the delta's logprobs and the stream's system fingerprint)."""
        if data.strip() == "[DONE]":
            self.done = True
            return None
        obj = parse_json_event(self.target, data)
        if "error" in obj:
            raise body_error(self.target, obj)
        try:
            return self._digest(obj)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise malformed(
                self.target, f"unexpected stream chunk {data[:80]!r} ({exc!r})"
            ) from None

    def _digest(self, obj: dict[str, Any]) -> ModelChunk | None:
        self.model = str(obj.get("model") or self.model)
        self.system_fingerprint = _text_or_none(obj.get("system_fingerprint")) or (
            self.system_fingerprint
        )
        if obj.get("usage"):
            self.usage = parse_usage(obj["usage"])
        choices = obj.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta") or {}
        deltas = [
            ToolCallDelta(
                index=int(raw.get("index", i)),
                id=raw.get("id"),
                name=(raw.get("function") or {}).get("name"),
                arguments=(raw.get("function") or {}).get("arguments") or "",
            )
            for i, raw in enumerate(delta.get("tool_calls") or [])
        ]
        chunk = ModelChunk(
            text=delta.get("content") or "",
            tool_calls=deltas or None,
            logprobs=choice.get("logprobs"),
            refusal=_text_or_none(delta.get("refusal")),
            system_fingerprint=self.system_fingerprint,
        )
        return chunk if chunk.has_content else None


# ---------------------------------------------------------------- wire mapping


def wire_message(message: Message) -> dict[str, Any]:
    """A common :class:`Message` as an OpenAI chat message."""
    content: Any = message.parts if message.parts is not None else message.content
    out: dict[str, Any] = {"role": message.role, "content": content}
    if content is None and not message.tool_calls:
        out["content"] = ""
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type,
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def request_body(model: str, request: ModelRequest, *, stream: bool) -> dict[str, Any]:
    """The JSON body for ``/chat/completions``. ``request.extra`` goes in first, so what tether
    builds (model, messages, options, stream) always wins over it. The output limit goes under
    the name the caller used (``request.max_tokens_field``; ``max_completion_tokens`` in
    ``extra`` asks for that name too), with tether's value when it has one: newer OpenAI models
    refuse ``max_tokens``. Messages with parts (images, audio, files) are sent as those parts."""
    body: dict[str, Any] = dict(request.extra)
    body["model"] = model
    body["messages"] = [wire_message(m) for m in request.messages]
    options = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
    }
    if request.max_tokens_field == "max_completion_tokens" or "max_completion_tokens" in body:
        options["max_completion_tokens"] = options.pop("max_tokens")
        body.pop("max_tokens", None)
    body.update({key: value for key, value in options.items() if value is not None})
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def parse_usage(raw: Any) -> Usage:
    """``{prompt_tokens, completion_tokens}`` as :class:`Usage` (zeros when absent), with
    ``prompt_tokens_details.cached_tokens`` and ``completion_tokens_details.reasoning_tokens``."""
    if not isinstance(raw, dict):
        return Usage()
    prompt = raw.get("prompt_tokens_details")
    completion = raw.get("completion_tokens_details")
    return Usage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        int((prompt.get("cached_tokens") if isinstance(prompt, dict) else 0) or 0),
        int((completion.get("reasoning_tokens") if isinstance(completion, dict) else 0) or 0),
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_tool_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function") or {}
    return ToolCall(
        id=str(raw.get("id") or ""),
        name=str(function.get("name") or ""),
        arguments=str(function.get("arguments") or ""),
        type=str(raw.get("type") or "function"),
    )


def body_error(target: Target, data: dict[str, Any]) -> ProviderError:
    """An error object sent with a 2xx status (some proxies and mid-stream failures do)."""
    detail = error_detail(data) or "unknown error"
    return UpstreamError(
        f"{target.name}: the upstream reported an error: {detail}. Retry, or add a fallback model.",
        provider=target.provider,
        model=target.model,
        status_code=200,
        retryable=True,
    )
