"""The crash journal: what a killed process acknowledged is stored at the next start, once;
torn lines are skipped; a journal file is deleted only when every trace in it is stored; store
files are private."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tether.config.loader import parse_config
from tether.config.store import JournalConfig
from tether.store import Store, StoreConfig, TraceWriter
from tether.store.journal import Journal, JournalError
from tether.store.traces import TraceStore
from tether.telemetry import Trace

CRASH = """\
import json, os, signal, sys
from tether.store.journal import Journal
journal = Journal(sys.argv[1], segment_bytes=int(sys.argv[2]))
journal.open()
for line in sys.stdin:
    journal.append(json.loads(line))
os.kill(os.getpid(), signal.SIGKILL)
"""


def finished(i: int = 0, feature: str = "support") -> Trace:
    trace = Trace(feature=feature, user=f"u{i % 3}")
    trace.status, trace.output, trace.model = "ok", f"answer {i}", "scripted:m"
    trace.event("cache", hit=False)
    trace.latency_ms = 1.0 + i
    return trace


def crash_after_appending(
    directory: Path, traces: Iterable[Trace], segment_bytes: int = 8 << 20
) -> None:
    """A process that journals ``traces``, then is SIGKILLed (nothing stored, nothing closed)."""
    lines = "".join(json.dumps(t.to_dict()) + "\n" for t in traces)
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(directory), str(segment_bytes)],
        input=lines,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.exists() else []


def journaled_ids(directory: Path) -> set[str]:
    ids = set()
    for path in segments(directory):
        for line in path.read_text().splitlines():
            ids.add(json.loads(line)["id"])
    return ids


@pytest.fixture
def config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(url=f"sqlite:///{tmp_path / 'tether.db'}", flush_interval_s=0.02)


@pytest.fixture
def store(config: StoreConfig) -> Iterator[Store]:
    with Store.open(config) as opened:
        yield opened


def journal_dir(store: Store) -> Path:
    journal = store.journal()
    assert journal is not None
    return journal.directory


async def test_start_stores_what_a_killed_process_journaled_once(store: Store) -> None:
    traces = [finished(i) for i in range(50)]
    directory = journal_dir(store)
    crash_after_appending(directory, traces)
    assert len(journaled_ids(directory)) == 50

    writer = store.writer()
    async with writer:
        pass
    assert writer.stats.replayed == 50 and writer.stats.written == 50
    assert store.traces.count() == 50
    stored = store.traces.get(traces[7].id)
    assert stored is not None and stored["output"] == "answer 7"
    assert not directory.exists()  # every trace stored: nothing left behind

    # the same traces journaled again (a replay cut short, a copied folder): no duplicates
    crash_after_appending(directory, traces)
    crash_after_appending(directory, traces[:10])
    again = store.writer()
    async with again:
        pass
    assert again.stats.replayed == 60 and again.stats.written == 0
    assert again.stats.duplicates == 60 and again.stats.failed == 0
    assert store.traces.count() == 50


async def test_a_torn_line_is_skipped_with_a_warning(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    traces = [finished(i) for i in range(5)]
    directory = journal_dir(store)
    crash_after_appending(directory, traces)
    (path,) = segments(directory)
    lines = path.read_bytes().splitlines(keepends=True)
    torn = b"".join(lines[:2]) + b'{"feature": "support", "id": "cut-sh\n' + b"".join(lines[2:])
    path.write_bytes(torn + b'{"feature": "support", "id": "never-fini')

    with caplog.at_level(logging.WARNING, logger="tether.store"):
        async with store.writer():
            pass
    assert store.traces.count() == 5
    messages = [r.getMessage() for r in caplog.records]
    assert any("line 3 is not a whole trace" in m for m in messages), messages
    assert any("last line (" in m and "cut short by a crash" in m for m in messages), messages
    assert not segments(directory)


def test_a_journal_file_goes_only_when_every_trace_in_it_is_stored(tmp_path: Path) -> None:
    """Appends and settles in random order, small segments: at every step each trace not yet
    settled is in a file on disk, and nothing is left once all are settled."""
    rng = random.Random(8)
    journal = Journal(tmp_path / "journal", segment_bytes=4096)
    journal.open()
    pending: dict[str, int] = {}  # trace id -> segment
    for step in range(3000):
        if pending and rng.random() < 0.45:
            chosen = rng.sample(sorted(pending), k=min(len(pending), rng.randint(1, 30)))
            journal.settle([pending.pop(trace_id) for trace_id in chosen])
        else:
            trace = finished(step)
            trace.metadata["pad"] = "x" * rng.randint(0, 900)
            pending[trace.id] = journal.append(trace.to_dict())
        assert set(pending) <= journaled_ids(journal.directory), step
    journal.settle(pending.values())
    assert segments(journal.directory) == []
    journal.close()
    assert not journal.directory.exists()


def test_a_live_journals_files_are_never_taken_over(tmp_path: Path) -> None:
    """Two processes (here: two journals) share a folder; a start-up takes over only the files
    of a journal whose process died."""
    directory = tmp_path / "journal"
    live, starting = Journal(directory), Journal(directory)
    live.open()
    live.append(finished(1).to_dict())
    starting.open()
    assert starting.leftovers() == []
    crash_after_appending(directory, [finished(2)])
    (dead,) = starting.leftovers()
    assert len(dead.segments) == 1 and not dead.segments[0].name.startswith(live.instance)
    dead.release()
    live.close()
    starting.close()


class GatedStore:
    """A real TraceStore whose n-th write waits until the test opens gate n (in the writer's
    thread), so the test can look while a batch is being committed."""

    def __init__(self, inner: TraceStore, calls: int) -> None:
        self.inner = inner
        self.entered = [threading.Event() for _ in range(calls)]
        self.gates = [threading.Event() for _ in range(calls)]
        self.calls = 0

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
        batch = list(traces)
        call, self.calls = self.calls, self.calls + 1
        self.entered[call].set()
        self.gates[call].wait(30)
        return self.inner.write_many(batch)


async def test_a_trace_journaled_during_a_commit_stays_until_it_is_stored(store: Store) -> None:
    directory = journal_dir(store)
    gated = GatedStore(store.traces, calls=2)
    journal = Journal(directory, segment_bytes=4096)
    writer = TraceWriter(gated, batch_size=1, flush_interval_s=0.01, journal=journal)
    async with writer:
        first, second = finished(1), finished(2)
        await writer.write(first)
        await asyncio.to_thread(gated.entered[0].wait, 30)  # the first trace is committing
        await writer.write(second)  # same journal file
        gated.gates[0].set()
        await asyncio.to_thread(gated.entered[1].wait, 30)  # first stored, second committing
        assert store.traces.count() == 1
        assert second.id in journaled_ids(directory)
        gated.gates[1].set()
        for _ in range(500):
            if store.traces.count() == 2 and not segments(directory):
                break
            await asyncio.sleep(0.01)
        assert store.traces.count() == 2
        assert segments(directory) == []  # stored: deleted while running, not only at close


async def test_a_trace_that_cannot_be_stored_stays_for_the_next_start(store: Store) -> None:
    directory = journal_dir(store)

    class Refusing:
        def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
            raise ConnectionError("database went away")

    writer = TraceWriter(
        Refusing(), write_attempts=1, flush_interval_s=0.01, journal=Journal(directory)
    )
    trace = finished(1)
    async with writer:
        await writer.write(trace)
    assert writer.stats.failed == 1
    assert journaled_ids(directory) == {trace.id}

    async with store.writer():
        pass
    assert store.traces.get(trace.id) is not None
    assert not directory.exists()


@pytest.mark.parametrize("fsync", ["none", "interval", "always"])
async def test_every_fsync_setting_stores_and_cleans_up(tmp_path: Path, fsync: str) -> None:
    config = StoreConfig(
        url=f"sqlite:///{tmp_path / 'tether.db'}",
        flush_interval_s=0.01,
        journal=JournalConfig.model_validate({"fsync": fsync, "fsync_interval_s": 0.01}),
    )
    with Store.open(config) as store:
        writer = store.writer()
        async with writer:
            await asyncio.gather(*(writer.write(finished(i)) for i in range(40)))
            await asyncio.sleep(0.05)
        assert store.traces.count() == 40
        assert writer.stats.journal_errors == 0
        assert not journal_dir(store).exists()


async def test_store_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        config = StoreConfig(url=f"sqlite:///{tmp_path / 'data' / 'tether.db'}")
        with Store.open(config) as store:
            writer = store.writer()
            async with writer:
                await writer.write(finished())  # the journal holds it until it is stored
                files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
                folders = [p for p in (tmp_path / "data").rglob("*") if p.is_dir()]
                modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
                folder_modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folders}
    finally:
        os.umask(old)
    names = set(modes)
    assert {"tether.db", "tether.db-wal", "tether.db-shm"} <= names
    assert any(n.endswith(".jsonl") for n in names) and any(n.endswith(".lock") for n in names)
    assert modes == dict.fromkeys(names, 0o600)
    assert folder_modes == {"tether.db-trace-journal": 0o700}


def test_journal_settings(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path / 'tether.db'}"
    assert StoreConfig().journal.enabled and StoreConfig().journal.fsync == "none"
    assert StoreConfig().journal.directory(sqlite, tmp_path) == tmp_path / "tether.db-trace-journal"
    assert StoreConfig(journal="off").journal.directory(sqlite, tmp_path) is None  # type: ignore[arg-type]
    assert StoreConfig().journal.directory("sqlite:///:memory:", tmp_path) is None
    pg = StoreConfig().journal.directory("postgresql://u:secret@db/traces", tmp_path / "deploy")
    assert pg is not None and pg.parent == tmp_path / "deploy"
    assert pg.name.startswith("trace-journal-traces-") and "secret" not in str(pg)
    custom = JournalConfig(path="state/journal").directory(sqlite, tmp_path)
    assert custom == tmp_path / "state" / "journal"

    loaded = parse_config("store:\n  journal: off\n", "tether.yaml", {})
    assert loaded.store.journal.enabled is False
    loaded = parse_config("store:\n  journal: {fsync: always}\n", "tether.yaml", {})
    assert loaded.store.journal.fsync == "always"
    with pytest.raises(ValidationError):
        StoreConfig.model_validate({"journal": {"fsync": "sometimes"}})
    with pytest.raises(ValidationError):
        StoreConfig.model_validate({"journal": {"fsinc": "always"}})


async def test_journal_off_writes_no_journal(tmp_path: Path) -> None:
    config = StoreConfig(url=f"sqlite:///{tmp_path / 'tether.db'}", journal="off")  # type: ignore[arg-type]
    with Store.open(config) as store:
        assert store.journal() is None
        writer = store.writer()
        async with writer:
            await writer.write(finished())
            assert not (tmp_path / "tether.db-trace-journal").exists()
        assert store.traces.count() == 1


async def test_an_unusable_journal_folder_fails_start_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    config = StoreConfig(
        url=f"sqlite:///{tmp_path / 'tether.db'}",
        journal=JournalConfig(path=str(tmp_path / "taken")),
    )
    with Store.open(config, config_dir=tmp_path) as store:
        writer = store.writer()
        with pytest.raises(JournalError, match=r"store\.journal\.path"):
            await writer.start()
        await writer.aclose()


class SentSoFar:
    """A trace sink that notes what the gateway had sent to the client when the trace came."""

    def __init__(self, sent: list[bytes]) -> None:
        self.sent = sent
        self.seen: list[bytes] = []

    async def write(self, trace: Trace) -> None:
        self.seen.append(b"".join(self.sent))


async def test_a_streamed_answer_reaches_the_trace_sink_before_its_last_event(
    tmp_path: Path,
) -> None:
    from tether.gateway.app import create_app
    from tether.gateway.runtime import GatewaySettings

    yaml = (
        "providers:\n  fake: {kind: scripted}\nfeatures:\n  chat:\n    model: fake:m\n"
        "    on_failure: {respond: unavailable}\n"
        f"store:\n  url: sqlite:///{tmp_path / 'tether.db'}\n"
    )
    sent: list[bytes] = []
    sink = SentSoFar(sent)
    app = create_app(
        GatewaySettings(config=parse_config(yaml, "tether.yaml", {}), config_dir=tmp_path),
        extra_sinks=(sink,),
    )
    body = json.dumps(
        {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi there"}]}
    ).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    await app.startup()
    try:
        await app(scope, receive, send)
    finally:
        await app.shutdown()
    assert b"[DONE]" in b"".join(sent)
    assert len(sink.seen) == 1
    assert b"data:" in sink.seen[0] and b"[DONE]" not in sink.seen[0]
