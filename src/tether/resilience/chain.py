"""Compose a feature's resilient model: per upstream ``WithRetry(WithBreaker(Recorded(
WithTimeout(wrappers(model)))))``, then a :class:`Chain` (fallback) across them.

``wrappers`` are a caller's own (``Tether(wrappers=[...])``): each a ``Callable[[Model], Model]``
applied around every model of the chain, primary and fallbacks, so it sees every attempt (a
retry too) and is bounded by the attempt's timeout; the first in the list is the outermost.

Each model of the chain has :class:`~tether.providers.capabilities.Capabilities` (what it can
honour: tools, json_schema, vision, audio, logprobs); a model that lacks what a request needs is
skipped without an attempt (trace event ``fallback_skipped``), so a text-only fallback never
answers an image, nor the local model a ``tool_choice: required``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tether.config.models import BreakerConfig, FeatureConfig
from tether.errors import ConfigError, StateUnavailable
from tether.providers.base import CallContext, Model, can_embed
from tether.providers.capabilities import EVERYTHING, Capabilities
from tether.resilience.breaker import WithBreaker
from tether.resilience.fallback import Fallback
from tether.resilience.recorder import Recorded
from tether.resilience.retry import WithRetry
from tether.resilience.timeout import WithTimeout
from tether.state.memory import MemoryState
from tether.state.policy import SharedState
from tether.state.window import BreakerWindow
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
)

Wrapper = Callable[[Model], Model]
logger = logging.getLogger("tether.resilience")


@dataclass(frozen=True, slots=True)
class BreakerSeen:
    """An upstream's breaker state as last read from the shared state (for the gauge)."""

    state: str


class UpstreamHealth:
    """Breakers and retry budgets, one per upstream (``provider:model``), shared by every
    feature that calls it, and kept in ``state``: with the Redis backend every replica sees
    the same breakers. The first feature to name an upstream sets its breaker policy.

    ``breakers`` (what the ``tether_breaker_state`` gauge reads) is live for the memory
    backend; for Redis it is the snapshot of the last ``await refresh()`` (call it before
    rendering ``/metrics``)."""

    def __init__(self, state: SharedState | None = None) -> None:
        self.state = state if state is not None else SharedState(MemoryState())
        self._policies: dict[str, BreakerConfig] = {}
        self._seen: dict[str, BreakerSeen] = {}

    def policy(self, upstream: str, config: BreakerConfig) -> BreakerConfig:
        """The upstream's breaker policy: the first one asked with."""
        return self._policies.setdefault(upstream, config)

    def breaker(self, upstream: str, config: BreakerConfig) -> BreakerWindow:
        """The upstream's breaker itself (memory backend only: Redis keeps it in the server)."""
        backend = self.state.backend
        if not isinstance(backend, MemoryState):
            raise TypeError(f"the {backend.name} state backend keeps breakers in the server")
        return backend.breaker(upstream, self.policy(upstream, config))

    @property
    def breakers(self) -> Mapping[str, BreakerWindow | BreakerSeen]:
        backend = self.state.backend
        return backend.breakers if isinstance(backend, MemoryState) else self._seen

    async def refresh(self) -> None:
        """Read every breaker's state from the shared state into ``breakers`` (a state that
        cannot be reached keeps the last snapshot, with a warning in the log)."""
        if isinstance(self.state.backend, MemoryState):
            return
        try:
            states = await self.state.backend.breaker_states()
        except StateUnavailable as exc:
            logger.warning("breaker states not refreshed (the gauge shows the last ones): %s", exc)
            return
        self._seen = {name: BreakerSeen(state) for name, state in states.items()}


@dataclass(frozen=True, slots=True)
class Chain:
    """A feature's models in fallback order, and itself a Model: the fallback across them
    from ``start`` on. ``from_position(i)`` is the same chain from position ``i`` (what a guard's
    ``fallback`` asks for); an answer's ``position`` and every attempt's ``chain_position``
    count from the primary (0) whatever the start."""

    models: tuple[Model, ...]
    start: int = 0
    capabilities: tuple[Capabilities, ...] = ()  # per model; empty: each honours every request
    _fallback: Fallback = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.start < len(self.models):
            raise ValueError(f"no model at position {self.start} of a chain of {len(self)}")
        if self.capabilities and len(self.capabilities) != len(self.models):
            raise ValueError(
                f"{len(self.capabilities)} capabilities for a chain of {len(self.models)} models"
            )
        honours = self.capabilities[self.start :]
        if all(c == EVERYTHING for c in honours):
            honours = ()  # nothing to skip: a request's needs are not even looked at
        fallback = Fallback(self.models[self.start :], self.start, honours)
        object.__setattr__(self, "_fallback", fallback)

    def __len__(self) -> int:
        return len(self.models)

    @property
    def name(self) -> str:
        return self.models[self.start].name

    @property
    def names(self) -> list[str]:
        """Every model's name, from the primary on (not only from ``start``)."""
        return [m.name for m in self.models]

    def from_position(self, position: int) -> Chain:
        """This chain from ``position`` on (ValueError past its end: check ``len`` first)."""
        return self if position == self.start else Chain(self.models, position, self.capabilities)

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        return await self._fallback.complete(request, ctx)

    def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        return self._fallback.stream(request, ctx)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        return await self._fallback.embed(request, ctx)


def build_chain(
    feature: FeatureConfig,
    resolve: Callable[[str], Model],
    health: UpstreamHealth,
    wrappers: Sequence[Wrapper] = (),
    capabilities: Callable[[str], Capabilities] | None = None,
) -> Chain:
    """``resolve`` turns a ``provider:model`` reference into the provider's bare model. An
    embedding feature's models, and each wrapper around them, must have ``embed`` (ConfigError
    naming the one that has not). ``capabilities`` gives what a reference's model can honour
    (the chain skips one that lacks what a request needs); None: every model honours every
    request."""
    wrapped: list[Model] = []
    embedding = feature.kind == "embedding"
    for position, ref in enumerate(feature.chain):
        model = resolve(ref)
        if embedding and not can_embed(model):
            raise ConfigError(
                f"model {ref!r} cannot embed ({type(model).__name__} has no embed method); an "
                "embedding feature's model and fallbacks must be openai, local or scripted models"
            )
        for wrapper in reversed(wrappers):
            model = wrapper(model)
            if embedding and not can_embed(model):
                raise ConfigError(
                    f"the wrapper {type(model).__name__} around {ref!r} has no embed method, and "
                    "this is an embedding feature; give the wrapper an `async def embed(self, "
                    "request, ctx)` that calls the model it wraps"
                )
        model = WithTimeout(model, feature.timeout_s, feature.first_token_timeout_s)
        model = Recorded(model, ref, position)
        model = WithBreaker(model, health.state, health.policy(model.name, feature.breaker))
        model = WithRetry(model, feature.retry, health.state)
        wrapped.append(model)
    honours = () if capabilities is None else tuple(capabilities(r) for r in feature.chain)
    return Chain(tuple(wrapped), capabilities=honours)
