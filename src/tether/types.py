"""Common wire-neutral types every provider maps to and from.

A request is a list of chat messages plus sampling options; a response is text (and/or tool
calls) plus token usage and cost. Streams yield :class:`ModelChunk` deltas; the last chunk of a
stream carries ``finish_reason`` and usually ``usage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


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
    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class ModelRequest:
    """What a model is asked. ``extra`` passes provider-specific options through untouched."""

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A model's answer in one piece. ``position`` is where in the feature's chain the model
    that answered sits (0: the primary); the chain sets it (:class:`~tether.resilience.chain.
    Chain`), nothing changes it afterwards."""

    text: str
    usage: Usage
    model: str
    provider: str
    cost_usd: float = 0.0
    finish_reason: str | None = "stop"
    tool_calls: list[ToolCall] | None = None
    position: int = 0


@dataclass(slots=True)
class ModelChunk:
    """One streamed delta. Content-bearing chunks have ``text`` or ``tool_calls``."""

    text: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str = ""
    provider: str = ""
    cost_usd: float = 0.0

    @property
    def has_content(self) -> bool:
        return bool(self.text) or bool(self.tool_calls)
