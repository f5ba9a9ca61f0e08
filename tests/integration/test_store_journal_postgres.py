"""The crash journal on PostgreSQL: a replay stores each trace once, and a trace another writer
stores while a batch is being written is skipped instead of failing the batch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from tests.postgres import admin_connect
from tests.unit.test_store_journal import crash_after_appending, finished, segments
from tether.config.store import JournalConfig
from tether.store import Store, StoreConfig
from tether.store.rows import build_rows, insert_new


async def test_replaying_twice_stores_each_trace_once(pg_url: str, tmp_path: Path) -> None:
    config = StoreConfig(url=pg_url, journal=JournalConfig(path="journal"))
    traces = [finished(i) for i in range(30)]
    with Store.open(config, config_dir=tmp_path) as store:
        directory = tmp_path / "journal"
        crash_after_appending(directory, traces)
        crash_after_appending(directory, traces[:20])  # journaled twice
        writer = store.writer()
        async with writer:
            pass
        assert (writer.stats.replayed, writer.stats.written) == (50, 30)
        crash_after_appending(directory, traces)
        again = store.writer()
        async with again:
            pass
        assert (again.stats.written, again.stats.duplicates, again.stats.failed) == (0, 30, 0)
        assert store.traces.count() == 30
        assert segments(directory) == []


def _waiting_for_a_lock() -> int:
    with admin_connect() as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_trace_stored_meanwhile_by_another_writer_is_skipped(pg_url: str) -> None:
    first, second = finished(1), finished(2)
    with Store.from_url(pg_url) as store:
        outcome: dict[str, object] = {}

        def write_both() -> None:
            try:
                outcome["written"] = store.traces.write_many([first.to_dict(), second.to_dict()])
            except psycopg.Error as exc:  # what the test reports, not swallows
                outcome["error"] = exc

        with store.engine.connect() as other:
            transaction = other.begin()
            insert_new(other, build_rows([first.to_dict()], other.dialect))  # not committed
            thread = threading.Thread(target=write_both)
            thread.start()
            deadline = time.monotonic() + 30
            while _waiting_for_a_lock() == 0 and time.monotonic() < deadline:
                time.sleep(0.02)  # until the batch waits on `first`'s id, having not seen it
            assert _waiting_for_a_lock() > 0
            transaction.commit()
        thread.join(30)
        assert "error" not in outcome, outcome
        assert store.traces.count() == 2
        stored = store.traces.get(second.id)
        assert stored is not None and len(stored["steps"]) == 1
