"""Pacing the calls tether makes to an upstream: ``rate_limits.upstream: {rpm, tpm}``.

:class:`Paced` wraps each model of a feature's chain (``complete``, ``stream`` and ``embed``)
and, before every attempt, takes from that upstream's token buckets in the shared state (one
bucket per ``provider:model`` and dimension, shared by every feature and every replica calling
it: declare the same limit wherever an upstream is named). When the buckets are empty it waits
(``asyncio.sleep``) until they admit, so a burst of callers is spread over time instead of
turning into the upstream's 429s; trace event ``upstream_paced`` {model, waited_s}. A wait that
would not end before the attempt's time is up (the call's deadline, the feature's
``timeout_s``, or its ``first_token_timeout_s`` for a stream) is not started: the attempt
fails at once with :class:`~tether.errors.RateLimited` (reason ``upstream_rate_limit``, not
retryable), so the chain falls back to its next model.

Tokens: an attempt takes its prompt's tokens plus its ``max_tokens`` (the budget's
``default_max_tokens`` without one), then the bucket is corrected to the usage the upstream
reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.errors import RateLimited
from tether.providers.base import CallContext, Model, embedder, split_name
from tether.resilience.streams import close_quietly
from tether.state.base import Bucket, key_part
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
    Usage,
)

if TYPE_CHECKING:
    from tether.config.budgets import RateLimit
    from tether.config.features import FeatureConfig
    from tether.pipeline.services import Services
    from tether.resilience.chain import Wrapper
    from tether.state.base import State


# what an attempt gets when the state is unavailable and the policy is fail_open: admitted,
# and nothing taken (so nothing to correct afterwards)
_UNCHECKED: tuple[float, int | None] = (-1.0, None)


@dataclass(frozen=True, slots=True)
class _Taken:
    buckets: tuple[Bucket, ...]
    amounts: tuple[float, ...]
    tpm: int | None  # the index of the tpm bucket, if any


@dataclass(slots=True)
class Paced:
    """``inner`` called no faster than ``limit`` allows (see the module docstring).
    ``attempt_s`` / ``first_token_s`` bound a wait as the attempt's timeouts do."""

    inner: Model
    limit: RateLimit
    services: Services
    attempt_s: float
    first_token_s: float | None = None
    default_max_tokens: int = 1024

    @property
    def name(self) -> str:
        return self.inner.name

    def _buckets(self, tokens: float) -> _Taken:
        base = f"rl:upstream:{key_part(self.name)}:"
        buckets: list[Bucket] = []
        amounts: list[float] = []
        tpm: int | None = None
        if self.limit.rpm is not None:
            buckets.append(Bucket(base + "rpm", float(self.limit.rpm), self.limit.rpm / 60.0))
            amounts.append(1.0)
        if self.limit.tpm is not None:
            tpm = len(buckets)
            capacity = float(self.limit.tpm)
            buckets.append(Bucket(base + "tpm", capacity, capacity / 60.0))
            amounts.append(min(tokens, capacity))
        return _Taken(tuple(buckets), tuple(amounts), tpm)

    async def _admit(self, ctx: CallContext, tokens: float, streamed: bool) -> _Taken | None:
        """Wait until the buckets admit the attempt (what it took; None: the state could not
        be asked and fail_open let it through), or raise RateLimited when that would take
        longer than the attempt may."""
        taken = self._buckets(tokens)
        limit = (self.first_token_s or self.attempt_s) if streamed else self.attempt_s
        remaining = ctx.remaining()
        if remaining is not None:
            limit = min(limit, remaining)

        async def take(state: State) -> tuple[float, int | None]:
            return await state.take(taken.buckets, taken.amounts)

        waited = 0.0
        while True:
            wait, _ = await self.services.state.checked(
                ctx.trace, "upstream_rate_limit", take, _UNCHECKED
            )
            if wait < 0:
                return None
            if wait == 0:
                break
            if waited + wait >= limit:
                provider, model = split_name(self.name)
                raise RateLimited(
                    f"{self.name}: rate_limits.upstream admits the next call in {wait:.2f}s, "
                    f"later than this attempt may wait ({max(0.0, limit - waited):.2f}s left); "
                    "the chain falls back. Raise rate_limits.upstream, the timeout, or add a "
                    "fallback",
                    retry_after_s=wait,
                    provider=provider,
                    model=model,
                    retryable=False,
                    reason="upstream_rate_limit",
                )
            await asyncio.sleep(wait)
            waited += wait
        if waited:
            ctx.trace.event("upstream_paced", model=self.name, waited_s=round(waited, 3))
        return taken

    async def _settle(self, ctx: CallContext, taken: _Taken | None, usage: Usage | None) -> None:
        """The tpm bucket corrected from the estimate to the reported usage (none: as is)."""
        if taken is None or taken.tpm is None or usage is None:
            return
        delta = usage.total_tokens - taken.amounts[taken.tpm]
        if not delta:
            return
        bucket = (taken.buckets[taken.tpm],)

        async def adjust(state: State) -> None:
            await state.adjust(bucket, (delta,), wait=False)  # nothing waits for its answer

        # the attempt has its answer: a correction that cannot be written never fails it
        await self.services.state.best_effort(ctx.trace, "upstream_rate_limit", adjust)

    async def _tokens(self, request: ModelRequest) -> float:
        if self.limit.tpm is None:
            return 0.0
        prompt = await self.services.tokens.acount(self.name, request)
        return float(prompt + (request.max_tokens or self.default_max_tokens))

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        taken = await self._admit(ctx, await self._tokens(request), streamed=False)
        response = await self.inner.complete(request, ctx)
        await self._settle(ctx, taken, response.usage)
        return response

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        taken = await self._admit(ctx, await self._tokens(request), streamed=True)
        usage: Usage | None = None
        source = self.inner.stream(request, ctx)
        try:
            async for chunk in source:
                if chunk.usage is not None:
                    usage = chunk.usage
                yield chunk
        finally:
            await close_quietly(source)
        await self._settle(ctx, taken, usage)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        tokens = 0.0
        if self.limit.tpm is not None:
            tokens = float(
                sum(self.services.tokens.count_text(self.name, t) for t in request.inputs)
            )
        taken = await self._admit(ctx, tokens, streamed=False)
        response = await embedder(self.inner).embed(request, ctx)
        await self._settle(ctx, taken, response.usage)
        return response


def upstream_wrapper(feature: FeatureConfig, services: Services) -> Wrapper | None:
    """A wrapper pacing every model of the feature's chain by ``rate_limits.upstream`` (None
    when the feature sets none)."""
    limit = feature.rate_limits.upstream
    if limit is None:
        return None
    attempt_s, first_token_s = feature.timeout_s, feature.first_token_timeout_s
    default_max_tokens = feature.budgets.default_max_tokens

    def wrap(model: Model) -> Model:
        return Paced(model, limit, services, attempt_s, first_token_s, default_max_tokens)

    return wrap
