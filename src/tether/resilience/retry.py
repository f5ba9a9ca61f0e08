"""Retries of one upstream: exponential backoff with full jitter, Retry-After honoured, all
inside a retry budget so that retries cannot multiply load on an upstream that is already down.
The budget (:class:`~tether.state.window.RetryBudget`'s rule) is kept in the shared state, so
the replicas of a deployment share one budget per upstream.

Streams are retried only until their first content chunk; a failure after that becomes
:class:`~tether.errors.StreamInterrupted` and is never retried.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tether.config.models import RetryConfig
from tether.errors import CircuitOpen, ProviderError, RateLimited, StreamInterrupted
from tether.providers.base import CallContext, Model, embedder, split_name
from tether.resilience.streams import close_quietly, pull_until_content
from tether.state.policy import SharedState
from tether.state.window import BUDGET_WINDOW_S, RetryBudget
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)

__all__ = ["BUDGET_WINDOW_S", "RetryBudget", "WithRetry", "backoff_delay"]

T = TypeVar("T")
RETRY_UNCHECKED = True  # fail_open: the state is down, the retry goes


def backoff_delay(config: RetryConfig, retry_number: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**n)]."""
    cap = min(config.backoff_max_s, config.backoff_base_s * (2**retry_number))
    return rng.uniform(0.0, cap)


@dataclass(slots=True)
class WithRetry:
    """Asks the attempt again while a retry is worth it and the upstream's retry budget (in
    ``state``) has room; the calls it is a fraction of are counted by the breaker's admission
    (``WithBreaker`` inside), so the budget costs a round trip only when a retry is asked
    for."""

    inner: Model
    config: RetryConfig
    state: SharedState
    rng: random.Random = field(default_factory=random.Random)

    @property
    def name(self) -> str:
        return self.inner.name

    async def _should_retry(self, error: ProviderError, n: int, ctx: CallContext) -> bool:
        """Decide, record and sleep. ``n`` is the number of attempts made so far."""
        if isinstance(error, CircuitOpen | StreamInterrupted) or not error.retryable:
            return False
        if n >= self.config.max_attempts:
            return False
        delay = backoff_delay(self.config, n - 1, self.rng)
        if isinstance(error, RateLimited) and error.retry_after_s is not None:
            if error.retry_after_s > self.config.max_retry_after_s:
                ctx.trace.event(
                    "retry_skipped",
                    model=self.name,
                    why="retry_after_too_long",
                    retry_after_s=error.retry_after_s,
                )
                return False
            delay = error.retry_after_s
        remaining = ctx.remaining()
        if remaining is not None and delay >= remaining:
            ctx.trace.event("retry_skipped", model=self.name, why="deadline", delay_s=delay)
            return False
        if not await self._budget_allows(ctx):
            ctx.trace.event("retry_skipped", model=self.name, why="retry_budget_exhausted")
            return False
        ctx.trace.event(
            "retry",
            model=self.name,
            attempt=n + 1,
            delay_s=round(delay, 4),
            error=type(error).__name__,
        )
        await asyncio.sleep(delay)
        return True

    async def _budget_allows(self, ctx: CallContext) -> bool:
        name, ratio, floor = self.name, self.config.budget_ratio, self.config.budget_min_retries
        return await self.state.checked(
            ctx.trace,
            "retry_budget",
            lambda s: s.retry_spend(name, ratio, floor, BUDGET_WINDOW_S),
            RETRY_UNCHECKED,
        )

    async def _retried(self, ask: Callable[[], Awaitable[T]], ctx: CallContext) -> T:
        """One answer in one piece (a completion or embeddings), asked again while a retry is
        worth it."""
        n = 0
        while True:
            n += 1
            try:
                return await ask()
            except ProviderError as exc:
                if not await self._should_retry(exc, n, ctx):
                    raise

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        return await self._retried(lambda: self.inner.complete(request, ctx), ctx)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        return await self._retried(lambda: embedder(self.inner).embed(request, ctx), ctx)

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        n = 0
        while True:
            n += 1
            source = self.inner.stream(request, ctx)
            try:
                head = await pull_until_content(source)
            except ProviderError as exc:
                await close_quietly(source)
                if await self._should_retry(exc, n, ctx):
                    continue
                raise
            break
        try:
            for chunk in head:
                yield chunk
            async for chunk in source:
                yield chunk
        except StreamInterrupted:
            raise
        except ProviderError as exc:
            provider, model = split_name(self.name)
            raise StreamInterrupted(
                f"{self.name}: the stream broke after the answer had started ({exc}); "
                "the partial answer is incomplete, ask again",
                provider=provider,
                model=model,
                status_code=exc.status_code,
            ) from exc
        finally:
            await close_quietly(source)
