"""Records every attempt on the call's trace: upstream, status, error, timings, usage, cost
(``cost_unknown`` when the model has no price), and the text a stream gave so far
(``chars_out``: what a stream cut before its usage came is charged by).

A model that raises something other than a :class:`~tether.errors.TetherError` (a bug in a
provider or in a user's wrapper) fails its attempt like a broken upstream: the exception is
logged with its traceback and becomes an :class:`~tether.errors.UpstreamError` with reason
``provider_bug``, so the breaker counts it, the chain falls back and the feature's failure path
answers, instead of the caller getting a 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tether.errors import ProviderError, TetherError, UpstreamError
from tether.providers.base import CallContext, Model, embedder, split_name
from tether.resilience.streams import close_quietly
from tether.telemetry.trace import Attempt, Operation
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)

Answered = TypeVar("Answered", ModelResponse, EmbeddingResponse)

log = logging.getLogger("tether.providers")


def _bug(upstream: str, error: Exception) -> UpstreamError:
    """A model's own exception, as the failed attempt it is (logged once, with its traceback)."""
    log.error("%s raised %s", upstream, type(error).__name__, exc_info=error)
    provider, model = split_name(upstream)
    return UpstreamError(
        f"{upstream} raised {type(error).__name__}: {error} (a bug in the provider or a "
        "wrapper; the traceback is in tether's log)",
        provider=provider,
        model=model,
        retryable=False,
        reason="provider_bug",
    )


def _cost(attempt: Attempt, usd: float, unknown: bool, ctx: CallContext) -> None:
    """The attempt's cost; a model with no price marks the attempt and the trace (event
    ``cost_unknown``, once per model) so its $0.00 is never read as free."""
    attempt.cost_usd = usd
    if not unknown:
        return
    attempt.cost_unknown = True
    trace = ctx.trace
    model = attempt.model
    if not any(e.kind == "cost_unknown" and e.data.get("model") == model for e in trace.events):
        trace.event("cost_unknown", model=model)
    trace.cost_unknown = True


def _fail(attempt: Attempt, error: BaseException, end_ms: float) -> None:
    attempt.status = "error"
    attempt.error_class = type(error).__name__
    attempt.error = str(error)
    if isinstance(error, ProviderError):
        attempt.status_code = error.status_code
    attempt.end_ms = end_ms


@dataclass(slots=True)
class Recorded:
    """Innermost-but-one wrapper: one :class:`Attempt` per call to the wrapped model.
    ``upstream`` is the ``provider:model`` reference as the config wrote it; ``position`` is
    the model's place in the feature's chain (0: the primary), kept on every attempt."""

    inner: Model
    upstream: str = ""
    position: int = 0

    @property
    def name(self) -> str:
        return self.upstream or self.inner.name

    def _start(self, ctx: CallContext, streamed: bool, operation: Operation = "chat") -> Attempt:
        provider, _ = split_name(self.name)
        attempt = ctx.trace.start_attempt(
            self.name, provider, streamed=streamed, operation=operation
        )
        attempt.chain_position = self.position
        return attempt

    def _failed(self, attempt: Attempt, exc: BaseException, ctx: CallContext) -> BaseException:
        """The attempt marked failed; returns what to raise (a model's own bug as UpstreamError,
        anything else as it is)."""
        error = exc
        if isinstance(exc, Exception) and not isinstance(exc, TetherError):
            error = _bug(self.name, exc)
        _fail(attempt, error, ctx.trace.now_ms())
        return error

    async def _attempt(
        self, ask: Callable[[], Awaitable[Answered]], ctx: CallContext, operation: Operation
    ) -> Answered:
        """One answer in one piece (a completion or embeddings) as one attempt."""
        attempt = self._start(ctx, streamed=False, operation=operation)
        try:
            response = await ask()
        except BaseException as exc:
            error = self._failed(attempt, exc, ctx)
            if error is exc:
                raise
            raise error from exc
        attempt.end_ms = ctx.trace.now_ms()
        attempt.usage = response.usage
        _cost(attempt, response.cost_usd, response.cost_unknown, ctx)
        attempt.response_model = response.model or None
        return response

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        return await self._attempt(lambda: self.inner.complete(request, ctx), ctx, "chat")

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        embed = embedder(self.inner).embed
        return await self._attempt(lambda: embed(request, ctx), ctx, "embeddings")

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        attempt = self._start(ctx, streamed=True)
        source = self.inner.stream(request, ctx)
        try:
            async for chunk in source:
                if attempt.ttft_ms is None and chunk.has_content:
                    attempt.ttft_ms = ctx.trace.now_ms() - attempt.start_ms
                attempt.chars_out += len(chunk.text)
                if chunk.usage is not None:
                    attempt.usage = chunk.usage
                    _cost(attempt, chunk.cost_usd, chunk.cost_unknown, ctx)
                if chunk.model:
                    attempt.response_model = chunk.model
                yield chunk
        except GeneratorExit:
            attempt.error_class = "Cancelled"
            attempt.end_ms = ctx.trace.now_ms()
            raise
        except BaseException as exc:
            error = self._failed(attempt, exc, ctx)
            if error is exc:
                raise
            raise error from exc
        finally:
            await close_quietly(source)
        attempt.end_ms = ctx.trace.now_ms()
