"""What replicas share, as one protocol: :class:`State`.

Budget counters (spent and reserved amounts per period, reserved all-or-nothing), token
buckets (rate limits), cache entries, first-time markers (an alert fires once per period),
circuit-breaker state and retry budgets. Every check-and-update is one atomic operation of the
backend (a Lua script on Redis), never a read followed by a write.

A backend that cannot be reached raises :class:`~tether.errors.StateUnavailable`; what a call
then does (``state.on_unavailable``) is :func:`tether.state.policy.checked`'s business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from tether.config.features import BreakerConfig

Outcome = Literal["ok", "failure", "neutral"]  # neutral: says nothing about the upstream


@dataclass(frozen=True, slots=True)
class Counter:
    """One budget counter for one period: the amounts spent and reserved under ``key``. A
    ``hard`` counter refuses a reservation that would take spent + reserved past ``limit``; a
    soft one takes it and the caller reads the levels. It expires ``ttl_s`` after a write
    (the end of its period, plus a margin)."""

    key: str
    limit: float
    hard: bool = True
    ttl_s: float = 86_400.0


@dataclass(frozen=True, slots=True)
class Level:
    spent: float = 0.0
    reserved: float = 0.0


@dataclass(frozen=True, slots=True)
class Reservation:
    """``ok``: every amount was reserved; else ``refused`` is the index of the first hard
    counter that refused and nothing was reserved. ``levels``: each counter after the
    operation (as it stood, when refused)."""

    ok: bool
    levels: tuple[Level, ...]
    refused: int | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: holds at most ``capacity``, refills at ``per_s`` a second, starts full."""

    key: str
    capacity: float
    per_s: float


@dataclass(frozen=True, slots=True)
class Admission:
    """A breaker's answer: ``admitted`` (``probe``: as one of the half-open probes) or not,
    then ``retry_in_s`` until the next probe may go."""

    admitted: bool
    probe: bool = False
    retry_in_s: float = 0.0


def key_part(identity: str) -> str:
    """An identity (a user id, a tenant, a feature name) made safe to put between the ``:`` of
    a key: kept as is when it is short and plain, else ``~`` + a SHA-256 prefix, so that
    ``a:b`` can never collide with another key's parts. The hashed form starts with ``~``,
    which a plain identity cannot hold, so no identity can pass for another's hash."""
    if 0 < len(identity) <= 64 and all(c.isalnum() or c in "-_." for c in identity):
        return identity
    return "~" + hashlib.sha256(identity.encode()).hexdigest()[:32]


class State(Protocol):
    """Keys are given WITHOUT the deployment prefix (``state.prefix``): the backend puts it in
    front of every key it writes, e.g. ``budget:support:user:u1:cost_usd:2026-11-27`` is
    stored as ``tether:budget:support:...``. Put identities in keys with :func:`key_part`."""

    name: str  # "memory" or "redis"
    # whether an operation is a round trip out of the process (worth overlapping with other
    # work: Call.defer); in-process operations are cheaper awaited at once
    remote: bool

    # -- budgets
    async def reserve(self, counters: Sequence[Counter], amounts: Sequence[float]) -> Reservation:
        """Add ``amounts[i]`` to the reserved amount of ``counters[i]``, all or nothing."""
        ...

    async def settle(
        self,
        counters: Sequence[Counter],
        reserved: Sequence[float],
        spent: Sequence[float],
        *,
        wait: bool = True,
    ) -> tuple[Level, ...]:
        """Take ``reserved[i]`` off the reserved amount and add ``spent[i]`` to the spent one
        (a release spends 0); returns the levels after. ``wait=False`` writes behind: the
        update is not waited for (the levels returned may be ``()``) and a remote backend that
        fails to apply it logs that instead of raising."""
        ...

    async def levels(self, keys: Sequence[str]) -> tuple[Level, ...]:
        """The counters' levels (zero for one that does not exist)."""
        ...

    # -- rate limits
    async def take(
        self, buckets: Sequence[Bucket], amounts: Sequence[float]
    ) -> tuple[float, int | None]:
        """Take ``amounts[i]`` from ``buckets[i]``, all or nothing: ``(0.0, None)`` when
        taken, else ``(seconds until they could all be, index of the first bucket that
        refused)`` and nothing is taken. The seconds are ``math.inf`` when an amount is more
        than its bucket can ever hold."""
        ...

    async def adjust(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], *, wait: bool = True
    ) -> None:
        """Take (positive) or give back (negative) without a check: an estimate corrected
        (``wait=False``: written behind, as :meth:`settle`)."""
        ...

    # -- cache and markers
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def first(self, key: str, ttl_s: float) -> bool:
        """True for the first caller to ask within ``ttl_s`` (then False until it expires)."""
        ...

    # -- upstream health
    async def breaker_admit(self, upstream: str, policy: BreakerConfig) -> Admission:
        """Let an attempt at ``upstream`` through, or not (its breaker is open); an attempt let
        through also counts towards the upstream's retry budget."""
        ...

    async def breaker_record(
        self, upstream: str, policy: BreakerConfig, outcome: Outcome, probe: bool
    ) -> None:
        """How an admitted attempt ended. A backend may keep a success outside a probe and
        count it with its next admit or record of that upstream (Redis does: a successful
        call then costs one round trip); a success can only open a breaker by filling the
        window to ``min_calls``, which the next admission sees."""
        ...

    async def breaker_states(self) -> dict[str, str]:
        """Every known upstream's breaker state: closed, open or half_open."""
        ...

    async def retry_spend(
        self, upstream: str, ratio: float, min_retries: int, window_s: float
    ) -> bool:
        """Whether a retry fits the upstream's retry budget (and, if so, count it): over the
        last ``window_s`` seconds, at most ``max(min_retries, ratio * calls)`` retries, where
        the calls are the attempts :meth:`breaker_admit` let through minus the retries (so a
        call costs one round trip for admit and one for record, none for the budget)."""
        ...

    # -- life
    async def ping(self) -> None:
        """Raise StateUnavailable when the backend cannot be reached."""
        ...

    async def aclose(self) -> None: ...
