"""The Redis backend: what every ``tether serve`` replica pointed at the same server shares.

Every check-and-update is one Lua script (:mod:`tether.state.lua`, sent by EVALSHA; redis-py
loads it again when the server has forgotten it), never a read followed by a write, and one
round trip. Plain reads and writes (``get``, ``put``, ``first``) are single commands.

A server that cannot be reached within ``timeout_s`` (refused, reset, silent) raises
:class:`~tether.errors.StateUnavailable` naming the URL; the next operation connects again, so
a server that comes back is used without a restart. Needs the ``tether[redis]`` extra.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tether.config.features import BreakerConfig
from tether.errors import StateUnavailable
from tether.state import lua
from tether.state.base import Admission, Bucket, Counter, Level, Outcome, Reservation, key_part

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
STALE_PROBE_S = 30.0  # a half-open probe that never reports frees its slot after this


def _num(x: float) -> str:
    """A float as Lua's ``tonumber`` reads it (it does not read ``inf``)."""
    if math.isinf(x):
        return "1e999" if x > 0 else "-1e999"
    return repr(float(x))


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _level(spent: Any, reserved: Any) -> Level:
    return Level(
        0.0 if spent is None else float(_text(spent)),
        0.0 if reserved is None else float(_text(reserved)),
    )


def _levels(flat: Sequence[Any]) -> tuple[Level, ...]:
    return tuple(_level(flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def redacted(url: str) -> str:
    """``url`` without its password (it goes into error messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisState:
    """The state in Redis at ``url``; every key starts with ``prefix``. At most
    ``max_connections`` connections per process: an operation beyond them waits for one (all
    within ``timeout_s``)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tether:",
        timeout_s: float = 0.5,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        self._client = self._connect()  # its connections belong to the loop that uses it
        register = self._client.register_script
        self._reserve = register(lua.RESERVE)
        self._settle = register(lua.SETTLE)
        self._levels = register(lua.LEVELS)
        self._take = register(lua.TAKE)
        self._adjust = register(lua.ADJUST)
        self._admit = register(lua.BREAKER_ADMIT)
        self._record = register(lua.BREAKER_RECORD)
        self._states = register(lua.BREAKER_STATES)
        self._spend = register(lua.RETRY_SPEND)
        self._oks: dict[str, int] = {}  # per upstream: successes not yet told (breaker_record)

    def _connect(self) -> aioredis.Redis:
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self._max_connections,  # more concurrent operations wait for one
            timeout=self.timeout_s,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0),  # a dead server costs one timeout, not four
            retry_on_timeout=False,
        )
        return aioredis.Redis.from_pool(pool)  # closing the client closes the pool

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def _run(
        self, what: str, script: AsyncScript, keys: list[str], args: Sequence[str | int] = ()
    ) -> Any:
        """Run a Lua script (EVALSHA; loaded again if the server forgot it)."""
        return await self._do(what, script(keys, args))

    async def _do(self, what: str, op: Any) -> Any:
        """Await ``op`` (a redis-py coroutine) within the timeout; an unreachable server is
        StateUnavailable."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await op
        except UNREACHABLE as exc:
            raise StateUnavailable(
                f"the Redis state backend at {redacted(self.url)} did not answer {what} within "
                f"{self.timeout_s}s ({type(exc).__name__}: {exc or 'no answer'}); start it or fix "
                "state.url "
                "(tether uses it again as soon as it answers), or set state.on_unavailable: "
                "fail_open to let calls through unchecked meanwhile"
            ) from exc

    # ------------------------------------------------------------------ budgets

    async def reserve(self, counters: Sequence[Counter], amounts: Sequence[float]) -> Reservation:
        if not counters:
            return Reservation(True, ())
        args: list[str | int] = []
        for counter, amount in zip(counters, amounts, strict=True):
            args += [_num(counter.limit), int(counter.hard), _ms(counter.ttl_s), _num(amount)]
        keys = [self._key(c.key) for c in counters]
        out = await self._run("reserve", self._reserve, keys, args)
        levels = _levels(out[2:])
        if _text(out[0]) == "ok":
            return Reservation(True, levels)
        return Reservation(False, levels, refused=int(_text(out[1])))

    async def settle(
        self, counters: Sequence[Counter], reserved: Sequence[float], spent: Sequence[float]
    ) -> tuple[Level, ...]:
        if not counters:
            return ()
        args: list[str | int] = []
        for counter, held, used in zip(counters, reserved, spent, strict=True):
            args += [_num(-held), _num(used), _ms(counter.ttl_s)]
        keys = [self._key(c.key) for c in counters]
        return _levels(await self._run("settle", self._settle, keys, args))

    async def levels(self, keys: Sequence[str]) -> tuple[Level, ...]:
        if not keys:
            return ()
        return _levels(await self._run("levels", self._levels, [self._key(k) for k in keys]))

    # ------------------------------------------------------------------ rate limits

    @staticmethod
    def _bucket_args(buckets: Sequence[Bucket], amounts: Sequence[float]) -> list[str]:
        args: list[str] = []
        for bucket, amount in zip(buckets, amounts, strict=True):
            args += [_num(bucket.capacity), _num(bucket.per_s), _num(amount)]
        return args

    async def take(
        self, buckets: Sequence[Bucket], amounts: Sequence[float]
    ) -> tuple[float, int | None]:
        if not buckets:
            return 0.0, None
        keys = [self._key(b.key) for b in buckets]
        out = await self._run("take", self._take, keys, self._bucket_args(buckets, amounts))
        refused = int(out[1])
        return float(_text(out[0])), (None if refused < 0 else refused)

    async def adjust(self, buckets: Sequence[Bucket], amounts: Sequence[float]) -> None:
        if buckets:
            keys = [self._key(b.key) for b in buckets]
            await self._run("adjust", self._adjust, keys, self._bucket_args(buckets, amounts))

    # ------------------------------------------------------------------ cache and markers

    async def get(self, key: str) -> bytes | None:
        value = await self._do("get", self._client.get(self._key(key)))
        return None if value is None else bytes(value)

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._do("put", self._client.set(self._key(key), value, px=_ms(ttl_s)))

    async def first(self, key: str, ttl_s: float) -> bool:
        done = await self._do(
            "first", self._client.set(self._key(key), b"1", px=_ms(ttl_s), nx=True)
        )
        return bool(done)

    # ------------------------------------------------------------------ upstream health

    def _breaker_keys(self, upstream: str) -> list[str]:
        return [self._key(f"breaker:{key_part(upstream)}"), self._key("breakers")]

    def _retry_keys(self, upstream: str) -> list[str]:
        part = key_part(upstream)
        return [self._key(f"retry:{part}:a:"), self._key(f"retry:{part}:r:")]

    def _breaker_args(self, upstream: str, policy: BreakerConfig) -> list[str | int]:
        oks = self._oks.pop(upstream, 0)  # told now (lost if the server does not answer)
        rate = _num(policy.failure_rate)
        return [upstream, oks, policy.window, policy.min_calls, rate, policy.half_open_probes]

    async def breaker_admit(self, upstream: str, policy: BreakerConfig) -> Admission:
        keys = [*self._breaker_keys(upstream), self._retry_keys(upstream)[0]]
        args = self._breaker_args(upstream, policy)
        args += [_num(policy.cooldown_s), _num(max(policy.cooldown_s, STALE_PROBE_S))]
        out = await self._run("breaker_admit", self._admit, keys, args)
        return Admission(bool(int(out[0])), bool(int(out[1])), float(_text(out[2])))

    async def breaker_record(
        self, upstream: str, policy: BreakerConfig, outcome: Outcome, probe: bool
    ) -> None:
        """A success outside a probe is kept here and told with the next admit or record of
        the upstream (a success cannot open a breaker that the next admit would not find
        open); a neutral outcome outside a probe says nothing: neither costs a round trip."""
        if not probe and outcome != "failure":
            if outcome == "ok":
                self._oks[upstream] = self._oks.get(upstream, 0) + 1
            return
        args = [*self._breaker_args(upstream, policy), outcome, int(probe)]
        await self._run("breaker_record", self._record, self._breaker_keys(upstream), args)

    async def breaker_states(self) -> dict[str, str]:
        out = await self._run("breaker_states", self._states, [self._key("breakers")])
        return {_text(out[i]): _text(out[i + 1]) for i in range(0, len(out), 2)}

    async def retry_spend(
        self, upstream: str, ratio: float, min_retries: int, window_s: float
    ) -> bool:
        window = min(60, max(1, round(window_s)))  # whole seconds, as the counters are kept
        args: list[str | int] = [_num(ratio), min_retries, window]
        out = await self._run("retry_spend", self._spend, self._retry_keys(upstream), args)
        return bool(int(out))

    # ------------------------------------------------------------------ life

    async def ping(self) -> None:
        await self._do("ping", self._client.ping())

    async def aclose(self) -> None:
        """Close the connections (the next operation opens new ones, on the loop then
        running: close at the end of each ``asyncio.run`` that used it)."""
        await self._client.aclose()
