"""What a call returns: a :class:`Result`, or for streams :class:`StreamChunk` pieces whose last
one (``done=True``) carries the Result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tether.telemetry.trace import Trace
from tether.types import ToolCall, ToolCallDelta, Usage


@dataclass(slots=True)
class Result:
    """The answer, and everything a caller needs to be honest with its users about it.

    ``degraded`` is true when the answer is not a model's normal answer (the failure path
    answered, or a stream broke); ``reason`` then says why in a stable machine-readable word.
    ``model`` names the upstream that answered (None when the static failure response did).
    ``value`` is the typed answer an output guard produced (``json_schema``: the parsed JSON,
    or the pydantic model instance), else None.

    ``response_model`` is the model as the upstream that answered named it (e.g.
    ``gpt-4o-mini-2024-07-18``; None when no model answered). ``logprobs`` (the choice's
    logprobs object as the upstream sent it), ``refusal`` and ``system_fingerprint`` come from
    the answering response unchanged (None when it had none, and for streams, whose chunks carry
    their own).

    ``retry_after_s`` (degraded answers only) says in how many seconds the cause may pass: a
    budget's period ends (``budget_exceeded``), a rate limit refills; None when no wait helps.
    """

    output: str
    feature: str
    trace_id: str
    degraded: bool = False
    reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    variant: str = "default"
    model: str | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCall] | None = None
    value: Any = None
    response_model: str | None = None
    logprobs: Any = None
    refusal: str | None = None
    system_fingerprint: str | None = None
    retry_after_s: float | None = None
    trace: Trace | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``tether run --json`` and the native gateway endpoint."""
        data: dict[str, Any] = {
            "output": self.output,
            "degraded": self.degraded,
            "reason": self.reason,
            "trace_id": self.trace_id,
            "usage": self.usage.as_dict(),
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 3),
            "variant": self.variant,
            "feature": self.feature,
            "model": self.model,
            "finish_reason": self.finish_reason,
        }
        if self.retry_after_s is not None:
            data["retry_after_s"] = round(self.retry_after_s, 3)
        if self.value is not None:
            value = self.value
            data["value"] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        if self.tool_calls:
            data["tool_calls"] = [
                {"id": t.id, "type": t.type, "name": t.name, "arguments": t.arguments}
                for t in self.tool_calls
            ]
        return data


@dataclass(slots=True)
class StreamChunk:
    """A piece of a streamed answer. The last chunk has ``done=True`` and the ``result``; if
    the stream broke after the answer had started, it also has ``error`` (never a silent end).
    Chunks of a failure-path answer have ``degraded=True`` and the ``reason`` from the start.
    ``model`` is the model as the upstream streaming the answer named it ("" when unknown);
    ``logprobs``, ``refusal`` and ``system_fingerprint`` are the upstream delta's, unchanged."""

    text: str = ""
    tool_calls: list[ToolCallDelta] | None = None
    model: str = ""
    logprobs: Any = None
    refusal: str | None = None
    system_fingerprint: str | None = None
    degraded: bool = False
    reason: str | None = None
    done: bool = False
    result: Result | None = None
    error: str | None = None
