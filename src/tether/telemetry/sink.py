"""Where finished traces go. The pipeline calls ``submit`` once per call, on the hot path, so a
sink must only hand the trace off (to a queue, a buffer), never write it synchronously."""

from __future__ import annotations

from collections import deque
from typing import Protocol

from tether.telemetry.trace import Trace


class TraceSink(Protocol):
    def submit(self, trace: Trace) -> None: ...


class MemorySink:
    """Keeps the last ``size`` traces in memory (the default sink of the SDK)."""

    def __init__(self, size: int = 1000) -> None:
        self.traces: deque[Trace] = deque(maxlen=size)

    def submit(self, trace: Trace) -> None:
        self.traces.append(trace)

    def get(self, trace_id: str) -> Trace | None:
        return next((t for t in reversed(self.traces) if t.id == trace_id), None)


class FanOut:
    """Submits each trace to several sinks."""

    def __init__(self, *sinks: TraceSink) -> None:
        self.sinks = sinks

    def submit(self, trace: Trace) -> None:
        for sink in self.sinks:
            sink.submit(trace)
