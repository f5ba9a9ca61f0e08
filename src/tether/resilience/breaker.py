"""A circuit breaker per upstream: closed -> open -> half-open -> closed, kept in the shared
state (``tether.state``), so a breaker opened on one replica is open on all of them.

Closed: calls pass; outcomes fill a sliding window of the last ``window`` calls. When at least
``min_calls`` are in the window and the failure rate reaches ``failure_rate``, the breaker opens.
Open: calls fail fast with :class:`~tether.errors.CircuitOpen` for ``cooldown_s``.
Half-open: up to ``half_open_probes`` calls probe the upstream; that many successes close it,
any failure opens it again (the algorithm: :class:`tether.state.window.BreakerWindow`).

Only failures that say something about the upstream count (timeouts, 5xx, 429, broken streams,
refused connections); a 400 caused by the request does not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tether.config.models import BreakerConfig
from tether.errors import CircuitOpen, ProviderError, RateLimited, StreamInterrupted, Timeout
from tether.providers.base import CallContext, Model, embedder, split_name
from tether.resilience.streams import close_quietly
from tether.state.base import Admission, Outcome
from tether.state.policy import SharedState
from tether.state.window import BreakerState, BreakerWindow
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)

__all__ = ["BreakerState", "CircuitBreaker", "WithBreaker", "counts_against_upstream"]

T = TypeVar("T")
ADMIT_UNCHECKED = Admission(True)  # fail_open: the state is down, the call goes
OUR_PACING = "upstream_rate_limit"  # the reason of tether.limits' pacing refusals


def counts_against_upstream(error: BaseException) -> bool:
    if isinstance(error, CircuitOpen):
        return False
    if isinstance(error, RateLimited) and error.reason == OUR_PACING:
        return False  # tether's own rate_limits.upstream held the call: the upstream is fine
    if isinstance(error, Timeout | RateLimited | StreamInterrupted):
        return True
    return isinstance(error, ProviderError) and error.retryable


def open_error(upstream: str, wait: float) -> CircuitOpen:
    provider, model = split_name(upstream)
    return CircuitOpen(
        f"{upstream}: circuit open after repeated failures; next probe in {wait:.1f}s "
        "(tether routes to the fallbacks meanwhile)",
        retry_in_s=wait,
        provider=provider,
        model=model,
    )


@dataclass
class CircuitBreaker(BreakerWindow):
    """One upstream's breaker in this process, raising instead of answering (for code that
    holds a breaker of its own; the wrappers keep theirs in the shared state)."""

    def acquire(self) -> bool:
        """Admit a call or raise CircuitOpen. Returns True when the call is a half-open probe."""
        admission = self.admit()
        if not admission.admitted:
            raise open_error(self.upstream, admission.retry_in_s)
        return admission.probe


def outcome_of(error: BaseException | None) -> Outcome:
    """What an attempt's end says about the upstream."""
    if error is None:
        return "ok"
    return "failure" if counts_against_upstream(error) else "neutral"


@dataclass(slots=True)
class WithBreaker:
    """Asks the upstream's breaker in the shared state before each attempt (one round trip on
    Redis) and tells it the outcome after (one more, none for an outcome that says nothing
    about the upstream). The state unreachable at admission: ``fail_open`` lets the attempt
    through and says so on the trace; ``fail_closed`` raises StateUnavailable (the failure
    path). Unreachable when the outcome is told: the answer (or error) stands, the trace says
    the outcome was not recorded."""

    inner: Model
    state: SharedState
    policy: BreakerConfig

    @property
    def name(self) -> str:
        return self.inner.name

    async def _settle(self, error: BaseException | None, probe: bool, ctx: CallContext) -> None:
        outcome = outcome_of(error)
        if outcome == "neutral" and not probe:
            return  # nothing to tell: no await, no round trip
        name, policy = self.name, self.policy
        await self.state.best_effort(  # the attempt is over: its answer or error stands
            ctx.trace, "breaker", lambda s: s.breaker_record(name, policy, outcome, probe)
        )

    async def _admit(self, ctx: CallContext) -> bool:
        """Whether the attempt is a half-open probe; CircuitOpen when it may not go."""
        name, policy = self.name, self.policy
        admission = await self.state.checked(
            ctx.trace, "breaker", lambda s: s.breaker_admit(name, policy), ADMIT_UNCHECKED
        )
        if not admission.admitted:
            wait = admission.retry_in_s
            ctx.trace.event("breaker_open", model=self.name, retry_in_s=round(wait, 3))
            raise open_error(self.name, wait)
        return admission.probe

    async def _guarded(self, ask: Callable[[], Awaitable[T]], ctx: CallContext) -> T:
        """One answer in one piece (a completion or embeddings), admitted and counted."""
        probe = await self._admit(ctx)
        try:
            response = await ask()
        except BaseException as exc:
            await self._settle(exc, probe, ctx)
            raise
        await self._settle(None, probe, ctx)
        return response

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        return await self._guarded(lambda: self.inner.complete(request, ctx), ctx)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        return await self._guarded(lambda: embedder(self.inner).embed(request, ctx), ctx)

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        probe = await self._admit(ctx)
        source = self.inner.stream(request, ctx)
        outcome: BaseException | None = None
        try:
            async for chunk in source:
                yield chunk
        except BaseException as exc:
            outcome = exc
            raise
        finally:
            try:
                # closed early (GeneratorExit): says nothing about the upstream
                await self._settle(outcome, probe, ctx)
            finally:
                await close_quietly(source)
