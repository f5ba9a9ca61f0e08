"""TraceWriter: batching off the event loop, back-pressure without drops, flush on close."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tether.store import Store, StoreConfig, TraceWriter
from tether.store.traces import TraceStore
from tether.telemetry import Trace
from tether.telemetry.sink import MemorySink, TraceSink


class SlowStore:
    """Delegates to a real TraceStore after sleeping in the writer's thread."""

    def __init__(self, inner: TraceStore, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.batches: list[int] = []
        self.threads: set[int] = set()

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
        batch = list(traces)
        self.threads.add(threading.get_ident())
        self.batches.append(len(batch))
        time.sleep(self.delay_s)
        return self.inner.write_many(batch)


class FlakyStore:
    """Fails the first ``failures`` calls, and always for traces of feature ``poison``."""

    def __init__(self, inner: TraceStore, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
        batch = list(traces)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database went away")
        if any(t["feature"] == "poison" for t in batch):
            raise ValueError("this trace cannot be stored")
        return self.inner.write_many(batch)


def finished(feature: str = "support", user: str | None = "u1") -> Trace:
    trace = Trace(feature=feature, user=user)
    trace.status, trace.output, trace.model = "ok", "hi", "local:smollm2"
    trace.event("cache", hit=False)
    return trace


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.from_url(db_url) as opened:
        yield opened


async def test_every_trace_lands_and_survives_a_restart(db_url: str) -> None:
    traces = [finished("support" if i % 2 else "search", user=f"u{i % 5}") for i in range(120)]
    store = Store.open(StoreConfig(url=db_url, batch_size=25, flush_interval_s=0.05))
    try:
        async with store.writer() as writer:
            for trace in traces:
                await writer.write(trace)
        stats = writer.stats
    finally:
        store.close()
    assert (stats.submitted, stats.written, stats.failed, stats.depth) == (120, 120, 0, 0)
    assert stats.batches >= 120 // 25

    with Store.from_url(db_url) as reopened:
        assert reopened.traces.count() == 120
        assert len(reopened.traces.list(feature="search", limit=500)) == 60
        assert len(reopened.traces.list(feature="support", user="u1", limit=500)) == 12
        got = reopened.traces.get(traces[7].id)
        assert got is not None and got["events"][0]["kind"] == "cache"


async def test_flushes_on_the_interval_without_close(store: Store) -> None:
    writer = TraceWriter(store.traces, batch_size=1000, flush_interval_s=0.05)
    await writer.start()
    try:
        for _ in range(3):
            await writer.write(finished())
        for _ in range(100):
            if store.traces.count() == 3:
                break
            await asyncio.sleep(0.02)
        assert store.traces.count() == 3
    finally:
        await writer.aclose()


async def test_full_queue_applies_back_pressure_and_drops_nothing(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    slow = SlowStore(store.traces, delay_s=0.02)
    writer = TraceWriter(slow, queue_size=2, batch_size=1, flush_interval_s=0.01)
    caplog.set_level(logging.WARNING, logger="tether.store.writer")
    await writer.start()
    depths: list[int] = []

    async def producer(n: int) -> None:
        for _ in range(n):
            await writer.write(finished())
            depths.append(writer.depth)

    await asyncio.gather(*(producer(6) for _ in range(5)))
    assert writer.stats.queue_full > 0
    assert writer.stats.wait_s > 0
    assert max(depths) <= writer.capacity == 2
    await writer.aclose()

    assert store.traces.count() == 30
    stats = writer.stats
    assert (stats.submitted, stats.written, stats.failed) == (30, 30, 0)
    assert "trace queue full" in caplog.text
    assert "store.queue_size" in caplog.text
    assert len(caplog.records) == 1  # rate-limited: one line, not one per wait
    assert threading.get_ident() not in slow.threads  # never on the event loop's thread


async def test_slow_storage_never_blocks_the_event_loop(store: Store) -> None:
    writer = TraceWriter(SlowStore(store.traces, delay_s=0.3), flush_interval_s=0.01)
    await writer.start()
    await writer.write(finished())
    gaps: list[float] = []
    last = time.perf_counter()
    for _ in range(20):
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    await writer.aclose()
    assert max(gaps) < 0.15
    assert store.traces.count() == 1


async def test_failed_batches_are_retried_then_isolated(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(store.traces, failures=2)
    writer = TraceWriter(flaky, batch_size=10, flush_interval_s=0.2, retry_backoff_s=0.0)
    await writer.start()
    good = [finished() for _ in range(4)]
    poison = finished("poison")
    for trace in [*good[:2], poison, *good[2:]]:
        await writer.write(trace)
    await writer.aclose()

    assert {t["id"] for t in store.traces.list()} == {t.id for t in good}
    stats = writer.stats
    assert (stats.written, stats.failed, stats.retries) == (4, 1, 2)
    lost = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lost) == 1 and poison.id in lost[0].getMessage()


async def test_close_flushes_and_further_writes_are_refused(store: Store) -> None:
    writer = TraceWriter(store.traces, batch_size=1000, flush_interval_s=60)
    await writer.start()
    for _ in range(5):
        await writer.write(finished())
    await writer.aclose()
    assert store.traces.count() == 5
    await writer.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await writer.write(finished())
    with pytest.raises(RuntimeError, match="closed"):
        await writer.start()


async def test_write_before_start_is_an_error(store: Store) -> None:
    writer = TraceWriter(store.traces)
    with pytest.raises(RuntimeError, match=r"start\(\)"):
        await writer.write(finished())
    await writer.aclose()


async def test_submit_is_write(store: Store) -> None:
    async with TraceWriter(store.traces) as writer:
        await writer.submit(finished())
    assert store.traces.count() == 1


def test_constructor_refuses_silly_sizes(store: Store) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TraceWriter(store.traces, queue_size=0)


async def test_sinks(store: Store) -> None:
    sink = MemorySink()
    trace = finished()
    await sink.write(trace)
    assert list(sink.traces) == [trace]
    assert isinstance(sink, TraceSink)
    assert isinstance(store.writer(), TraceSink)
