"""A fallback chain across upstreams.

Each model is tried in order; a :class:`~tether.errors.ProviderError` moves on to the next. When
nothing could even be tried because every breaker is open, the chain waits for the shortest
cooldown if it ends within the call's deadline, instead of failing at once. Streams may move on
only until their first content chunk.

A model that cannot honour the request (it needs tools, a ``json_schema``, image, audio or file
parts, logprobs: :mod:`tether.providers.capabilities`) is skipped before anything is tried: trace
event ``fallback_skipped`` {model, position, missing}, no attempt. When no model is left,
:class:`~tether.errors.CapabilityUnavailable` sends the call to the feature's failure path.

``first`` is the chain position of ``models[0]`` (a feature's chain from a later position on:
:meth:`~tether.resilience.chain.Chain.from_position`); an answer says which position gave it
(``ModelResponse.position``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tether.errors import CapabilityUnavailable, CircuitOpen, ProviderError
from tether.providers.base import CallContext, Model, embedder
from tether.providers.capabilities import Capabilities, needs
from tether.resilience.streams import close_quietly, pull_until_content
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)

Answered = TypeVar("Answered", ModelResponse, EmbeddingResponse)


Candidates = list[tuple[int, Model]]
"""The models a call may try, in order, with their index in ``Fallback.models``."""


@dataclass(slots=True)
class Fallback:
    """``capabilities[i]`` is what ``models[i]`` can honour (empty: every model honours every
    request); a model lacking what a request :func:`~tether.providers.capabilities.needs` is
    skipped without an attempt."""

    models: Sequence[Model]
    first: int = 0
    capabilities: Sequence[Capabilities] = ()

    @property
    def name(self) -> str:
        return self.models[0].name

    def _everyone(self) -> Candidates:
        return list(enumerate(self.models))

    def _honouring(self, request: ModelRequest, ctx: CallContext) -> Candidates:
        """The models that can honour ``request``; each other one is skipped (trace event
        ``fallback_skipped`` with its position and what it lacks). CapabilityUnavailable when
        none can: the feature's failure path answers instead."""
        needed = needs(request) if self.capabilities else frozenset()
        if not needed:
            return self._everyone()
        candidates: Candidates = []
        lacking: set[str] = set()
        for i, model in enumerate(self.models):
            missing = self.capabilities[i].missing(needed)
            if not missing:
                candidates.append((i, model))
                continue
            lacking.update(missing)
            ctx.trace.event(
                "fallback_skipped", model=model.name, position=self.first + i, missing=missing
            )
        if not candidates:
            names = ", ".join(m.name for m in self.models)
            raise CapabilityUnavailable(
                f"no model of the chain ({names}) can honour this request: it needs "
                f"{', '.join(sorted(needed))} and they lack {', '.join(sorted(lacking))}; add a "
                "model that can to the feature's fallbacks (or correct providers.NAME."
                "capabilities if the model table is wrong)",
                missing=sorted(lacking),
            )
        return candidates

    @staticmethod
    def _moving_on(ctx: CallContext, candidates: Candidates, k: int, error: ProviderError) -> None:
        if k + 1 < len(candidates):
            ctx.trace.event(
                "fallback",
                frm=candidates[k][1].name,
                to=candidates[k + 1][1].name,
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
        candidates = self._honouring(request, ctx)
        return await self._first_answer(lambda model: model.complete(request, ctx), ctx, candidates)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        return await self._first_answer(
            lambda model: embedder(model).embed(request, ctx), ctx, self._everyone()
        )

    async def _first_answer(
        self,
        ask: Callable[[Model], Awaitable[Answered]],
        ctx: CallContext,
        candidates: Candidates,
    ) -> Answered:
        """The first model's answer in one piece (a completion or embeddings) that did not
        fail, marked with its chain position."""
        while True:
            errors: list[ProviderError] = []
            for k, (i, model) in enumerate(candidates):
                try:
                    response = await ask(model)
                except ProviderError as exc:
                    errors.append(exc)
                    self._moving_on(ctx, candidates, k, exc)
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
        candidates = self._honouring(request, ctx)
        while True:
            errors: list[ProviderError] = []
            for k, (_, model) in enumerate(candidates):
                source = model.stream(request, ctx)
                try:
                    return await pull_until_content(source), source
                except ProviderError as exc:
                    await close_quietly(source)
                    errors.append(exc)
                    self._moving_on(ctx, candidates, k, exc)
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
