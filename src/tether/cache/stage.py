"""The response cache: :class:`CacheStage` (slot ``cache``, the innermost: right around the
model).

``before`` looks the call up (key: :mod:`tether.cache.entry`) in the shared state: a hit answers
the call there and then, with the stored answer at zero usage and zero cost (hits are free; the
event keeps what the answer cost when it was made), and the stages outside the cache still get
``after``: output guards check a cached answer like a fresh one, the budget settles it at 0. A
streamed call answered from the cache gets the answer in one piece. ``after`` stores a fresh
answer for ``ttl_s`` when:

* it is a normal answer: not degraded, ``finish_reason`` set and not ``error`` (a stream that
  was cut has none, and never gets here), with vectors for an embedding call;
* the model the call started on gave it, not a fallback (a fallback's answer is the second
  best: it is not kept to be served once the first model is back);
* streamed, it is text: a streamed answer is put together from its text deltas, so one with
  tool calls, only a refusal, or logprobs asked for is not stored (a hit would lack them).

Two identical calls at the same time both miss and both ask the model (no stampede lock).

The raw answer is stored, before the output guards outside the cache judge it: they judge it
again on every hit, so a redaction or a re-ask happens every time, as for a fresh answer.

The cache is not used (``trace.cache = "bypass"``, event ``cache_bypass`` {why}) for a call that
says ``cache=False`` (the gateway's ``Cache-Control: no-cache``), a scoped cache's call without
that scope's identity, and a sampled request (temperature > 0, or none: the model's default
samples) unless the feature says ``cache: {sampled: true}``. Embedding calls are always
deterministic enough to cache.

A cache is an optimisation: when the state cannot be reached, a lookup is a miss and a store
is skipped, whatever ``state.on_unavailable`` says (``SharedState.best_effort``: the trace and
the log say so), so an unreachable Redis never sends a call to its failure path because of the
cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.cache.entry import decode, digest, encode
from tether.pipeline.call import Answer, Call
from tether.pipeline.stages import Slot, Stage
from tether.state.base import key_part

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tether.config.budgets import CacheConfig
    from tether.config.features import FeatureConfig
    from tether.pipeline.services import Services
    from tether.state.base import State

log = logging.getLogger("tether.cache")


@dataclass(frozen=True, slots=True)
class _Missed:
    key: str  # the state key
    short: str  # the digest's first 12 hex digits (events)


class CacheStage(Stage):
    """Slot ``cache``: answer from the cache before the model, store the model's answer after
    it (see the module docstring)."""

    slot: Slot = "cache"
    applies_to_embeddings = True

    def __init__(self, feature: str, config: CacheConfig, services: Services) -> None:
        self.feature = feature
        self.config = config
        self.services = services
        self.prefix = f"cache:{key_part(feature)}:"  # the backend puts state.prefix first

    async def before(self, call: Call) -> Answer | None:
        trace = call.trace
        why = self._bypass(call)
        if why is not None:
            trace.cache = "bypass"
            trace.event("cache_bypass", why=why)
            return None
        identity = self._identity(call)
        hexdigest = digest(call, identity or "")
        missed = _Missed(self.prefix + hexdigest, hexdigest[:12])

        async def get(state: State) -> bytes | None:
            return await state.get(missed.key)

        found = await self._checked(call, get, None)
        if found is not None:
            try:
                answer, record = decode(found)
            except (ValueError, KeyError, TypeError) as exc:
                trace.event("cache_unreadable", key=missed.short, error=str(exc))
            else:
                trace.cache = "hit"
                age = round(time.time() - float(record["stored_at"]), 3)
                trace.event(
                    "cache_hit",
                    key=missed.short,
                    usage=record["usage"],
                    cost_usd=record["cost_usd"],
                    age_s=age,
                )
                return answer
        trace.cache = "miss"
        trace.event("cache_miss", key=missed.short)
        call.state[self] = missed
        return None

    async def after(self, call: Call, answer: Answer) -> Answer:
        missed: _Missed | None = call.state.pop(self, None)
        if missed is None:
            return answer
        position, streamed = _answered_by(call, answer)
        why = self._unfit(call, answer, position) or (_partial(call, answer) if streamed else None)
        if why is not None:
            call.trace.event("cache_not_stored", key=missed.short, why=why)
            return answer
        try:
            data = encode(answer, position)
        except (TypeError, ValueError) as exc:
            call.trace.event("cache_not_stored", key=missed.short, why=f"not JSON: {exc}")
            return answer

        async def put(state: State) -> None:
            await state.put(missed.key, data, self.config.ttl_s)

        if await self._checked(call, put, False) is not False:
            call.trace.event("cache_stored", key=missed.short)
        return answer

    # ------------------------------------------------------------------ pieces

    def _identity(self, call: Call) -> str | None:
        scope = self.config.scope
        if scope == "global":
            return "global"
        return call.caller.user if scope == "user" else call.caller.tenant

    def _bypass(self, call: Call) -> str | None:
        """Why this call does not use the cache, or None when it does."""
        if not call.caller.cache:
            return "caller"
        if self._identity(call) is None:
            return f"no {self.config.scope}"
        if call.kind == "chat" and not self.config.sampled:
            temperature = call.request.temperature
            if temperature is None or temperature > 0:
                return "sampled"
        return None

    @staticmethod
    def _unfit(call: Call, answer: Answer, position: int) -> str | None:
        """Why an answer is not stored, or None when it is."""
        if call.trace.degraded:
            return "degraded"
        if position != call.model.start:
            return "fallback"
        if call.kind == "embedding":
            return None if answer.vectors else "no vectors"
        finish = answer.response.finish_reason
        if finish is None or finish == "error":
            return f"finish_reason {finish}"
        return None

    async def _checked(
        self, call: Call, op: Callable[[State], Awaitable[Any]], default: Any
    ) -> Any:
        """``op`` on the shared state; an unreachable state is ``default`` whatever the
        policy (the cache is an optimisation, see the module docstring)."""
        return await self.services.state.best_effort(call.trace, "cache", op, default)


def _answered_by(call: Call, answer: Answer) -> tuple[int, bool]:
    """The chain position of the model that gave ``answer`` (a streamed answer's response
    does not carry it: the last attempt that succeeded does), and whether it streamed."""
    answered = [a for a in call.trace.attempts if a.status == "ok"]
    if not answered:
        return answer.response.position, False
    return answered[-1].chain_position, answered[-1].streamed


def _partial(call: Call, answer: Answer) -> str | None:
    """Why a streamed answer, as the pipeline puts it together (its text, finish reason and
    usage), is not the whole answer a later call may get, or None when it is: its tool calls,
    refusal and logprobs came as deltas and are not in it."""
    if answer.response.finish_reason == "tool_calls" or answer.response.tool_calls:
        return "streamed tool calls"
    if not answer.response.text:
        return "streamed without text"
    if call.request.extra.get("logprobs"):
        return "streamed logprobs"
    return None


def stages(name: str, feature: FeatureConfig, services: Services) -> list[Stage]:
    """The feature's cache stage, or none when it has no ``cache``."""
    if feature.cache is None:
        return []
    return [CacheStage(name, feature.cache, services)]
