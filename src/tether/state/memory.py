"""The in-process backend: the default, nothing to set up. Plain dicts in one process; each
method runs without an ``await`` inside, so on one event loop every check-and-update is atomic.

Several ``tether serve`` processes each have their own: use ``state: {backend: redis}`` to
share budgets, limits, breakers and the cache between them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tether.config.features import BreakerConfig
from tether.state.base import Admission, Bucket, Counter, Level, Outcome, Reservation
from tether.state.window import BUDGET_WINDOW_S, BreakerWindow, RetryBudget

_EPSILON = 1e-9  # relative slack on a hard limit, for sums of float prices
SWEEP_EVERY = 4096  # writes between two sweeps of what has expired


def over_limit(total: float, amount: float, limit: float) -> bool:
    """Whether adding ``amount`` to ``total`` takes it past ``limit`` (float sums of prices
    get a relative slack of 1e-9, so that ten reservations of 0.1 fit a limit of 1.0)."""
    return total + amount > limit + _EPSILON * max(1.0, abs(limit))


@dataclass(slots=True)
class _Counted:
    spent: float
    reserved: float
    expires: float


@dataclass(slots=True)
class _Filled:
    tokens: float
    at: float
    full_at: float  # from then on it is as good as absent (a bucket starts full)


def _filled_entry(bucket: Bucket, tokens: float, now: float) -> _Filled:
    missing = bucket.capacity - tokens
    full_at = now + missing / bucket.per_s if bucket.per_s > 0 else math.inf
    return _Filled(tokens, now, full_at)


class MemoryState:
    """Everything in this process. ``clock`` (seconds) drives expiry, refills, breakers and
    retry budgets; tests pass their own."""

    name = "memory"
    remote = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counters: dict[str, _Counted] = {}
        self._buckets: dict[str, _Filled] = {}
        self._values: dict[str, tuple[bytes, float]] = {}
        self.breakers: dict[str, BreakerWindow] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._writes = 0

    # ------------------------------------------------------------------ budgets

    def _counter(self, key: str, now: float) -> _Counted | None:
        found = self._counters.get(key)
        if found is not None and found.expires <= now:
            del self._counters[key]
            return None
        return found

    def _level(self, key: str, now: float) -> Level:
        found = self._counter(key, now)
        return Level() if found is None else Level(found.spent, found.reserved)

    async def reserve(self, counters: Sequence[Counter], amounts: Sequence[float]) -> Reservation:
        now = self.clock()
        levels = tuple(self._level(c.key, now) for c in counters)
        for i, (counter, amount, level) in enumerate(zip(counters, amounts, levels, strict=True)):
            if counter.hard and over_limit(level.spent + level.reserved, amount, counter.limit):
                return Reservation(False, levels, refused=i)
        after = []
        for counter, amount, level in zip(counters, amounts, levels, strict=True):
            entry = _Counted(level.spent, level.reserved + amount, now + counter.ttl_s)
            self._counters[counter.key] = entry
            after.append(Level(entry.spent, entry.reserved))
        self._now_and_then()
        return Reservation(True, tuple(after))

    async def settle(
        self,
        counters: Sequence[Counter],
        reserved: Sequence[float],
        spent: Sequence[float],
        *,
        wait: bool = True,
    ) -> tuple[Level, ...]:
        now = self.clock()
        after = []
        for counter, held, used in zip(counters, reserved, spent, strict=True):
            level = self._level(counter.key, now)
            left = level.reserved - held
            left = left if left > _EPSILON else 0.0  # float residue of the sums
            entry = _Counted(level.spent + used, left, now + counter.ttl_s)
            self._counters[counter.key] = entry
            after.append(Level(entry.spent, entry.reserved))
        self._now_and_then()
        return tuple(after)

    async def levels(self, keys: Sequence[str]) -> tuple[Level, ...]:
        now = self.clock()
        return tuple(self._level(k, now) for k in keys)

    # ------------------------------------------------------------------ rate limits

    def _filled(self, bucket: Bucket, now: float) -> float:
        found = self._buckets.get(bucket.key)
        if found is None:
            return bucket.capacity
        return min(bucket.capacity, found.tokens + max(0.0, now - found.at) * bucket.per_s)

    async def take(
        self, buckets: Sequence[Bucket], amounts: Sequence[float]
    ) -> tuple[float, int | None]:
        now = self.clock()
        filled = [self._filled(b, now) for b in buckets]
        wait, refused = 0.0, None
        for i, (bucket, amount, have) in enumerate(zip(buckets, amounts, filled, strict=True)):
            needs = wait_for(bucket, amount, have)
            if needs > 0 and refused is None:
                refused = i
            wait = max(wait, needs)
        if refused is not None:
            return wait, refused
        for bucket, amount, have in zip(buckets, amounts, filled, strict=True):
            self._buckets[bucket.key] = _filled_entry(bucket, have - amount, now)
        self._now_and_then()
        return 0.0, None

    async def adjust(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], *, wait: bool = True
    ) -> None:
        now = self.clock()
        for bucket, amount in zip(buckets, amounts, strict=True):
            have = self._filled(bucket, now)
            tokens = min(bucket.capacity, have - amount)
            self._buckets[bucket.key] = _filled_entry(bucket, tokens, now)

    # ------------------------------------------------------------------ cache and markers

    async def get(self, key: str) -> bytes | None:
        found = self._values.get(key)
        if found is None:
            return None
        if found[1] <= self.clock():
            del self._values[key]
            return None
        return found[0]

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._values[key] = (value, self.clock() + ttl_s)
        self._now_and_then()

    async def first(self, key: str, ttl_s: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.put(key, b"1", ttl_s)
        return True

    def _now_and_then(self) -> None:
        """Every ``SWEEP_EVERY`` writes, drop what has expired (values, counters, buckets full
        again), so that memory stays bounded however many users come and go."""
        self._writes += 1
        if self._writes % SWEEP_EVERY:
            return
        now = self.clock()
        for key in [k for k, (_, until) in self._values.items() if until <= now]:
            del self._values[key]
        for key in [k for k, c in self._counters.items() if c.expires <= now]:
            del self._counters[key]
        for key in [k for k, b in self._buckets.items() if b.full_at <= now]:
            del self._buckets[key]

    # ------------------------------------------------------------------ upstream health

    def breaker(self, upstream: str, policy: BreakerConfig) -> BreakerWindow:
        """The upstream's breaker (made with ``policy`` the first time it is asked for)."""
        found = self.breakers.get(upstream)
        if found is None:
            found = self.breakers[upstream] = BreakerWindow(upstream, policy, self.clock)
        return found

    def _budget(self, upstream: str, window_s: float) -> RetryBudget:
        found = self._budgets.get(upstream)
        if found is None:
            found = RetryBudget(window_s=window_s, clock=self.clock, counts_attempts=True)
            self._budgets[upstream] = found
        return found

    async def breaker_admit(self, upstream: str, policy: BreakerConfig) -> Admission:
        admission = self.breaker(upstream, policy).admit()
        if admission.admitted:
            self._budget(upstream, BUDGET_WINDOW_S).record_call()
        return admission

    async def breaker_record(
        self, upstream: str, policy: BreakerConfig, outcome: Outcome, probe: bool
    ) -> None:
        breaker = self.breaker(upstream, policy)
        if outcome == "neutral":
            breaker.release(probe)
        else:
            breaker.record(outcome == "ok", probe)

    async def breaker_states(self) -> dict[str, str]:
        return {name: b.state for name, b in self.breakers.items()}

    async def retry_spend(
        self, upstream: str, ratio: float, min_retries: int, window_s: float
    ) -> bool:
        budget = self._budget(upstream, window_s)
        budget.ratio, budget.min_retries, budget.window_s = ratio, min_retries, window_s
        return budget.try_spend()

    # ------------------------------------------------------------------ life

    async def ping(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to close."""


def wait_for(bucket: Bucket, amount: float, have: float) -> float:
    """Seconds until ``bucket`` holding ``have`` can give ``amount`` (0: now; ``inf`` when the
    amount is more than it can ever hold, or it never refills)."""
    if amount <= have:
        return 0.0
    if amount > bucket.capacity or bucket.per_s <= 0:
        return math.inf
    return (amount - have) / bucket.per_s
