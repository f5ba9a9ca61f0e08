"""The trace sink that stores: one construction for the gateway, the SDK and the CLI.

``StoreSink(config.store, config_dir=...)`` opens the configured store (migrated) and the same
batching :class:`~tether.store.writer.TraceWriter` the gateway runs (``Store.writer()``), so a
trace from ``tether run`` or ``Tether.from_config`` has the same guarantees as one from
``tether serve``. The store opens on ``start()`` or on the first trace; ``aclose()`` writes every
trace handed over before it and closes the store (unless the store was given, then its owner
closes it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType

from tether.config.store import StoreConfig
from tether.store.store import Store
from tether.store.writer import TraceWriter
from tether.telemetry.trace import Trace


class StoreSink:
    """A :class:`~tether.telemetry.sink.TraceSink` writing to the configured store."""

    def __init__(
        self,
        config: StoreConfig | None = None,
        *,
        config_dir: str | Path = ".",
        store: Store | None = None,
    ) -> None:
        self.config = config or (store.config if store is not None else StoreConfig())
        self.config_dir = Path(config_dir)
        self._store = store
        self._owns_store = store is None
        self._writer: TraceWriter | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the trace store is not open: await start() first")
        return self._store

    @property
    def writer(self) -> TraceWriter | None:
        """The running writer (None before ``start()`` and after ``aclose()``)."""
        return self._writer

    async def start(self) -> TraceWriter:
        """Open the store and start its writer (idempotent); returns the writer."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("this trace store is closed; create a new Tether")
            if self._writer is None:
                if self._store is None:
                    self._store = await asyncio.to_thread(
                        Store.open, self.config, config_dir=self.config_dir
                    )
                writer = self._store.writer()
                await writer.start()
                self._writer = writer
            return self._writer

    async def write(self, trace: Trace) -> None:
        writer = self._writer or await self.start()
        await writer.write(trace)

    async def aclose(self) -> None:
        """Write every trace handed over so far, stop the writer, close an owned store."""
        async with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
            try:
                if writer is not None:
                    await writer.aclose()
            finally:
                if self._owns_store and self._store is not None:
                    self._store.close()
                    self._store = None

    async def __aenter__(self) -> StoreSink:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
