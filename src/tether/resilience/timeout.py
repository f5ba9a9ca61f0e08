"""Deadlines around one attempt: time to first token, per attempt, and the call's total."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tether.errors import Timeout
from tether.providers.base import CallContext, Model, embedder, split_name
from tether.resilience.streams import close_quietly
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)

T = TypeVar("T")


@dataclass(slots=True)
class WithTimeout:
    """Bounds one attempt by ``attempt_s`` (and by what is left of the call's deadline).

    Streams: the first content chunk must arrive within ``first_token_s``; after that each chunk
    must follow the previous one within ``attempt_s``.
    """

    inner: Model
    attempt_s: float
    first_token_s: float | None = None

    @property
    def name(self) -> str:
        return self.inner.name

    def _limit(self, ctx: CallContext, base: float) -> float:
        remaining = ctx.remaining()
        return base if remaining is None else min(base, remaining)

    def _error(self, what: str, seconds: float) -> Timeout:
        provider, model = split_name(self.inner.name)
        return Timeout(
            f"{self.inner.name}: {what} within {seconds:.3g}s; raise timeout_s or check the "
            "upstream's health",
            provider=provider,
            model=model,
        )

    async def _bounded(self, ask: Callable[[], Awaitable[T]], ctx: CallContext) -> T:
        """One answer in one piece (a completion or embeddings), within the attempt's limit."""
        limit = self._limit(ctx, self.attempt_s)
        try:
            async with asyncio.timeout(limit):
                return await ask()
        except TimeoutError:
            raise self._error("no answer", limit) from None

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        return await self._bounded(lambda: self.inner.complete(request, ctx), ctx)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        return await self._bounded(lambda: embedder(self.inner).embed(request, ctx), ctx)

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        source = self.inner.stream(request, ctx)
        started = False
        try:
            while True:
                base = self.attempt_s if started else (self.first_token_s or self.attempt_s)
                limit = self._limit(ctx, base)
                try:
                    async with asyncio.timeout(limit):
                        chunk = await anext(source)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    what = "no further chunk" if started else "no first token"
                    raise self._error(what, limit) from None
                started = started or chunk.has_content
                yield chunk
        finally:
            await close_quietly(source)
