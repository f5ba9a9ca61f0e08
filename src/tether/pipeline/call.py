"""One call on its way through the pipeline (:class:`Call`), and its answer on the way back out
through the stages (:class:`Answer`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tether.providers.base import CallContext
from tether.telemetry.trace import Trace
from tether.types import ModelRequest, ModelResponse

if TYPE_CHECKING:
    from tether.pipeline.feature import CompiledFeature
    from tether.pipeline.guarding import CallGuards
    from tether.resilience.chain import Chain


@dataclass(slots=True)
class Answer:
    """An answer on its way back out through the stages' ``after``.

    ``response`` is the answer as the model (or the stage that answered, e.g. a cache hit) gave
    it; ``text`` is what the caller gets, ``traced`` what the trace keeps (placeholders in where
    a guard redacted), ``value`` the typed answer an output guard produced (else None). An
    embedding call's answer has ``vectors`` (its ``response`` has no text, only the usage and
    the model). A stage that changes the answer returns a new one (``dataclasses.replace``)."""

    response: ModelResponse
    text: str
    traced: str
    value: Any = None
    vectors: list[list[float]] | None = None

    @classmethod
    def of(cls, response: ModelResponse) -> Answer:
        return cls(response, response.text, response.text)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is for, as budgets, rate limits and the cache scope it: the end user, the
    tenant, the gateway's API key (its id), and whether the cache may answer (``cache=False``,
    ``Cache-Control: no-cache``: it may not, and the fresh answer is not stored either)."""

    user: str | None = None
    tenant: str | None = None
    key: str | None = None
    cache: bool = True


@dataclass(slots=True)
class Call:
    """One call on its way through the pipeline: what its stages read and shape.

    Before the model is called, ``request`` is what it will be asked and ``model`` where (the
    feature's chain, or the chain from a later position once an input guard said ``fallback``);
    a stage may replace either. ``ctx`` carries the trace and the call's deadline (a failure
    feature's call inherits it). ``state`` keeps what a stage needs between its hooks, under a
    key of its own (e.g. the stage itself). ``entered`` counts the stages whose ``before`` went
    on: each of them owes an ``after`` or a ``failed`` (the pipeline keeps the count).
    ``deferred``: checks a stage started with :meth:`defer`.
    """

    feature: CompiledFeature
    trace: Trace
    request: ModelRequest
    variables: Mapping[str, Any]
    model: Chain
    ctx: CallContext
    guards: CallGuards | None = None  # this call's guards, once a guard stage ran
    state: dict[object, Any] = field(default_factory=dict)
    entered: int = 0
    caller: Caller = field(default_factory=Caller)
    kind: Literal["chat", "embedding"] = "chat"  # an embedding call's answer has vectors
    deferred: list[asyncio.Future[None]] = field(default_factory=list)

    def defer(self, check: Coroutine[Any, Any, None]) -> None:
        """Start a check whose verdict need not hold up the stages after this one (a round
        trip to the shared state): it runs alongside them, and the pipeline has every verdict
        before the model is asked or a stage's answer is used (:meth:`verdicts`). An error it
        raises ends the call as if the stage had raised it."""
        self.deferred.append(asyncio.ensure_future(check))

    async def verdicts(self) -> None:
        """Wait for every deferred check; raise the error of the first one (in the order they
        were deferred) that failed."""
        if not self.deferred:
            return
        pending, self.deferred = self.deferred, []
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    @classmethod
    def begin(
        cls,
        feature: CompiledFeature,
        trace: Trace,
        request: ModelRequest,
        variables: Mapping[str, Any],
        deadline: float | None = None,
        caller: Caller | None = None,
    ) -> Call:
        """A call of ``feature``; its deadline is the feature's, or ``deadline`` (a
        ``time.monotonic()`` instant: the parent call's) when that comes first."""
        own = time.monotonic() + feature.config.deadline_s
        ctx = CallContext(trace, own if deadline is None else min(own, deadline))
        call = cls(feature, trace, request, variables, feature.model, ctx)
        if caller is not None:
            call.caller = caller
        if feature.config.kind == "embedding":
            call.kind = "embedding"
        return call
