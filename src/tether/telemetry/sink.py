"""Where finished traces go. The pipeline awaits ``write`` once per call, on the request path,
so a sink must only hand the trace off (to a bounded queue, a buffer), never store it there.
A sink may make the caller wait when its queue is full (back-pressure) but never drops."""

from __future__ import annotations

from collections import deque
from typing import Protocol, runtime_checkable

from tether.telemetry.trace import Trace


@runtime_checkable
class TraceSink(Protocol):
    async def write(self, trace: Trace) -> None: ...


class MemorySink:
    """Keeps the last ``size`` traces in memory (the default sink of the SDK)."""

    def __init__(self, size: int = 1000) -> None:
        self.traces: deque[Trace] = deque(maxlen=size)

    async def write(self, trace: Trace) -> None:
        self.traces.append(trace)

    def get(self, trace_id: str) -> Trace | None:
        return next((t for t in reversed(self.traces) if t.id == trace_id), None)


class FanOut:
    """Writes each trace to several sinks, in order."""

    def __init__(self, *sinks: TraceSink) -> None:
        self.sinks = sinks

    async def write(self, trace: Trace) -> None:
        for sink in self.sinks:
            await sink.write(trace)
