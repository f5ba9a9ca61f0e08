"""Where finished traces go. The pipeline knows only this one method.

:class:`~tether.store.writer.TraceWriter` is the durable sink (batched, off the request path);
:class:`MemorySink` is the test double.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tether.telemetry.trace import Trace


@runtime_checkable
class Sink(Protocol):
    async def write(self, trace: Trace) -> None:
        """Accept a finished trace. May wait (back-pressure) but never drops it silently."""
        ...


class MemorySink:
    """Keeps traces in a list: for tests and for embedding tether without a database."""

    def __init__(self) -> None:
        self.traces: list[Trace] = []

    async def write(self, trace: Trace) -> None:
        self.traces.append(trace)
