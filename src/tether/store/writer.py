"""The async batching trace writer: the request path hands a trace over and moves on.

::

    request path ──write(trace)──▶ bounded queue ──▶ background task ──▶ WriterProcess (child)
                      │                              (batch_size or        or a worker thread
                      └─ queue full: wait + count     flush_interval_s)    ──▶ write_many

* **Off the request path, and off the process.** ``write`` snapshots the trace (``to_dict``,
  a few microseconds) and enqueues it. With a :class:`~tether.store.process.WriterProcess` (what
  ``Store.writer()`` picks for a SQLite file or PostgreSQL) the event loop only pickles each
  batch: building rows, encoding JSON and the database run in a child process, so they never
  hold this process's GIL. With a plain :class:`BatchStore` (an in-memory database, a test
  double) ``write_many`` runs in a worker thread.
* **Back-pressure, never a silent drop.** When the queue is full, ``write`` waits for room: the
  caller slows down instead of losing the trace. Every wait counts in ``stats.queue_full`` and
  is logged (at most once per ``warn_every_s``, with the number of waits since the last line).
* **Failures are retried, then isolated.** A failing batch is retried ``write_attempts`` times
  with backoff (writes are idempotent by trace id), then written one trace at a time so one bad
  trace cannot take its neighbours down; a trace that still fails is counted in
  ``stats.failed`` and logged at ERROR with its id.
* **Graceful shutdown flushes.** ``aclose()`` writes everything submitted before it returns,
  then stops the writer process.
* **A crash loses nothing acknowledged.** With a :class:`~tether.store.journal.Journal`
  (``Store.writer()`` gives one unless ``store.journal: off``), ``write`` appends the trace to
  the journal (one ``os.write``) before it returns, so before the response that carries the
  trace id leaves; ``start()`` first stores what a crashed process left in the journal. A
  journal file is deleted once every trace in it is stored; a trace that could not be stored
  stays in it for the next start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

from tether.config.store import StoreConfig
from tether.store.journal import NO_SEGMENT, Journal
from tether.store.process import WriterProcess
from tether.telemetry.trace import Trace

TraceDict = dict[str, Any]
_Item = tuple[int, TraceDict]  # (journal segment, trace)


class BatchStore(Protocol):
    """What the writer needs from a store (``TraceStore`` has it)."""

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int: ...


class _Batches(Protocol):
    """Where batches go: a :class:`WriterProcess`, or a :class:`BatchStore` in a thread."""

    @property
    def pid(self) -> int | None: ...

    @property
    def in_flight(self) -> int: ...

    async def start(self) -> None: ...

    async def write_many(self, batch: list[TraceDict]) -> int: ...

    async def aclose(self) -> None: ...


class _InThread:
    """A synchronous store, called in a worker thread (one batch at a time: two threads
    writing at once would only wait for each other's locks)."""

    pid = None
    in_flight = 1

    def __init__(self, store: BatchStore) -> None:
        self._store = store

    async def start(self) -> None:
        return None

    async def write_many(self, batch: list[TraceDict]) -> int:
        return await asyncio.to_thread(self._store.write_many, batch)

    async def aclose(self) -> None:
        return None


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics. ``written + duplicates + failed`` traces have left the queue (or
    came from the journal at start-up: ``replayed``)."""

    submitted: int = 0
    written: int = 0
    duplicates: int = 0
    failed: int = 0
    queue_full: int = 0
    wait_s: float = 0.0
    batches: int = 0
    retries: int = 0
    depth: int = 0
    replayed: int = 0
    journal_errors: int = 0


class TraceWriter:
    """A :class:`~tether.telemetry.sink.TraceSink` storing traces in batches off the request path.

    ``store`` is a :class:`~tether.store.process.WriterProcess` (batches are written in a child
    process) or any :class:`BatchStore` (``write_many`` runs in a worker thread). ``journal``
    (not yet open; the writer opens and closes it) keeps acknowledged traces across a crash. Use
    ``async with TraceWriter(store) as writer:`` or ``await start()`` … ``await aclose()``.
    """

    def __init__(
        self,
        store: BatchStore | WriterProcess,
        *,
        queue_size: int = 10_000,
        batch_size: int = 200,
        flush_interval_s: float = 0.5,
        write_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        warn_every_s: float = 5.0,
        logger: logging.Logger | None = None,
        journal: Journal | None = None,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or write_attempts < 1:
            raise ValueError("queue_size, batch_size and write_attempts must be at least 1")
        self._batches: _Batches = store if isinstance(store, WriterProcess) else _InThread(store)
        self._journal = journal
        self._sync_each = journal is not None and journal.fsync == "always"
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._attempts = write_attempts
        self._backoff = retry_backoff_s
        self._warn_every = warn_every_s
        self._log = logger or logging.getLogger("tether.store.writer")
        self._stats = WriterStats()
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing = False
        self._last_warning = float("-inf")
        self._unwarned = 0
        self._last_journal_error = float("-inf")

    @classmethod
    def from_config(
        cls,
        store: BatchStore | WriterProcess,
        config: StoreConfig,
        journal: Journal | None = None,
    ) -> TraceWriter:
        return cls(
            store,
            queue_size=config.queue_size,
            batch_size=config.batch_size,
            flush_interval_s=config.flush_interval_s,
            write_attempts=config.write_attempts,
            journal=journal,
        )

    # ------------------------------------------------------------------ metrics

    @property
    def depth(self) -> int:
        """Traces waiting in the queue."""
        return self._queue.qsize()

    @property
    def capacity(self) -> int:
        return self._queue.maxsize

    @property
    def mode(self) -> Literal["process", "thread"]:
        """Where batches are written: a child process, or a worker thread."""
        return "process" if isinstance(self._batches, WriterProcess) else "thread"

    @property
    def pid(self) -> int | None:
        """The writer process's id (``None`` in thread mode, before start, after close)."""
        return self._batches.pid

    @property
    def journal(self) -> Journal | None:
        return self._journal

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters (``depth`` included)."""
        return dataclasses.replace(self._stats, depth=self.depth)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the writer process (if any: about half a second), store what crashed
        processes left in the journal, then start the background task."""
        if self._closing:
            raise RuntimeError("this TraceWriter was closed; create a new one")
        if self._task is None:
            try:
                await self._prepare()
            except BaseException:
                if self._journal is not None:
                    self._journal.close()  # its lock: a later start takes its files over
                raise
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="tether-trace-writer"
            )

    async def _prepare(self) -> None:
        if self._journal is not None:
            await asyncio.to_thread(self._journal.open)
        await self._batches.start()
        if self._journal is not None:
            await self._replay(self._journal)
            await self._journal.start()

    async def aclose(self) -> None:
        """Stop taking traces, write every trace already submitted, stop the writer process."""
        self._closing = True
        if self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(
                self._close(), name="tether-trace-writer-close"
            )
        await asyncio.shield(self._closer)

    async def _close(self) -> None:
        try:
            if self._task is None or self._task.done():
                await self._drain()
            else:
                await self._queue.put(None)  # after every trace already queued
                await self._task
        finally:
            try:
                await self._batches.aclose()
            finally:
                if self._journal is not None:
                    await self._journal.aclose()

    async def __aenter__(self) -> TraceWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the sink

    async def write(self, trace: Trace) -> None:
        """Append ``trace`` to the journal (if any), queue it for storage; waits only while the
        queue is full (back-pressure) and, with ``fsync: always``, until the journal is on
        disk. With a journal, once it returns the trace survives a crash of this process."""
        self._check_running()
        data = trace.to_dict()
        item = (self._append(data), data)
        self._stats.submitted += 1
        if self._queue.full():
            self._stats.queue_full += 1
            self._warn_full()
            loop = asyncio.get_running_loop()
            started = loop.time()
            await self._queue.put(item)
            self._stats.wait_s += loop.time() - started
        else:
            self._queue.put_nowait(item)
        if self._sync_each and item[0] != NO_SEGMENT:
            await self._sync()

    def _append(self, data: TraceDict) -> int:
        """The trace's journal segment, or ``NO_SEGMENT`` (no journal, or it failed: logged;
        the trace is still stored unless this process crashes first)."""
        if self._journal is None:
            return NO_SEGMENT
        try:
            return self._journal.append(data)
        except (OSError, TypeError, ValueError) as exc:
            self._journal_failed(data, exc)
            return NO_SEGMENT

    async def _sync(self) -> None:
        assert self._journal is not None
        try:
            await self._journal.sync()
        except OSError as exc:
            self._journal_failed(None, exc)

    def _journal_failed(self, data: TraceDict | None, exc: Exception) -> None:
        self._stats.journal_errors += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_journal_error < self._warn_every:
            return
        self._last_journal_error = now
        self._log.error(
            "the trace journal failed (%s: %s; %d failures so far)%s: a crash now would lose "
            "acknowledged traces. Free disk space or fix %s, or set store.journal: off.",
            type(exc).__name__,
            exc,
            self._stats.journal_errors,
            "" if data is None else f" for trace {data.get('id')}",
            self._journal.directory if self._journal is not None else "the journal folder",
        )

    async def submit(self, trace: Trace) -> None:
        """Same as :meth:`write` (the name the gateway issue uses)."""
        await self.write(trace)

    def _check_running(self) -> None:
        if self._closing:
            raise RuntimeError(
                "TraceWriter is closed: close it only after the server stops taking requests"
            )
        if self._task is None:
            raise RuntimeError("TraceWriter is not started: await writer.start() first")
        if self._task.done():
            raise RuntimeError("the trace writer task stopped unexpectedly; see the log")

    def _warn_full(self) -> None:
        self._unwarned += 1
        now = asyncio.get_running_loop().time()
        if now - self._last_warning < self._warn_every:
            return
        self._log.warning(
            "trace queue full (%d traces waiting): requests wait for the trace writer "
            "(%d waits since the last warning, %d in total). The store is slower than the "
            "traffic: check the database, or raise store.queue_size / store.batch_size.",
            self.depth,
            self._unwarned,
            self._stats.queue_full,
        )
        self._last_warning = now
        self._unwarned = 0

    # ------------------------------------------------------------------ background work

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self._batches.in_flight)
        flushing: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            flushing.discard(task)
            slots.release()

        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            await slots.acquire()  # before taking a batch out of the queue: the bound holds
            batch, stopping = await self._collect()
            if not batch:
                slots.release()
                continue
            task = loop.create_task(self._flush(batch), name="tether-trace-writer-flush")
            flushing.add(task)
            task.add_done_callback(done)
        await asyncio.gather(*flushing)

    async def _collect(self) -> tuple[list[_Item], bool]:
        """The next batch: up to ``batch_size`` traces or whatever came within the interval."""
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._interval
        while len(batch) < self._batch_size:
            if self._queue.empty():
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _drain(self) -> None:
        """Write what is queued without the background task (never started, or it died)."""
        while not self._queue.empty():
            batch: list[_Item] = []
            while not self._queue.empty() and len(batch) < self._batch_size:
                item = self._queue.get_nowait()
                if item is not None:
                    batch.append(item)
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[_Item]) -> None:
        """Store ``batch``, then tell the journal which of its traces are stored."""
        lost = await self._store([data for _, data in batch])
        if self._journal is not None:
            self._journal.settle(
                (segment for segment, _ in batch), (batch[index][0] for index in lost)
            )

    async def _store(self, batch: list[TraceDict]) -> list[int]:
        """Write ``batch`` (retried, then one by one); returns the positions of the traces
        that could not be stored (counted and logged)."""
        log = self._log
        for attempt in range(1, self._attempts + 1):
            try:
                written = await self._batches.write_many(batch)
            except Exception as exc:  # one failing batch must not stop the writer
                last = attempt == self._attempts
                log.warning(
                    "writing %d traces failed (attempt %d of %d): %s; %s",
                    len(batch),
                    attempt,
                    self._attempts,
                    exc,
                    "writing them one by one" if last else "retrying",
                    exc_info=last,
                )
                if last:
                    break
                self._stats.retries += 1
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            else:
                self._count(len(batch), written)
                return []
        return await self._write_one_by_one(batch)

    async def _write_one_by_one(self, batch: list[TraceDict]) -> list[int]:
        log = self._log
        fate = (
            "and is lost"
            if self._journal is None
            else "(it stays in the trace journal: the next start tries again)"
        )
        lost: list[int] = []
        for index, item in enumerate(batch):
            try:
                written = await self._batches.write_many([item])
            except Exception:  # counted and logged with the trace id: never a silent drop
                self._stats.failed += 1
                lost.append(index)
                log.exception(
                    "trace %s (feature %s) could not be stored %s",
                    item.get("id"),
                    item.get("feature"),
                    fate,
                )
            else:
                self._count(1, written)
        return lost

    async def _replay(self, journal: Journal) -> None:
        """Store what crashed processes left in the journal (idempotent: by trace id)."""
        replayed = stored = 0
        for leftover in await asyncio.to_thread(journal.leftovers):
            try:
                for path in leftover.segments:
                    traces = await asyncio.to_thread(leftover.read, path)
                    before = self._stats.written
                    lost = 0
                    for start in range(0, len(traces), self._batch_size):
                        lost += len(await self._store(traces[start : start + self._batch_size]))
                    replayed += len(traces)
                    stored += self._stats.written - before
                    if not lost:  # else it stays for the next start (each loss is logged)
                        await asyncio.to_thread(leftover.discard, path)
            finally:
                leftover.release()
        self._stats.replayed += replayed
        if replayed:
            self._log.warning(
                "the trace journal %s held %d traces of a tether process that stopped without "
                "storing them all (a crash?): %d were not stored yet and are stored now",
                journal.directory,
                replayed,
                stored,
            )

    def _count(self, size: int, written: int) -> None:
        self._stats.batches += 1
        self._stats.written += written
        self._stats.duplicates += size - written
