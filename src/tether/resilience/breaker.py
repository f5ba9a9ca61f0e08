"""A circuit breaker per upstream: closed -> open -> half-open -> closed.

Closed: calls pass; outcomes fill a sliding window of the last ``window`` calls. When at least
``min_calls`` are in the window and the failure rate reaches ``failure_rate``, the breaker opens.
Open: calls fail fast with :class:`~tether.errors.CircuitOpen` for ``cooldown_s``.
Half-open: up to ``half_open_probes`` calls probe the upstream; that many successes close it,
any failure opens it again.

Only failures that say something about the upstream count (timeouts, 5xx, 429, broken streams,
refused connections); a 400 caused by the request does not.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from tether.config.models import BreakerConfig
from tether.errors import CircuitOpen, ProviderError, RateLimited, StreamInterrupted, Timeout
from tether.providers.base import CallContext, Model, embedder, split_name
from tether.resilience.streams import close_quietly
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)

BreakerState = Literal["closed", "open", "half_open"]
T = TypeVar("T")


def counts_against_upstream(error: BaseException) -> bool:
    if isinstance(error, CircuitOpen):
        return False
    if isinstance(error, Timeout | RateLimited | StreamInterrupted):
        return True
    return isinstance(error, ProviderError) and error.retryable


@dataclass
class CircuitBreaker:
    """The state of one upstream's breaker. Not tied to a feature: features share upstreams."""

    upstream: str
    config: BreakerConfig = field(default_factory=BreakerConfig)
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = "closed"
    opened_at: float = 0.0
    _window: deque[bool] = field(default_factory=deque)
    _probes_out: int = 0
    _probe_successes: int = 0

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when calls may pass)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.opened_at + self.config.cooldown_s - self.clock())

    def acquire(self) -> bool:
        """Admit a call or raise CircuitOpen. Returns True when the call is a half-open probe."""
        if self.state == "open":
            if self.retry_in() > 0:
                raise self._open_error()
            self.state, self._probes_out, self._probe_successes = "half_open", 0, 0
        if self.state == "half_open":
            if self._probes_out >= self.config.half_open_probes:
                raise self._open_error()
            self._probes_out += 1
            return True
        return False

    def record(self, ok: bool, probe: bool) -> None:
        if probe or self.state == "half_open":
            self._probes_out = max(0, self._probes_out - 1) if probe else self._probes_out
            if not ok:
                self._open()
                return
            self._probe_successes += 1
            if self._probe_successes >= self.config.half_open_probes:
                self.state = "closed"
                self._window.clear()
            return
        self._window.append(ok)
        while len(self._window) > self.config.window:
            self._window.popleft()
        failures = self._window.count(False)
        if (
            len(self._window) >= self.config.min_calls
            and failures / len(self._window) >= self.config.failure_rate
        ):
            self._open()

    def release(self, probe: bool) -> None:
        """A call ended with an outcome that says nothing about the upstream."""
        if probe:
            self._probes_out = max(0, self._probes_out - 1)

    def _open(self) -> None:
        self.state = "open"
        self.opened_at = self.clock()
        self._window.clear()

    def _open_error(self) -> CircuitOpen:
        provider, model = split_name(self.upstream)
        wait = self.retry_in() if self.state == "open" else 0.0
        return CircuitOpen(
            f"{self.upstream}: circuit open after repeated failures; next probe in {wait:.1f}s "
            "(tether routes to the fallbacks meanwhile)",
            retry_in_s=wait,
            provider=provider,
            model=model,
        )


@dataclass(slots=True)
class WithBreaker:
    inner: Model
    breaker: CircuitBreaker

    @property
    def name(self) -> str:
        return self.inner.name

    def _settle(self, error: BaseException | None, probe: bool) -> None:
        if error is None:
            self.breaker.record(True, probe)
        elif counts_against_upstream(error):
            self.breaker.record(False, probe)
        else:
            self.breaker.release(probe)

    def _admit(self, ctx: CallContext) -> bool:
        try:
            return self.breaker.acquire()
        except CircuitOpen as exc:
            ctx.trace.event("breaker_open", model=self.name, retry_in_s=round(exc.retry_in_s, 3))
            raise

    async def _guarded(self, ask: Callable[[], Awaitable[T]], ctx: CallContext) -> T:
        """One answer in one piece (a completion or embeddings), admitted and counted."""
        probe = self._admit(ctx)
        try:
            response = await ask()
        except BaseException as exc:
            self._settle(exc, probe)
            raise
        self._settle(None, probe)
        return response

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        return await self._guarded(lambda: self.inner.complete(request, ctx), ctx)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        return await self._guarded(lambda: embedder(self.inner).embed(request, ctx), ctx)

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        probe = self._admit(ctx)
        source = self.inner.stream(request, ctx)
        outcome: BaseException | None = None
        try:
            async for chunk in source:
                yield chunk
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            if isinstance(outcome, GeneratorExit):
                self.breaker.release(probe)
            else:
                self._settle(outcome, probe)
            await close_quietly(source)
