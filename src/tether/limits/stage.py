"""The callers' rate limits: :class:`RateLimitStage` (slot ``budget``, before the budget's
reservation).

Each declared scope (``key``, ``user``, ``tenant``, ``feature``) has a token bucket per
identity for ``rpm`` (capacity ``rpm``, refilled at ``rpm / 60`` a second: a full minute's worth
may come as one burst) and one for ``tpm`` (the same shape in tokens). A call takes 1 from every
rpm bucket and its estimated tokens from every tpm bucket, all in ONE atomic ``take`` of the
shared state (all or nothing: a call refused by one scope takes nothing from the others), so
the limits hold across replicas sharing Redis. The estimate is the prompt's tokens
(``services.tokens``) plus the call's ``max_tokens`` (the budget's ``default_max_tokens``
without one; an embedding call has no output); once the call ended, the tpm buckets are
corrected to the tokens the attempts reported (a cache hit gives its estimate back). When an
attempt reported no usage (a stream cut before its end), the estimate stays taken.

A call whose identity for a scope is missing (no user on the call) is not limited by that
scope; trace event ``rate_limit_scope_skipped`` {scope} says so. Over a limit: trace event
``rate_limited`` {scope, retry_after_s} and :class:`~tether.errors.RateLimitExceeded`, which
goes to the caller (the gateway's 429 with ``Retry-After``; the SDK raises it).

On a remote backend (Redis) the take is deferred (:meth:`~tether.pipeline.call.Call.defer`):
its round trip runs alongside the budget's reservation, and the pipeline has its verdict before
the model is asked. In-process state is awaited at once: there is no round trip to overlap, and
a task per call cost a third of a replica's throughput under load (bench/replicas.py). So a call
refused here may hold its budget reservation for that round trip (released at once, through
the budget stage's ``failed``), and the tpm correction afterwards is written behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tether.errors import RateLimitExceeded, TetherError
from tether.pipeline.call import Answer, Call
from tether.pipeline.stages import Slot, Stage
from tether.state.base import Bucket, key_part

if TYPE_CHECKING:
    from tether.config.budgets import RateLimit
    from tether.config.features import FeatureConfig
    from tether.pipeline.services import Services
    from tether.state.base import State

CallerScope = Literal["key", "user", "tenant", "feature"]
CALLER_SCOPES: tuple[CallerScope, ...] = ("key", "user", "tenant", "feature")
# what a call gets when the state is unavailable and the policy is fail_open: admitted, and
# nothing taken (so nothing to correct afterwards)
_UNCHECKED: tuple[float, int | None] = (-1.0, None)


@dataclass(frozen=True, slots=True)
class _Limited:
    """What one call took: the buckets (with the scope and dimension of each) and amounts."""

    buckets: tuple[Bucket, ...]
    amounts: tuple[float, ...]
    labels: tuple[tuple[CallerScope, str], ...]  # (scope, "rpm" | "tpm") per bucket
    estimate: float  # the tokens taken from each tpm bucket


class RateLimitStage(Stage):
    """Slot ``budget`` (placed before the budget stage): admit the call or refuse it with
    :class:`RateLimitExceeded`; after it, correct the tokens-per-minute buckets."""

    slot: Slot = "budget"
    applies_to_embeddings = True

    def __init__(self, feature: str, config: FeatureConfig, services: Services) -> None:
        self.feature = feature
        self.services = services
        self.default_max_tokens = config.budgets.default_max_tokens
        limits = config.rate_limits
        self.limits: tuple[tuple[CallerScope, RateLimit], ...] = tuple(
            (scope, limit) for scope in CALLER_SCOPES if (limit := getattr(limits, scope))
        )
        self.prefix = f"rl:{key_part(feature)}:"  # the backend puts state.prefix first
        self._tpm = any(limit.tpm is not None for _, limit in self.limits)

    # ------------------------------------------------------------------ hooks

    async def before(self, call: Call) -> Answer | None:
        estimate = await self._estimate(call) if self._tpm else 0.0
        limited = self._buckets(call, estimate)
        if not limited.buckets:
            return None
        if self.services.state.backend.remote:
            # its round trip runs alongside the budget's reservation (the stage after this
            # one): the pipeline has the verdict before the model is asked
            call.defer(self._take(call, limited))
        else:  # nothing to overlap: a task would only cost (in-process state)
            await self._take(call, limited)
        return None

    async def _take(self, call: Call, limited: _Limited) -> None:
        async def take(state: State) -> tuple[float, int | None]:
            return await state.take(limited.buckets, limited.amounts)

        wait, refused = await self.services.state.checked(
            call.trace, "rate_limit", take, _UNCHECKED
        )
        if refused is None:
            if wait == 0:  # taken: corrected once the call ended
                call.state[self] = limited
            return
        scope, dimension = limited.labels[refused]
        limit = limited.buckets[refused].capacity
        retry_after = max(round(wait, 3), 0.001)
        call.trace.event("rate_limited", scope=scope, retry_after_s=retry_after)
        raise RateLimitExceeded(
            f"rate limit reached: feature {self.feature!r} allows {limit:g} "
            f"{'requests' if dimension == 'rpm' else 'tokens'} per minute per {scope}; "
            f"retry in {math.ceil(wait)}s, or raise rate_limits.{scope}.{dimension}",
            scope=scope,
            retry_after_s=retry_after,
        )

    async def after(self, call: Call, answer: Answer) -> Answer:
        await self._correct(call)
        return answer

    async def failed(self, call: Call, error: TetherError) -> None:
        await self._correct(call)

    # ------------------------------------------------------------------ pieces

    async def _estimate(self, call: Call) -> float:
        """The call's tokens before it is made: its prompt, plus its output limit for chat."""
        prompt = await self.services.tokens.acount(call.model.name, call.request)
        if call.kind == "embedding":
            return float(prompt)
        return float(prompt + (call.request.max_tokens or self.default_max_tokens))

    def _buckets(self, call: Call, estimate: float) -> _Limited:
        caller = call.caller
        identities: dict[CallerScope, str | None] = {
            "key": caller.key,
            "user": caller.user,
            "tenant": caller.tenant,
            "feature": "-",
        }
        buckets: list[Bucket] = []
        amounts: list[float] = []
        labels: list[tuple[CallerScope, str]] = []
        for scope, limit in self.limits:
            identity = identities[scope]
            if identity is None:
                call.trace.event("rate_limit_scope_skipped", scope=scope)
                continue
            base = f"{self.prefix}{scope}:{key_part(identity)}:"
            if limit.rpm is not None:
                buckets.append(Bucket(base + "rpm", float(limit.rpm), limit.rpm / 60.0))
                amounts.append(1.0)
                labels.append((scope, "rpm"))
            if limit.tpm is not None:
                buckets.append(Bucket(base + "tpm", float(limit.tpm), limit.tpm / 60.0))
                # a call larger than a whole minute's tokens could never be admitted: it takes
                # the full bucket instead (the correction after it takes the rest)
                amounts.append(min(estimate, float(limit.tpm)))
                labels.append((scope, "tpm"))
        return _Limited(tuple(buckets), tuple(amounts), tuple(labels), estimate)

    async def _correct(self, call: Call) -> None:
        """The tpm buckets corrected from the estimate to the tokens the attempts reported."""
        limited: _Limited | None = call.state.pop(self, None)
        if limited is None:
            return
        used = _tokens_used(call)
        if used is None:
            return
        tpm = [i for i, (_, dimension) in enumerate(limited.labels) if dimension == "tpm"]
        if not tpm:
            return
        buckets = tuple(limited.buckets[i] for i in tpm)
        deltas = tuple(used - limited.amounts[i] for i in tpm)
        if not any(deltas):
            return

        async def adjust(state: State) -> None:
            await state.adjust(buckets, deltas, wait=False)  # nothing waits for its answer

        # the call is over: a correction that cannot be written never fails it, whatever the
        # policy (the estimate stays taken; the trace and the log say so)
        await self.services.state.best_effort(call.trace, "rate_limit", adjust)


def _tokens_used(call: Call) -> float | None:
    """The tokens the call's attempts reported, or None when one sent text and reported no
    usage (a stream cut before its usage came): then nobody knows, and the estimate stands."""
    total = 0
    for attempt in call.trace.attempts:
        tokens = attempt.usage.total_tokens
        if tokens == 0 and attempt.chars_out > 0:
            return None
        total += tokens
    return float(total)


def stages(name: str, feature: FeatureConfig, services: Services) -> list[Stage]:
    """The feature's rate-limit stage, or none when it limits no caller scope."""
    limits = feature.rate_limits
    if all(getattr(limits, scope) is None for scope in CALLER_SCOPES):
        return []
    return [RateLimitStage(name, feature, services)]
