"""The trace of one call: every attempt and every decision tether took, in order.

A trace is built in memory on the request path (appending is cheap) and handed to a sink after
the call; persistence and export live elsewhere so the hot path never waits on storage.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tether.types import Usage

AttemptStatus = Literal["ok", "error"]
Operation = Literal["chat", "embeddings"]  # the GenAI operation an attempt asked for


def new_trace_id() -> str:
    """A random 128-bit hex id, the width of an OpenTelemetry trace id. Ids need uniqueness,
    not secrecy: the process PRNG (seeded from the OS) avoids a syscall per call."""
    return f"{random.getrandbits(128):032x}"


@dataclass(slots=True)
class Attempt:
    """One call to one upstream model."""

    model: str
    provider: str
    number: int
    chain_position: int = 0
    status: AttemptStatus = "ok"
    error_class: str | None = None
    error: str | None = None
    status_code: int | None = None
    start_ms: float = 0.0
    end_ms: float = 0.0
    ttft_ms: float | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    streamed: bool = False
    response_model: str | None = None
    operation: Operation = "chat"
    cost_unknown: bool = False  # the price table does not know the model: cost_usd is 0.0
    chars_out: int = 0  # text streamed so far (prices a stream cut before its usage came)

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(slots=True)
class TraceEvent:
    """A decision: ``retry``, ``fallback``, ``breaker_open``, ``breaker_wait``,
    ``failure_path``, ``stream_interrupted`` ... with its data."""

    kind: str
    at_ms: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Trace:
    feature: str
    id: str = field(default_factory=new_trace_id)
    variant: str = "default"
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    key_id: str | None = None  # the gateway's API key (its id, never the key)
    config_version: str | None = None  # a hash of the feature's effective spec
    cache: Literal["hit", "miss", "bypass"] | None = None  # None: the feature has no cache
    cost_unknown: bool = False  # an attempt's model has no price: cost_usd counts it as 0.0
    started_at: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    attempts: list[Attempt] = field(default_factory=list)
    events: list[TraceEvent] = field(default_factory=list)
    status: Literal["ok", "degraded", "error", "running"] = "running"
    degraded: bool = False
    reason: str | None = None
    input: dict[str, Any] | None = None  # what was asked, as the feature's trace.capture keeps it
    output: str | None = None
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0

    def now_ms(self) -> float:
        """Milliseconds since the call started."""
        return (time.perf_counter() - self.t0) * 1000.0

    def event(self, kind: str, **data: Any) -> None:
        self.events.append(TraceEvent(kind, self.now_ms(), data))

    def start_attempt(
        self, model: str, provider: str, *, streamed: bool = False, operation: Operation = "chat"
    ) -> Attempt:
        attempt = Attempt(
            model=model,
            provider=provider,
            number=len(self.attempts) + 1,
            start_ms=self.now_ms(),
            streamed=streamed,
            operation=operation,
        )
        self.attempts.append(attempt)
        return attempt

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the shape the trace store and ``--json`` output use).

        A snapshot: containers in ``metadata`` and event data are copied, so changing the trace
        afterwards does not change the view. Written out by hand (not ``dataclasses.asdict``):
        the trace writer calls it once per request.
        """
        return {
            "feature": self.feature,
            "id": self.id,
            "variant": self.variant,
            "user": self.user,
            "metadata": _snapshot(self.metadata),
            "tenant": self.tenant,
            "key_id": self.key_id,
            "config_version": self.config_version,
            "cache": self.cache,
            "cost_unknown": self.cost_unknown,
            "started_at": self.started_at,
            "attempts": [_attempt_dict(attempt) for attempt in self.attempts],
            "events": [
                {"kind": e.kind, "at_ms": e.at_ms, "data": _snapshot(e.data)} for e in self.events
            ],
            "status": self.status,
            "degraded": self.degraded,
            "reason": self.reason,
            "input": _snapshot(self.input),
            "output": self.output,
            "model": self.model,
            "usage": self.usage.as_dict(),
            "cost_usd": self.cost_usd,
            "latency_ms": self.latency_ms,
        }


def _attempt_dict(a: Attempt) -> dict[str, Any]:
    return {
        "model": a.model,
        "provider": a.provider,
        "number": a.number,
        "chain_position": a.chain_position,
        "status": a.status,
        "error_class": a.error_class,
        "error": a.error,
        "status_code": a.status_code,
        "start_ms": a.start_ms,
        "end_ms": a.end_ms,
        "ttft_ms": a.ttft_ms,
        "usage": a.usage.as_dict(),
        "cost_usd": a.cost_usd,
        "streamed": a.streamed,
        "response_model": a.response_model,
        "operation": a.operation,
        "cost_unknown": a.cost_unknown,
        "chars_out": a.chars_out,
        "duration_ms": round(a.end_ms - a.start_ms, 3),
    }


_ATOMS = frozenset((str, int, float, bool, type(None)))


def _snapshot(value: Any) -> Any:
    """What ``dataclasses.asdict`` makes of a field value, at a fraction of its cost for the
    usual plain dicts and lists: containers are copied, dataclasses become dicts, other objects
    are deep-copied."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is dict:
        return {k: v if type(v) in _ATOMS else _snapshot(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _ATOMS else _snapshot(v) for v in value]
    return asdict(_Box(value))["value"]  # anything else exactly as asdict copies it


@dataclass(slots=True)
class _Box:
    value: Any
