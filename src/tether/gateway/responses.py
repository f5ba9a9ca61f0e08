"""The JSON the gateway answers with, as pydantic models: the response schemas of its OpenAPI
document (:mod:`tether.gateway.openapi`).

The handlers build their bodies as plain dicts (the hot path skips model validation); these
models describe those dicts. The end-to-end schemathesis test checks live responses against
them, so a handler that drifts from its documented shape fails CI. Models that describe stored
traces allow extra keys: a trace may carry more than the fields listed here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tether.gateway.wire import WireToolCall


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to do next.")
    type: str = Field(
        description="The OpenAI error type, e.g. invalid_request_error, authentication_error."
    )
    param: str | None = Field(description="The request field at fault, when there is one.")
    code: str | None = Field(description="tether's stable machine-readable reason.")


class ErrorEnvelope(BaseModel):
    """Every error response: the OpenAI error envelope."""

    error: ErrorDetail


class TetherFacts(BaseModel):
    """tether's facts about a call, beside the OpenAI fields (clients may ignore them)."""

    trace_id: str
    degraded: bool
    reason: str | None
    variant: str
    upstream: str | None = Field(description="The upstream that answered, `provider:model`.")
    cost_usd: float


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[WireToolCall] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    """``POST /v1/chat/completions`` without ``stream``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str = Field(description="The feature, as the request named it.")
    choices: list[Choice]
    usage: CompletionUsage
    tether: TetherFacts


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = Field(
        default=None, description="Tool-call pieces: `index`, then `id`, `type`, `function`."
    )


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: str | None


class ChatCompletionChunk(BaseModel):
    """One event of a streamed answer. The last one before ``[DONE]`` has ``finish_reason`` and
    ``tether``; with ``stream_options.include_usage`` a final event has ``usage`` and no
    choices."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    tether: TetherFacts | None = None


class StreamError(BaseModel):
    """The event that ends a stream that broke after its first token (the SDKs raise on it)."""

    error: ErrorDetail
    tether: TetherFacts | None = None


class ModelCard(BaseModel):
    id: str = Field(description="A feature name: pass it as `model`.")
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """``GET /v1/models``: the features the caller's key may call."""

    object: Literal["list"]
    data: list[ModelCard]


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class ResultToolCall(BaseModel):
    id: str
    type: str
    name: str
    arguments: str


class RunResult(BaseModel):
    """``POST /v1/features/{name}/run``: the feature's Result."""

    output: str
    degraded: bool
    reason: str | None
    trace_id: str
    usage: Usage
    cost_usd: float
    latency_ms: float
    variant: str
    feature: str
    model: str | None
    finish_reason: str | None
    value: Any = Field(default=None, description="The typed answer an output guard produced.")
    tool_calls: list[ResultToolCall] | None = None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="Each check: `ok`, or what failed.")


class TraceSummary(BaseModel):
    """One stored trace, without its steps."""

    model_config = ConfigDict(extra="allow")
    cursor: int
    id: str
    feature: str
    variant: str
    user: str | None
    status: str
    degraded: bool
    reason: str | None
    model: str | None
    started_at: float = Field(description="Unix time, seconds.")
    latency_ms: float
    usage: Usage
    cost_usd: float
    output: str | None


class TraceList(BaseModel):
    """``GET /admin/traces``: newest first."""

    data: list[TraceSummary]


class StoredTrace(BaseModel):
    """``GET /admin/traces/{trace_id}``: the whole trace, with its attempts, events and steps
    in time order."""

    model_config = ConfigDict(extra="allow")
    id: str
    feature: str
    cursor: int
    attempts: list[dict[str, Any]]
    events: list[dict[str, Any]]
    steps: list[dict[str, Any]]


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    ErrorEnvelope,
    ChatCompletion,
    ChatCompletionChunk,
    StreamError,
    ModelList,
    RunResult,
    Health,
    Readiness,
    TraceList,
    StoredTrace,
)
