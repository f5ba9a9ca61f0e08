"""The two in-process algorithms of upstream health, kept free of the model wrappers so that
the memory backend (:class:`~tether.state.memory.MemoryState`) and the wrappers
(``tether.resilience``) both use them without importing each other.

:class:`BreakerWindow`: closed -> open -> half-open -> closed. Closed: outcomes fill a sliding
window of the last ``window`` calls; when at least ``min_calls`` are in it and the failure rate
reaches ``failure_rate``, the breaker opens. Open: calls are refused for ``cooldown_s``.
Half-open: up to ``half_open_probes`` calls probe the upstream; that many successes close it,
any failure opens it again. The Redis backend runs the same rules in a Lua script.

:class:`RetryBudget`: over a sliding window, retries may add at most ``ratio`` of the calls made
(plus a floor of ``min_retries``), in the manner of Finagle's and Envoy's retry budgets.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tether.config.features import BreakerConfig
from tether.state.base import Admission

BreakerState = Literal["closed", "open", "half_open"]
BUDGET_WINDOW_S = 10.0


@dataclass
class BreakerWindow:
    """The state of one upstream's breaker. Not tied to a feature: features share upstreams."""

    upstream: str
    config: BreakerConfig = field(default_factory=BreakerConfig)
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = "closed"
    opened_at: float = 0.0
    _window: deque[bool] = field(default_factory=deque)
    _probes_out: int = 0
    _probe_successes: int = 0

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when calls may pass)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.opened_at + self.config.cooldown_s - self.clock())

    def admit(self) -> Admission:
        """Let a call through (as a half-open probe, maybe) or say how long until one may go."""
        if self.state == "open":
            wait = self.retry_in()
            if wait > 0:
                return Admission(False, retry_in_s=wait)
            self.state, self._probes_out, self._probe_successes = "half_open", 0, 0
        if self.state == "half_open":
            if self._probes_out >= self.config.half_open_probes:
                return Admission(False)
            self._probes_out += 1
            return Admission(True, probe=True)
        return Admission(True)

    def record(self, ok: bool, probe: bool) -> None:
        """A call ended with an outcome that says something about the upstream."""
        if probe or self.state == "half_open":
            self._probes_out = max(0, self._probes_out - 1) if probe else self._probes_out
            if not ok:
                self._open()
                return
            self._probe_successes += 1
            if self._probe_successes >= self.config.half_open_probes:
                self.state = "closed"
                self._window.clear()
            return
        self._window.append(ok)
        while len(self._window) > self.config.window:
            self._window.popleft()
        failures = self._window.count(False)
        if (
            len(self._window) >= self.config.min_calls
            and failures / len(self._window) >= self.config.failure_rate
        ):
            self._open()

    def release(self, probe: bool) -> None:
        """A call ended with an outcome that says nothing about the upstream."""
        if probe:
            self._probes_out = max(0, self._probes_out - 1)

    def _open(self) -> None:
        self.state = "open"
        self.opened_at = self.clock()
        self._window.clear()


@dataclass
class RetryBudget:
    """Retries may add at most ``ratio`` of the calls made in the last ``window_s`` seconds,
    and ``min_retries`` whatever the traffic.

    ``counts_attempts``: :meth:`record_call` is told of every attempt, retries included (what
    a breaker sees), so the calls are the attempts minus the retries spent."""

    ratio: float = 0.2
    min_retries: int = 10
    window_s: float = BUDGET_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    counts_attempts: bool = False
    _calls: deque[float] = field(default_factory=deque)
    _retries: deque[float] = field(default_factory=deque)

    def _trim(self, now: float) -> None:
        for q in (self._calls, self._retries):
            while q and q[0] < now - self.window_s:
                q.popleft()

    def record_call(self) -> None:
        now = self.clock()
        self._trim(now)  # else a healthy upstream, never retried, grows the window for ever
        self._calls.append(now)

    def try_spend(self) -> bool:
        """Whether a retry fits the budget (and, if so, count it)."""
        now = self.clock()
        self._trim(now)
        calls = len(self._calls) - (len(self._retries) if self.counts_attempts else 0)
        allowed = max(self.min_retries, int(self.ratio * calls))
        if len(self._retries) >= allowed:
            return False
        self._retries.append(now)
        return True
