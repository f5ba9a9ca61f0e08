"""The trace writer's child process: traces written there are readable here, back-pressure and
flush-on-close still hold, failures are retried and isolated, and the child never outlives the
writer or the process that started it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.store import Store, StoreConfig, TraceWriter
from tether.store.process import WriterProcess, WriterProcessError, can_reopen
from tether.telemetry import Trace

PARENT = """\
import asyncio, sys
from tether.store import Store, StoreConfig
from tether.telemetry import Trace

async def main() -> None:
    config = StoreConfig(url=sys.argv[1], flush_interval_s=0.01, busy_timeout_s=60)
    store = Store.open(config, migrate=False)
    writer = store.writer()
    await writer.start()
    if sys.argv[2] == "busy":
        await writer.write(Trace(feature="stuck"))
        await asyncio.sleep(0.5)  # the child is now waiting for the database lock
    print(writer.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def finished(feature: str = "support") -> Trace:
    trace = Trace(feature=feature, user="u1")
    attempt = trace.start_attempt("gpt-4o-mini", "openai")
    attempt.end_ms = attempt.start_ms + 3
    trace.status, trace.output, trace.model = "ok", "hi", "openai:gpt-4o-mini"
    trace.event("guard", guard="pii_redact", passed=True)
    return trace


def alive(pid: int) -> bool:
    """Running (a zombie that its new parent has not reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def wait_until_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(StoreConfig(url=db_url, flush_interval_s=0.02)) as opened:
        yield opened


async def test_traces_written_by_the_child_are_readable_and_it_exits_on_close(
    store: Store,
) -> None:
    writer = store.writer()
    assert writer.pid is None  # nothing is spawned before start()
    await writer.start()
    pid = writer.pid
    assert pid is not None and pid != os.getpid() and alive(pid)
    traces = [finished("search" if i % 2 else "support") for i in range(50)]
    for trace in traces:
        await writer.write(trace)
    await writer.aclose()

    assert writer.pid is None and not alive(pid)
    stats = writer.stats
    assert (stats.submitted, stats.written, stats.failed, stats.depth) == (50, 50, 0, 0)
    assert store.traces.count() == 50
    got = store.traces.get(traces[3].id)
    assert got is not None
    assert got["attempts"] == traces[3].to_dict()["attempts"]
    assert [step["kind"] for step in got["steps"]] == ["attempt", "event"]


async def test_back_pressure_is_counted_and_nothing_is_dropped(store: Store) -> None:
    writer = TraceWriter(WriterProcess(store.engine.url), queue_size=2, batch_size=1)
    await writer.start()

    async def producer(n: int) -> None:
        for _ in range(n):
            await writer.write(finished())
            assert writer.depth <= 2

    await asyncio.gather(*(producer(8) for _ in range(4)))
    assert writer.stats.queue_full > 0 and writer.stats.wait_s > 0
    await writer.aclose()
    assert (writer.stats.written, writer.stats.failed) == (32, 0)
    assert store.traces.count() == 32


async def test_close_flushes_what_the_interval_has_not(store: Store) -> None:
    writer = TraceWriter(WriterProcess(store.engine.url), batch_size=1000, flush_interval_s=60)
    await writer.start()
    for _ in range(7):
        await writer.write(finished())
    await asyncio.sleep(0.05)
    assert store.traces.count() == 0  # still queued
    await writer.aclose()
    assert store.traces.count() == 7
    await writer.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await writer.write(finished())


async def test_a_refused_trace_is_isolated_with_the_childs_error(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    writer = TraceWriter(WriterProcess(store.engine.url), batch_size=10, retry_backoff_s=0.0)
    await writer.start()
    good = [finished() for _ in range(3)]
    bad = finished()
    bad.id = "x" * 65  # the store refuses ids over 64 characters
    for trace in [good[0], bad, *good[1:]]:
        await writer.write(trace)
    await writer.aclose()

    stats = writer.stats
    assert (stats.written, stats.failed, stats.retries) == (3, 1, 2)
    assert {t["id"] for t in store.traces.list()} == {t.id for t in good}
    lost = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lost) == 1 and bad.id in lost[0].getMessage()
    assert "ValueError: trace id" in caplog.text
    assert "in the trace writer process" in caplog.text  # the child's traceback is attached


async def test_a_dead_child_is_replaced_and_its_batch_retried(store: Store) -> None:
    writer = TraceWriter(WriterProcess(store.engine.url), retry_backoff_s=0.0)
    await writer.start()
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_until_gone(first, 5)
    for _ in range(4):
        await writer.write(finished())
    await writer.aclose()
    assert (writer.stats.written, writer.stats.failed) == (4, 0)
    assert writer.stats.retries >= 1
    assert store.traces.count() == 4


async def test_batches_in_flight_when_the_child_dies_are_retried(store: Store, db_url: str) -> None:
    child = WriterProcess(store.engine.url, busy_timeout_s=30)
    writer = TraceWriter(child, batch_size=2, flush_interval_s=0.01, retry_backoff_s=0.05)
    await writer.start()
    blocker = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN IMMEDIATE")  # the child's first insert waits for this lock
    try:
        traces = [finished() for _ in range(6)]
        for trace in traces:
            await writer.write(trace)
        await asyncio.sleep(0.3)  # three batches sent, none answered
        pid = writer.pid
        assert pid is not None and writer.stats.written == 0
        os.kill(pid, signal.SIGKILL)
        assert wait_until_gone(pid, 5)
    finally:
        blocker.rollback()
        blocker.close()
    await writer.aclose()
    assert (writer.stats.written, writer.stats.failed) == (6, 0)
    assert writer.stats.retries >= child.in_flight  # each batch in flight failed once
    assert {t["id"] for t in store.traces.list()} == {t.id for t in traces}


async def test_a_child_that_cannot_open_the_database_fails_start() -> None:
    writer = TraceWriter(WriterProcess("postgresql+nodriver://u@127.0.0.1/x"))
    with pytest.raises(WriterProcessError, match="could not start: NoSuchModuleError"):
        await writer.start()
    await writer.aclose()


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_the_child_dies_with_its_parent(store: Store, db_url: str, state: str) -> None:
    blocker = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=60)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the child's write waits for this lock
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, db_url, state],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            assert alive(child)
        finally:
            parent.kill()
            parent.wait()
            if parent.stdout is not None:
                parent.stdout.close()
        assert wait_until_gone(child, 5), f"writer process {child} outlived its parent"
    finally:
        blocker.rollback()
        blocker.close()


def test_which_databases_another_process_can_open(tmp_path: Path) -> None:
    assert can_reopen(f"sqlite:///{tmp_path / 'a.db'}")
    assert can_reopen("postgresql://u:secret@db/tether")
    assert can_reopen("postgresql+psycopg://u@db/tether")
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"):
        assert not can_reopen(url), url
        with pytest.raises(ValueError, match="in a thread"):
            WriterProcess(url)


def test_store_writer_picks_the_mode(tmp_path: Path) -> None:
    with Store.from_url("sqlite://") as memory:
        assert memory.writer().mode == "thread"
        with pytest.raises(ValueError, match="in a thread"):
            memory.writer(process=True)
    with Store.from_url(f"sqlite:///{tmp_path / 'b.db'}") as on_disk:
        assert on_disk.writer().mode == "process"
        assert on_disk.writer(process=False).mode == "thread"
    assert TraceWriter(WriterProcess("postgresql://u@db/x")).mode == "process"
