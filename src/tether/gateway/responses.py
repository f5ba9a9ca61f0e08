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
    trace_ids: list[str] | None = Field(
        default=None, description="With `n` > 1: the trace of each choice, in order."
    )


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(description="Input tokens the upstream served from its cache.")


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = Field(description="Output tokens the model spent reasoning.")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = Field(default=None, description="The model's refusal, if it refused.")
    tool_calls: list[WireToolCall] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: dict[str, Any] | None = Field(
        default=None, description="The upstream's logprobs (ask with `logprobs: true`)."
    )


class ChatCompletion(BaseModel):
    """``POST /v1/chat/completions`` without ``stream``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str = Field(
        description="The model that answered, as its upstream named it (the feature, as the "
        "request named it, when no model answered)."
    )
    system_fingerprint: str | None = None
    choices: list[Choice] = Field(description="One per `n` (each a run of the feature).")
    usage: CompletionUsage
    tether: TetherFacts


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = Field(
        default=None, description="Tool-call pieces: `index`, then `id`, `type`, `function`."
    )


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    """One event of a streamed answer. The last one before ``[DONE]`` has ``finish_reason`` and
    ``tether``; with ``stream_options.include_usage`` a final event has ``usage`` and no
    choices."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    tether: TetherFacts | None = None


class StreamError(BaseModel):
    """The event that ends a stream that broke after its first token (the SDKs raise on it)."""

    error: ErrorDetail
    tether: TetherFacts | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float | None] | None]
    text_offset: list[int]


class TextChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class TextCompletion(BaseModel):
    """``POST /v1/completions``: without ``stream``, the answer; with it, each event (the last
    one before ``[DONE]`` has ``finish_reason`` and ``tether``; with
    ``stream_options.include_usage`` a final event has ``usage`` and no choices)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str = Field(description="The model that answered (the feature when none did).")
    choices: list[TextChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
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


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(
        description="The vector: floats, or with `encoding_format: base64` its little-endian "
        "float32 bytes in base64."
    )


class EmbeddingList(BaseModel):
    """``POST /v1/embeddings``: one embedding per input, in order."""

    object: Literal["list"]
    data: list[Embedding]
    model: str = Field(description="The model that answered, as its upstream named it.")
    usage: EmbeddingUsage
    tether: TetherFacts


class OutputText(BaseModel):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any] = Field(default_factory=list)


class OutputRefusal(BaseModel):
    type: Literal["refusal"]
    refusal: str


class OutputMessage(BaseModel):
    """An answer's text (and the model's refusal, when it refused)."""

    type: Literal["message"]
    id: str
    status: Literal["completed", "incomplete", "in_progress"]
    role: Literal["assistant"]
    content: list[OutputText | OutputRefusal]


class OutputFunctionCall(BaseModel):
    """A tool call the model asks for; answer it with a ``function_call_output`` input item
    carrying the same ``call_id``."""

    type: Literal["function_call"]
    id: str
    call_id: str
    name: str
    arguments: str = Field(description="The arguments, as a JSON text.")
    status: Literal["completed", "incomplete", "in_progress"]


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: dict[str, int] = Field(description="`cached_tokens`: served from cache.")
    output_tokens: int
    output_tokens_details: dict[str, int] = Field(description="`reasoning_tokens`.")
    total_tokens: int


class ResponseObject(BaseModel):
    """``POST /v1/responses`` without ``stream`` (and ``GET /v1/responses/{response_id}``):
    the OpenAI ``response`` object. ``store`` says whether it was stored (for
    ``previous_response_id``)."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "in_progress"]
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    instructions: str | None
    max_output_tokens: int | None
    model: str = Field(description="The model that answered (the feature when none did).")
    output: list[OutputMessage | OutputFunctionCall]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: dict[str, Any] | None
    store: bool
    temperature: float | None
    text: dict[str, Any]
    tool_choice: Any
    tools: list[dict[str, Any]]
    top_p: float | None
    truncation: str
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]
    tether: TetherFacts | None = None


class ResponseDeleted(BaseModel):
    """``DELETE /v1/responses/{response_id}``."""

    id: str
    object: Literal["response.deleted"]
    deleted: Literal[True]


class ResponseStreamEvent(BaseModel):
    """One event of a streamed response (``event:`` names its ``type``): ``response.created``,
    ``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
    ``response.output_text.delta``, ``response.output_text.done``,
    ``response.content_part.done``, ``response.function_call_arguments.delta`` / ``.done``,
    ``response.output_item.done``, then ``response.completed`` (or ``response.incomplete``)
    carrying the whole response; or ``error`` when the stream broke after its first token."""

    model_config = ConfigDict(extra="allow")
    type: str
    sequence_number: int


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


class BudgetScopeStatus(BaseModel):
    """One budget scope of one feature in its current period."""

    model_config = ConfigDict(extra="allow")
    feature: str
    scope: Literal["user", "tenant", "key", "feature", "global"]
    identity: str | None = Field(description="The user, tenant or key id; null otherwise.")
    dimension: Literal["cost_usd", "tokens"]
    spent: float | None = Field(description="Settled so far (null: unknown in this process).")
    reserved: float | None = Field(description="Held by calls in flight (null: unknown).")
    limit: float
    mode: Literal["hard", "soft"]
    period: Literal["minute", "hour", "day", "month"]
    period_start: float = Field(description="Epoch seconds.")
    resets_at: float = Field(description="Epoch seconds: when the next period starts.")


class BudgetReport(BaseModel):
    """``GET /admin/budgets``: where each budget stands (``tether budgets status`` prints the
    same)."""

    backend: Literal["memory", "redis"]
    note: str | None = Field(description="What the numbers mean for this backend, if anything.")
    scopes: list[BudgetScopeStatus]


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
    TextCompletion,
    ModelList,
    EmbeddingList,
    ResponseObject,
    ResponseStreamEvent,
    ResponseDeleted,
    RunResult,
    Health,
    Readiness,
    TraceList,
    StoredTrace,
    BudgetReport,
)
