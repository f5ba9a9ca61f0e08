"""A fallback chain across upstreams.

Each model is tried in order; a :class:`~tether.errors.ProviderError` moves on to the next. When
nothing could even be tried because every breaker is open, the chain waits for the shortest
cooldown if it ends within the call's deadline, instead of failing at once. Streams may move on
only until their first content chunk.

``first`` is the chain position of ``models[0]`` (a feature's chain from a later position on:
:meth:`~tether.resilience.chain.Chain.from_position`); an answer says which position gave it
(``ModelResponse.position``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from tether.errors import CircuitOpen, ProviderError
from tether.providers.base import CallContext, Model
from tether.resilience.streams import close_quietly, pull_until_content
from tether.types import ModelChunk, ModelRequest, ModelResponse


@dataclass(slots=True)
class Fallback:
    models: Sequence[Model]
    first: int = 0

    @property
    def name(self) -> str:
        return self.models[0].name

    def _moving_on(self, ctx: CallContext, i: int, error: ProviderError) -> None:
        if i + 1 < len(self.models):
            ctx.trace.event(
                "fallback",
                frm=self.models[i].name,
                to=self.models[i + 1].name,
                reason=error.reason,
            )

    async def _wait_for_breakers(self, ctx: CallContext, errors: list[ProviderError]) -> bool:
        """After a pass where every breaker was open: wait for the first probe, if in time."""
        if not errors or not all(isinstance(e, CircuitOpen) for e in errors):
            return False
        wait = min(e.retry_in_s for e in errors if isinstance(e, CircuitOpen))
        remaining = ctx.remaining()
        if remaining is not None and wait >= remaining:
            return False
        ctx.trace.event("breaker_wait", wait_s=round(wait, 3))
        await asyncio.sleep(wait)
        return True

    @staticmethod
    def _worst(errors: list[ProviderError]) -> ProviderError:
        """The error to report: the last real failure, else the last open breaker."""
        real = [e for e in errors if not isinstance(e, CircuitOpen)]
        return (real or errors)[-1]

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        while True:
            errors: list[ProviderError] = []
            for i, model in enumerate(self.models):
                try:
                    response = await model.complete(request, ctx)
                except ProviderError as exc:
                    errors.append(exc)
                    self._moving_on(ctx, i, exc)
                    continue
                position = self.first + i
                if response.position == position:
                    return response
                return dataclasses.replace(response, position=position)
            if not await self._wait_for_breakers(ctx, errors):
                raise self._worst(errors)

    async def _open_first(
        self, request: ModelRequest, ctx: CallContext
    ) -> tuple[list[ModelChunk], AsyncIterator[ModelChunk]]:
        while True:
            errors: list[ProviderError] = []
            for i, model in enumerate(self.models):
                source = model.stream(request, ctx)
                try:
                    return await pull_until_content(source), source
                except ProviderError as exc:
                    await close_quietly(source)
                    errors.append(exc)
                    self._moving_on(ctx, i, exc)
            if not await self._wait_for_breakers(ctx, errors):
                raise self._worst(errors)

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        head, source = await self._open_first(request, ctx)
        try:
            for chunk in head:
                yield chunk
            async for chunk in source:
                yield chunk
        finally:
            await close_quietly(source)
