"""Records every attempt on the call's trace: upstream, status, error, timings, usage, cost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from tether.errors import ProviderError
from tether.providers.base import CallContext, Model, split_name
from tether.resilience.streams import close_quietly
from tether.telemetry.trace import Attempt
from tether.types import ModelChunk, ModelRequest, ModelResponse


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
    ``upstream`` is the ``provider:model`` reference as the config wrote it."""

    inner: Model
    upstream: str = ""

    @property
    def name(self) -> str:
        return self.upstream or self.inner.name

    def _start(self, ctx: CallContext, streamed: bool) -> Attempt:
        provider, _ = split_name(self.name)
        attempt = ctx.trace.start_attempt(self.name, provider, streamed=streamed)
        attempt.chain_position = ctx.chain_position
        return attempt

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        attempt = self._start(ctx, streamed=False)
        try:
            response = await self.inner.complete(request, ctx)
        except BaseException as exc:
            _fail(attempt, exc, ctx.trace.now_ms())
            raise
        attempt.end_ms = ctx.trace.now_ms()
        attempt.usage = response.usage
        attempt.cost_usd = response.cost_usd
        attempt.response_model = response.model or None
        return response

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        attempt = self._start(ctx, streamed=True)
        source = self.inner.stream(request, ctx)
        try:
            async for chunk in source:
                if attempt.ttft_ms is None and chunk.has_content:
                    attempt.ttft_ms = ctx.trace.now_ms() - attempt.start_ms
                if chunk.usage is not None:
                    attempt.usage = chunk.usage
                    attempt.cost_usd = chunk.cost_usd
                if chunk.model:
                    attempt.response_model = chunk.model
                yield chunk
        except GeneratorExit:
            attempt.error_class = "Cancelled"
            attempt.end_ms = ctx.trace.now_ms()
            raise
        except BaseException as exc:
            _fail(attempt, exc, ctx.trace.now_ms())
            raise
        finally:
            await close_quietly(source)
        attempt.end_ms = ctx.trace.now_ms()
