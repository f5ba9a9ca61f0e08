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
from typing import Protocol, cast, runtime_checkable

from tether.telemetry.trace import Trace
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)


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


@runtime_checkable
class Embedder(Protocol):
    """A model that also embeds texts (``openai``, ``local``, ``scripted``, and every
    resilience wrapper). An embedding feature's chain holds only models that have ``embed``
    (checked when the feature is compiled: :func:`can_embed`)."""

    @property
    def name(self) -> str: ...

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        """One vector per input text, in order."""
        ...


def can_embed(model: object) -> bool:
    """Whether ``model`` has an ``embed`` method (a wrapper's says nothing about the model it
    wraps: check the bare model, then each wrapper)."""
    return callable(getattr(model, "embed", None))


def embedder(model: Model) -> Embedder:
    """``model`` as an :class:`Embedder` (TypeError if it has no ``embed``: compiling an
    embedding feature checks every model of its chain first, so this is a bug if it raises)."""
    if not can_embed(model):
        raise TypeError(f"{model.name} ({type(model).__name__}) has no embed method")
    return cast(Embedder, model)


class Provider(Protocol):
    """Auth, base URL and client for one upstream; hands out models by name."""

    def model(self, name: str) -> Model: ...


class Closeable(Protocol):
    async def aclose(self) -> None: ...


def split_name(name: str) -> tuple[str, str]:
    """``"provider:model"`` -> ``("provider", "model")``."""
    provider, _, model = name.partition(":")
    return provider, model
