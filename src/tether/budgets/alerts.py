"""Budget alerts: when a scope's spending (spent + reserved) crosses one of its thresholds
(``budgets.SCOPE.alerts``, e.g. 50/80/100% of the limit), one alert fires per period, whichever
replica saw it first (``State.first`` on a key naming the period and the threshold).

An alert is a log line and, when ``alerts.webhook`` is set, a JSON POST to it, signed with
``x-tether-signature: sha256=HEX`` (HMAC-SHA256 of the body under ``alerts.secret``) and retried
with exponential backoff on a connection error or a 5xx (``alerts.max_attempts``). All of it
runs in a background task: a call that crosses a threshold only puts the alert in a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from tether.config.budgets import AlertsConfig
from tether.errors import StateUnavailable
from tether.state.base import key_part

if TYPE_CHECKING:
    import aiohttp

    from tether.state.policy import SharedState

log = logging.getLogger("tether.budgets")
QUEUE_LIMIT = 1_000
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
SIGNATURE_HEADER = "x-tether-signature"


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """One threshold of one scope's budget, crossed in one period."""

    feature: str
    scope: str
    identity: str
    dimension: str  # cost_usd or tokens
    threshold: float  # a fraction of the limit
    limit: float
    spent: float
    reserved: float
    period_start: float
    period_end: float
    config_version: str | None = None

    def key(self) -> str:
        """The state key that makes it fire once per period (every replica builds the same)."""
        return (
            f"alert:{key_part(self.feature)}:{self.scope}:{key_part(self.identity)}:"
            f"{self.dimension}:{int(self.period_start)}:{self.threshold:g}"
        )

    def body(self) -> bytes:
        """The webhook's JSON body."""
        return json.dumps({"event": "budget_alert", **asdict(self)}, sort_keys=True).encode()


def sign(body: bytes, secret: str) -> str:
    """The ``x-tether-signature`` value for ``body``: ``sha256=`` + HMAC-SHA256 hex digest."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Alerts:
    """Sends budget alerts in the background (:meth:`crossed` only queues one).
    :meth:`aclose` sends what is queued, waiting at most ``timeout_s``."""

    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self.sent: list[BudgetAlert] = []  # fired by this process (what `status` and tests read)
        self._queue: asyncio.Queue[tuple[SharedState, BudgetAlert]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def crossed(self, state: SharedState, alert: BudgetAlert) -> None:
        """Queue ``alert``; the background task fires it unless another replica already did."""
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_LIMIT)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue))
        try:
            self._queue.put_nowait((state, alert))
        except asyncio.QueueFull:
            log.warning("budget alert queue full; dropped %s", alert.key())

    async def _run(self, queue: asyncio.Queue[tuple[SharedState, BudgetAlert]]) -> None:
        while True:
            state, alert = await queue.get()
            try:
                await self._fire(state, alert)
            except Exception:  # logged with its traceback: a bug must not stop later alerts
                log.exception("budget alert %s could not be sent", alert.key())
            finally:
                queue.task_done()

    async def _fire(self, state: SharedState, alert: BudgetAlert) -> None:
        ttl = max(alert.period_end - alert.period_start, 60.0) + 3_600.0
        try:
            key = alert.key()
            if not await state.checked(None, "budget_alert", lambda s: s.first(key, ttl), False):
                return
        except StateUnavailable as exc:
            log.warning("budget alert %s not sent: the state is unavailable (%s)", alert.key(), exc)
            return
        self.sent.append(alert)
        log.warning(
            "budget alert: feature %s %s %s reached %.0f%% of its %s limit %g (spent %g, "
            "reserved %g)",
            alert.feature,
            alert.scope,
            alert.identity,
            alert.threshold * 100,
            alert.dimension,
            alert.limit,
            alert.spent,
            alert.reserved,
        )
        if self.config.webhook:
            await self._post(alert.body())

    async def _post(self, body: bytes) -> None:
        import aiohttp

        url = self.config.webhook
        assert url is not None
        headers = {"content-type": "application/json"}
        if self.config.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.config.secret)
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        delay = FIRST_BACKOFF_S
        for attempt in range(1, self.config.max_attempts + 1):
            problem = await self._try_post(url, body, headers)
            if problem is None:
                return
            if attempt == self.config.max_attempts:
                log.error(
                    "budget alert webhook %s failed %d times (last: %s); check alerts.webhook",
                    url,
                    attempt,
                    problem,
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _try_post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """None when delivered (or refused for good: a 4xx is not retried), else the problem."""
        import aiohttp

        assert self._session is not None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 500:
                    return f"HTTP {response.status}"
                if response.status >= 400:
                    log.error("budget alert webhook %s refused it: HTTP %d", url, response.status)
                return None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (at most ``timeout_s``) until every queued alert was handled."""
        if self._queue is not None and self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout_s)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (bounded by ``timeout_s``), then stop."""
        await self.drain(timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
