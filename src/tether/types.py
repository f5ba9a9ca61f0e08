"""Common wire-neutral types every provider maps to and from.

A request is a list of chat messages plus sampling options; a response is text (and/or tool
calls) plus token usage and cost. Streams yield :class:`ModelChunk` deltas; the last chunk of a
stream carries ``finish_reason`` and usually ``usage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]
"""``developer`` is OpenAI's newer name for a system instruction; the gateway keeps it, the
openai provider sends it as is, providers without it treat it as ``system``."""


@dataclass(slots=True)
class ToolCall:
    """A tool call requested by the model (OpenAI shape: arguments is a JSON string)."""

    id: str
    name: str
    arguments: str
    type: str = "function"


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call; pieces with the same ``index`` concatenate."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Message:
    """One chat message.

    ``parts`` holds the caller's content parts as sent (OpenAI chat shape, text parts included,
    in order) when the content was a list holding a non-text part (``image_url``,
    ``input_audio``, ``file``); ``content`` is then the text view (the text parts joined) for
    what only speaks text (capture, the local model). Providers that accept parts send
    ``parts``.
    """

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    parts: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class Usage:
    """Token counts. ``cached_input_tokens`` is the part of ``input_tokens`` the upstream served
    from its prompt cache; ``reasoning_tokens`` the part of ``output_tokens`` spent reasoning."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


@dataclass(slots=True)
class ModelRequest:
    """What a model is asked. ``extra`` passes provider-specific options through untouched.

    ``max_tokens_field`` is the name the caller used for the output limit; the openai provider
    sends ``max_tokens`` under that name (newer OpenAI models reject ``max_tokens``)."""

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A model's answer in one piece. ``position`` is where in the feature's chain the model
    that answered sits (0: the primary); the chain sets it (:class:`~tether.resilience.chain.
    Chain`), nothing changes it afterwards.

    ``logprobs`` is the choice's logprobs object as the upstream sent it, ``refusal`` the
    model's refusal text, ``system_fingerprint`` the upstream's backend fingerprint; ``model``
    is the model as the upstream named it when it said so."""

    text: str
    usage: Usage
    model: str
    provider: str
    cost_usd: float = 0.0
    finish_reason: str | None = "stop"
    tool_calls: list[ToolCall] | None = None
    position: int = 0
    logprobs: Any = None
    refusal: str | None = None
    system_fingerprint: str | None = None
    cost_unknown: bool = False  # the model has no price: cost_usd is 0.0, not free


@dataclass(slots=True)
class ModelChunk:
    """One streamed delta. Content-bearing chunks have ``text``, ``tool_calls`` or ``refusal``.

    ``logprobs`` is the delta's logprobs object as the upstream sent it; ``refusal`` a piece of
    refusal text; ``system_fingerprint`` the upstream's fingerprint when the chunk carried one."""

    text: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str = ""
    provider: str = ""
    cost_usd: float = 0.0
    logprobs: Any = None
    refusal: str | None = None
    system_fingerprint: str | None = None
    cost_unknown: bool = False  # on the usage chunk: the model has no price

    @property
    def has_content(self) -> bool:
        return bool(self.text) or bool(self.tool_calls) or bool(self.refusal)


@dataclass(slots=True)
class EmbeddingRequest:
    """What an embedding model is asked: one vector per input text, in order. ``dimensions``
    asks for shorter vectors (models that support it truncate and renormalise); ``extra`` passes
    provider-specific options through untouched."""

    inputs: list[str]
    dimensions: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    """An embedding model's answer: ``vectors[i]`` embeds ``inputs[i]``. ``usage`` counts the
    input tokens (an embedding has no output tokens); ``model`` is the model as the upstream
    named it; ``position`` is where in the feature's chain the model sits, as for chat."""

    vectors: list[list[float]]
    usage: Usage
    model: str
    provider: str
    cost_usd: float = 0.0
    position: int = 0
    cost_unknown: bool = False  # the model has no price: cost_usd is 0.0, not free
