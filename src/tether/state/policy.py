"""What a call does when the shared state cannot be reached (``state.on_unavailable``), in one
place: :meth:`SharedState.checked`. Every stage and wrapper that needs the state goes through
it, never to the backend directly, so ``fail_closed`` and ``fail_open`` mean the same thing for
budgets, rate limits, the cache and breakers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from tether.config.state import StateConfig
from tether.errors import ConfigError, StateUnavailable
from tether.state.base import State

if TYPE_CHECKING:
    from tether.telemetry.trace import Trace

T = TypeVar("T")
OnUnavailable = Literal["fail_closed", "fail_open"]
WARN_EVERY_S = 10.0

logger = logging.getLogger("tether.state")


class SharedState:
    """The backend with the config's ``on_unavailable`` policy.

    ``fail_closed`` (the default): :class:`~tether.errors.StateUnavailable` propagates and the
    call takes its failure path (reason ``state_unavailable``). ``fail_open``: the call goes
    on as if the check passed (``default``), and says so: trace event ``state_unavailable``
    ``{what, policy: "fail_open"}`` and a warning in the log (at most once per 10 s per
    ``what``). Either way the next call asks the backend again: nothing switches to
    per-process counting."""

    def __init__(
        self,
        backend: State,
        on_unavailable: OnUnavailable = "fail_closed",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.on_unavailable: OnUnavailable = on_unavailable
        self._clock = clock
        self._warned: dict[str, float] = {}

    @classmethod
    def from_config(cls, config: StateConfig) -> SharedState:
        return cls(open_state(config), config.on_unavailable)

    async def checked(
        self,
        trace: Trace | None,
        what: str,
        op: Callable[[State], Awaitable[T]],
        default: T,
    ) -> T:
        """``op(backend)``, or, when the backend is unavailable and the policy is
        ``fail_open``, ``default`` (said on ``trace``, when there is one, and in the log)."""
        try:
            return await op(self.backend)
        except StateUnavailable as exc:
            if self.on_unavailable == "fail_closed":
                raise
            if trace is not None:
                trace.event("state_unavailable", what=what, policy="fail_open")
            self._warn(what, exc)
            return default

    async def best_effort(
        self,
        trace: Trace | None,
        what: str,
        op: Callable[[State], Awaitable[T]],
        default: T | None = None,
    ) -> T | None:
        """``op(backend)`` where an unavailable backend must never fail the call, whatever the
        policy: an update after the fact (a breaker told an attempt's outcome: the answer is
        already there) or an optimisation (a cache lookup). ``default`` stands in for the
        answer; the trace (event ``state_unavailable`` {what, policy}) and the log say so."""
        try:
            return await op(self.backend)
        except StateUnavailable as exc:
            if trace is not None:
                trace.event("state_unavailable", what=what, policy=self.on_unavailable)
            self._warn(what, exc)
            return default

    def _warn(self, what: str, exc: StateUnavailable) -> None:
        now = self._clock()
        last = self._warned.get(what)
        if last is not None and now - last < WARN_EVERY_S:
            return
        self._warned[what] = now
        logger.warning(
            "state unavailable for %s (state.on_unavailable: %s; calls go on unchecked when "
            "fail_open, outcomes already answered are not recorded): %s",
            what,
            self.on_unavailable,
            exc,
        )

    async def aclose(self) -> None:
        await self.backend.aclose()


def open_state(config: StateConfig) -> State:
    """The backend ``config`` names (no connection is made yet: Redis is first asked on the
    first call, so a server that is down at start-up is used as soon as it is up)."""
    if config.backend == "memory":
        from tether.state.memory import MemoryState

        return MemoryState()
    try:
        import redis.asyncio  # noqa: F401  # only to tell whether the extra is installed
    except ImportError as exc:
        raise ConfigError(
            "state.backend is redis but the redis client is not installed; run "
            "`pip install 'tether[redis]'` (or set state.backend: memory for one process)"
        ) from exc
    from tether.state.redis import RedisState

    return RedisState(config.url, prefix=config.prefix, timeout_s=config.timeout_s)
