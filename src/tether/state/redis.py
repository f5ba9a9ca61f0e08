"""The Redis backend: what every ``tether serve`` replica pointed at the same server shares.

Every check-and-update is one Lua script (:mod:`tether.state.lua`, sent by EVALSHA; loaded
again when the server has forgotten it), never a read followed by a write. The scripts asked
for in one turn of the event loop, by one call or by many, go out together in one pipeline
(one write, one round trip; each script still atomic on its own): a call's rate-limit take and
budget reservation (which the pipeline runs side by side) cost one round trip, and under load
many calls share one. Each batch also reads the breakers of the upstreams this process calls,
so that the call's breaker admission right after needs no round trip of its own when the
breaker is closed (an open or half-open one is asked atomically, as ever). Plain reads and
writes (``get``, ``put``, ``first``) are single commands.

Updates whose answer the call does not need (a settle that only gives back, a rate-limit
correction, a breaker admission's bookkeeping) are written behind (``wait=False``): they go in
the next batch like any script, but nothing waits for their answer, so a call's answer does not
wait for their round trip. One that fails (or is lost with the process) is logged and counted
(``unconfirmed``); a reservation it did not settle expires with its period. ``aclose`` sends
what is queued and waits for the batches still out.

A server that cannot be reached within ``timeout_s`` (refused, reset, silent) raises
:class:`~tether.errors.StateUnavailable` naming the URL; the next operation connects again, so
a server that comes back is used without a restart. Needs the ``tether[redis]`` extra.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tether.config.features import BreakerConfig
from tether.errors import StateUnavailable
from tether.state import lua
from tether.state.base import Admission, Bucket, Counter, Level, Outcome, Reservation, key_part

log = logging.getLogger("tether.state")
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
STALE_PROBE_S = 30.0  # a half-open probe that never reports frees its slot after this
PEEK_FRESH_S = 0.05  # a breaker read closed this recently admits without a round trip
PEEK_INTEREST_S = 60.0  # batches read the breakers of upstreams admitted to this recently


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


@dataclass(slots=True)
class _Op:
    """A script waiting for its batch: its answer (or error) goes to ``done``."""

    what: str
    script: AsyncScript
    keys: list[str]
    args: Sequence[str | int]
    done: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class _Peek:
    """A breaker as a batch read it: closed or not, its window of outcomes, when."""

    closed: bool
    window: str
    at: float

    def admits(self, oks: int, policy: BreakerConfig, now: float) -> bool:
        """Whether an admission may go by this read: it is fresh, the breaker was closed, and
        the successes still to tell would not open it (they fill the window to
        ``min_calls``; the same rule as the scripts' ``count``)."""
        if not self.closed or now - self.at >= PEEK_FRESH_S:
            return False
        window = (self.window + "1" * oks)[-policy.window :]
        failures = window.count("0")
        return len(window) < policy.min_calls or failures / len(window) < policy.failure_rate


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
    remote = True

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
        self._note = register(lua.BREAKER_NOTE)
        self._record = register(lua.BREAKER_RECORD)
        self._states = register(lua.BREAKER_STATES)
        self._spend = register(lua.RETRY_SPEND)
        self._oks: dict[str, int] = {}  # per upstream: successes not yet told (breaker_record)
        self._queued: list[_Op] = []  # the next batch's scripts
        self._asked: dict[str, float] = {}  # upstream -> when it was last admitted here
        self._peeked: dict[str, _Peek] = {}  # upstream -> its breaker as a batch read it
        self._behind: set[asyncio.Task[None]] = set()  # batches not answered yet
        self.unconfirmed = 0  # writes behind whose answer never came (logged)

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

    def _queue(
        self, what: str, script: AsyncScript, keys: list[str], args: Sequence[str | int]
    ) -> asyncio.Future[Any]:
        """Queue a script for the batch that goes on the loop's next turn, with every script
        asked for until then (by this call or another)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._queued.append(_Op(what, script, keys, args, done))
        if len(self._queued) == 1:
            loop.call_soon(self._send_batch)
        return done

    def _send_batch(self) -> None:
        batch, self._queued = self._queued, []
        if not batch:
            return
        task = asyncio.ensure_future(self._flush(batch))
        self._behind.add(task)
        task.add_done_callback(self._behind.discard)

    async def _flush(self, batch: list[_Op]) -> None:
        """Send a batch (EVALSHA each, then the breaker reads) and hand each script its answer
        or its error."""
        pipe = self._client.pipeline(transaction=False)
        for op in batch:
            pipe.evalsha(op.script.sha, len(op.keys), *op.keys, *op.args)
        peeks = self._peeks(pipe)
        answers: list[Any] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                answers = await pipe.execute(raise_on_error=False)
                self._peeked_now(peeks, answers[len(batch) :])
                del answers[len(batch) :]
                await self._reload(batch, answers)
        except UNREACHABLE as exc:
            answers = [self._unavailable(op.what, exc) for op in batch]
        finally:
            if len(answers) != len(batch):  # cancelled at shutdown: nobody waits for ever
                answers = [StateUnavailable(f"{op.what}: its batch was cut short") for op in batch]
            for op, answer in zip(batch, answers, strict=True):
                if op.done.done():
                    continue  # its caller went away
                if isinstance(answer, Exception):
                    op.done.set_exception(answer)
                else:
                    op.done.set_result(answer)

    async def _reload(self, batch: list[_Op], answers: list[Any]) -> None:
        """The scripts the server had forgotten (a restart, SCRIPT FLUSH): each loaded once,
        then their part of the batch sent again."""
        missing = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if not missing:
            return
        for script in {batch[n].script.sha: batch[n].script for n in missing}.values():
            await self._client.script_load(script.script)
        again = self._client.pipeline(transaction=False)
        for n in missing:
            again.evalsha(batch[n].script.sha, len(batch[n].keys), *batch[n].keys, *batch[n].args)
        for n, answer in zip(missing, await again.execute(raise_on_error=False), strict=True):
            answers[n] = answer

    def _peeks(self, pipe: Any) -> list[str]:
        """Read, in the batch, the state of each breaker this process admitted to lately (a
        plain HMGET each, no script): what :meth:`breaker_admit` admits by without a round
        trip of its own."""
        now = time.monotonic()
        upstreams = [u for u, at in self._asked.items() if now - at < PEEK_INTEREST_S]
        for upstream in upstreams:
            pipe.hmget(self._breaker_keys(upstream)[0], ["st", "w"])
        return upstreams

    def _peeked_now(self, upstreams: list[str], read: list[Any]) -> None:
        now = time.monotonic()
        for upstream, (state, window) in zip(upstreams, read, strict=True):
            closed = state is None or _text(state) == "closed"
            self._peeked[upstream] = _Peek(closed, "" if window is None else _text(window), now)

    async def _run(
        self, what: str, script: AsyncScript, keys: list[str], args: Sequence[str | int] = ()
    ) -> Any:
        """Run a Lua script in this loop turn's batch and wait for its answer."""
        return await self._queue(what, script, keys, args)

    async def _do(self, what: str, op: Any) -> Any:
        """Await ``op`` (a redis-py coroutine) within the timeout; an unreachable server is
        StateUnavailable."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await op
        except UNREACHABLE as exc:
            raise self._unavailable(what, exc) from exc

    def _unavailable(self, what: str, exc: BaseException) -> StateUnavailable:
        return StateUnavailable(
            f"the Redis state backend at {redacted(self.url)} did not answer {what} within "
            f"{self.timeout_s}s ({type(exc).__name__}: {exc or 'no answer'}); start it or fix "
            "state.url (tether uses it again as soon as it answers), or set "
            "state.on_unavailable: fail_open to let calls through unchecked meanwhile"
        )

    def _send(
        self, what: str, script: AsyncScript, keys: list[str], args: Sequence[str | int]
    ) -> None:
        """Write a script behind: in this loop turn's batch, its answer not waited for (one
        that never comes is logged and counted in ``unconfirmed``)."""
        self._queue(what, script, keys, args).add_done_callback(
            functools.partial(self._confirmed, what)
        )

    def _confirmed(self, what: str, done: asyncio.Future[Any]) -> None:
        error = None if done.cancelled() else done.exception()
        if error is None:
            return
        self.unconfirmed += 1
        log.warning("%s written behind was not confirmed (it may be lost): %s", what, error)

    async def written(self) -> None:
        """Send what is queued now, and wait until every batch this process sent was
        answered."""
        while self._queued or self._behind:
            if self._queued:
                self._send_batch()
            await asyncio.wait(list(self._behind))

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
        self,
        counters: Sequence[Counter],
        reserved: Sequence[float],
        spent: Sequence[float],
        *,
        wait: bool = True,
    ) -> tuple[Level, ...]:
        if not counters:
            return ()
        args: list[str | int] = []
        for counter, held, used in zip(counters, reserved, spent, strict=True):
            args += [_num(-held), _num(used), _ms(counter.ttl_s)]
        keys = [self._key(c.key) for c in counters]
        if not wait:
            self._send("settle", self._settle, keys, args)
            return ()
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

    async def adjust(
        self, buckets: Sequence[Bucket], amounts: Sequence[float], *, wait: bool = True
    ) -> None:
        if buckets:
            keys = [self._key(b.key) for b in buckets]
            args = self._bucket_args(buckets, amounts)
            if wait:
                await self._run("adjust", self._adjust, keys, args)
            else:
                self._send("adjust", self._adjust, keys, args)

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
        """A breaker read closed by a batch of the last :data:`PEEK_FRESH_S` seconds (the
        call's own rate-limit and budget checks carry the read) admits at once, the attempt
        written behind (BREAKER_NOTE); any other admission is the atomic BREAKER_ADMIT round
        trip (an open breaker's cooldown, half-open probes)."""
        now = time.monotonic()
        self._asked[upstream] = now
        peek = self._peeked.get(upstream)
        local = peek is not None and peek.admits(self._oks.get(upstream, 0), policy, now)
        keys = [*self._breaker_keys(upstream), self._retry_keys(upstream)[0]]
        args = self._breaker_args(upstream, policy)
        if local:
            self._send("breaker_admit", self._note, keys, args)
            return Admission(True)
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
        self._peeked.pop(upstream, None)  # this failure may open it: admit by the server
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
        running: close at the end of each ``asyncio.run`` that used it), once the writes
        behind were answered."""
        await self.written()
        await self._client.aclose()
