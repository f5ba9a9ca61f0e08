"""The model interface every provider implements and every resilience wrapper wraps.

A :class:`Provider` owns auth, base URL and the HTTP client; it hands out :class:`Model` objects,
which own the wire format. Wrappers (timeout, retry, breaker, fallback, and a caller's own:
``Tether(wrappers=[...])``) are Models around Models, so they compose:
``Chain([Retry(Breaker(Recorded(Timeout(yours(model))))), ...])``
(:mod:`tether.resilience.chain`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tether.telemetry.trace import Trace
from tether.types import ModelChunk, ModelRequest, ModelResponse


@dataclass(slots=True)
class CallContext:
    """Per-call state shared by the wrappers: the trace to append to and the total deadline
    (``time.monotonic()`` seconds, or None for no deadline)."""

    trace: Trace
    deadline: float | None = None

    def remaining(self) -> float | None:
        """Seconds left before the call's total deadline (never negative), or None."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


@runtime_checkable
class Model(Protocol):
    """One model behind one wire format. ``name`` is ``provider:model``."""

    @property
    def name(self) -> str: ...

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        """Answer the request in one piece."""
        ...

    def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        """Answer the request as deltas. Errors raise; the last chunk has ``finish_reason``."""
        ...


class Provider(Protocol):
    """Auth, base URL and client for one upstream; hands out models by name."""

    def model(self, name: str) -> Model: ...


class Closeable(Protocol):
    async def aclose(self) -> None: ...


def split_name(name: str) -> tuple[str, str]:
    """``"provider:model"`` -> ``("provider", "model")``."""
    provider, _, model = name.partition(":")
    return provider, model
