"""A scripted provider: the test double that ships with tether, for its tests and yours.

    provider = ScriptedProvider([Reply("hello"), Fail(UpstreamError("boom")), "plain text"])

Each call takes the next step of the script (cycling when ``cycle`` is true, else repeating the
last). A step can also be a function of the request. Usage is counted in whitespace words unless
the reply says otherwise; cost is 0 unless the provider is priced (``pricing``: in a config,
``providers.NAME.prices``), which is how budget tests give scripted calls a real cost.

Embedding calls (``embed``) take steps from the same script: a :class:`Fail` fails them as it
fails a completion; any other step answers with :func:`hashed_vector` of each input text (the
same text always gets the same unit vector, ``dimensions`` long: the request's, else the
provider's, default 8).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from tether.config.models import ScriptedProviderConfig, ScriptedReplyConfig
from tether.errors import ProviderError, RateLimited, Timeout, UpstreamError
from tether.providers.base import CallContext, Model
from tether.providers.pricing import Priced, Pricing
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


@dataclass(slots=True)
class Reply:
    """A scripted answer, streamed in ``chunks`` pieces (0 = one per word)."""

    text: str = ""
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    chunks: int = 0
    usage: Usage | None = None
    tool_calls: list[ToolCall] | None = None
    cut_after_chunks: int | None = None


@dataclass(slots=True)
class Fail:
    """A scripted failure, raised after ``delay_s``."""

    error: ProviderError
    delay_s: float = 0.0


Step = Reply | Fail | str
Script = Sequence[Step] | Callable[[ModelRequest], Step]
DEFAULT_DIMENSIONS = 8


def hashed_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for ``text``: SHA-256 in counter mode, read as signed
    32-bit integers, normalised. Equal texts get equal vectors; different texts, unrelated
    ones (this is a test double: it knows nothing of meaning)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend(float(v) for v in struct.unpack("<8i", digest))
        counter += 1
    del values[dimensions:]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@dataclass(slots=True)
class ScriptedProvider:
    """Answers from a script. ``calls`` records every request it received."""

    script: Script = field(default_factory=lambda: [Reply("scripted reply")])
    name: str = "scripted"
    cycle: bool = True
    calls: list[ModelRequest] = field(default_factory=list)
    dimensions: int = DEFAULT_DIMENSIONS
    embed_calls: list[EmbeddingRequest] = field(default_factory=list)
    pricing: Pricing | None = None  # None: free
    _index: int = 0

    @classmethod
    def from_config(
        cls, name: str, config: ScriptedProviderConfig, pricing: Pricing | None = None
    ) -> ScriptedProvider:
        replies = [_step_from_config(r) for r in config.replies]
        return cls(replies, name=name, dimensions=config.dimensions, pricing=pricing)

    def priced(self, usage: Usage, model: str) -> Priced:
        """What ``usage`` cost on ``model`` (0.0 and known when the provider is unpriced)."""
        return Priced(0.0) if self.pricing is None else self.pricing.cost(usage, model)

    def model(self, name: str) -> Model:
        return ScriptedModel(self, name)

    def next_step(self, request: ModelRequest) -> Reply | Fail:
        self.calls.append(request)
        step = self.script(request) if callable(self.script) else self._scripted()
        return Reply(step) if isinstance(step, str) else step

    def next_embed_step(self, request: EmbeddingRequest) -> Reply | Fail:
        """The next step for an embedding call (a script that is a function of a chat request
        answers every embedding call)."""
        self.embed_calls.append(request)
        step = Reply() if callable(self.script) else self._scripted()
        return Reply(step) if isinstance(step, str) else step

    def _scripted(self) -> Step:
        assert not callable(self.script)
        steps = self.script
        i = self._index % len(steps) if self.cycle else min(self._index, len(steps) - 1)
        self._index += 1
        return steps[i]

    async def aclose(self) -> None:
        return None


def _step_from_config(reply: ScriptedReplyConfig) -> Reply | Fail:
    if reply.error is None:
        return Reply(
            reply.text, reply.delay_s, reply.chunk_delay_s, reply.chunks, cut_after_chunks=None
        )
    message = f"scripted {reply.error}"
    error: ProviderError
    if reply.error == "timeout":
        error = Timeout(message)
    elif reply.error == "rate_limited":
        error = RateLimited(message, retry_after_s=reply.retry_after_s)
    elif reply.error == "bad_request":
        error = UpstreamError(message, status_code=400, retryable=False)
    else:
        error = UpstreamError(message, status_code=503 if reply.error == "upstream_error" else None)
    return Fail(error, reply.delay_s)


def _count_words(messages: list[Message]) -> int:
    return sum(len((m.content or "").split()) for m in messages)


def _pieces(text: str, chunks: int) -> list[str]:
    if not text:
        return []
    if chunks <= 0:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]
    size = max(1, -(-len(text) // chunks))
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass(slots=True)
class ScriptedModel:
    provider: ScriptedProvider
    model_name: str

    @property
    def name(self) -> str:
        return f"{self.provider.name}:{self.model_name}"

    def _usage(self, request: ModelRequest, reply: Reply) -> Usage:
        if reply.usage is not None:
            return reply.usage
        return Usage(_count_words(request.messages), len(reply.text.split()))

    def _raise(self, fail: Fail) -> None:
        fail.error.provider = fail.error.provider or self.provider.name
        fail.error.model = fail.error.model or self.model_name
        raise fail.error

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        step = self.provider.next_step(request)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if isinstance(step, Fail):
            self._raise(step)
        assert isinstance(step, Reply)
        usage = self._usage(request, step)
        priced = self.provider.priced(usage, self.model_name)
        return ModelResponse(
            text=step.text,
            usage=usage,
            model=self.model_name,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
            finish_reason="tool_calls" if step.tool_calls else "stop",
            tool_calls=step.tool_calls,
        )

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        step = self.provider.next_embed_step(request)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if isinstance(step, Fail):
            self._raise(step)
        assert isinstance(step, Reply)
        dimensions = request.dimensions or self.provider.dimensions
        words = sum(len(text.split()) for text in request.inputs)
        usage = step.usage if step.usage is not None else Usage(words, 0)
        priced = self.provider.priced(usage, self.model_name)
        return EmbeddingResponse(
            vectors=[hashed_vector(text, dimensions) for text in request.inputs],
            usage=usage,
            model=self.model_name,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
        )

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        step = self.provider.next_step(request)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if isinstance(step, Fail):
            self._raise(step)
        assert isinstance(step, Reply)
        for n, piece in enumerate(_pieces(step.text, step.chunks)):
            if step.cut_after_chunks is not None and n >= step.cut_after_chunks:
                raise UpstreamError(
                    "scripted stream cut mid-answer",
                    provider=self.provider.name,
                    model=self.model_name,
                )
            if step.chunk_delay_s and n:
                await asyncio.sleep(step.chunk_delay_s)
            yield ModelChunk(text=piece, model=self.model_name, provider=self.provider.name)
        for i, call in enumerate(step.tool_calls or []):
            delta = ToolCallDelta(i, call.id, call.name, call.arguments)
            yield ModelChunk(tool_calls=[delta], model=self.model_name, provider=self.provider.name)
        usage = self._usage(request, step)
        priced = self.provider.priced(usage, self.model_name)
        yield ModelChunk(
            usage=usage,
            finish_reason="tool_calls" if step.tool_calls else "stop",
            model=self.model_name,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
        )
