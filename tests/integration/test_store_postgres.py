"""The store on a real PostgreSQL (127.0.0.1:5432, database ``test``).

Each test gets its own schema (via ``search_path`` in the URL) and drops it afterwards, so runs
are independent and repeatable. The session's time zone is deliberately not UTC. If PostgreSQL
is down the tests try to start it, then FAIL (never skip) with the command to run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from tether.cli.keys import app as keys_app
from tether.cli.traces import app as traces_app
from tether.store import Store, StoreConfig, TraceWriter, parse_since
from tether.store.migrate import downgrade, head_revision
from tether.store.schema import Base
from tether.store.traces import TraceStore
from tether.telemetry import Trace
from tether.types import Usage


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    with Store.from_url(pg_url) as opened:
        yield opened


def make_trace(feature: str = "support", *, user: str | None = "u1", age_s: float = 0) -> Trace:
    trace = Trace(feature=feature, user=user, variant="candidate" if user == "u2" else "default")
    trace.started_at = time.time() - age_s
    attempt = trace.start_attempt("gpt-4o-mini", "openai")
    attempt.end_ms, attempt.usage, attempt.cost_usd = attempt.start_ms + 9, Usage(10, 20), 2e-5
    trace.event("guard", name="pii_redact", verdict="pass")
    degraded = user == "u3"
    trace.status, trace.degraded = ("degraded", True) if degraded else ("ok", False)
    trace.reason = "timeout" if degraded else None
    trace.output, trace.model, trace.usage = "ok", "openai:gpt-4o-mini", Usage(10, 20)
    return trace


class SlowStore:
    def __init__(self, inner: TraceStore, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
        time.sleep(self.delay_s)
        return self.inner.write_many(traces)


def test_migrations_apply_and_match_the_models(store: Store) -> None:
    assert store.revision() == head_revision()
    store.migrate()  # again: a no-op
    assert {"traces", "trace_steps", "api_keys"} <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_replicas_migrating_at_once_are_serialised(pg_url: str) -> None:
    # Separate processes, like replicas (Alembic's proxies are per process, not per thread),
    # released at the same instant. Without the advisory lock two of them fail.
    script = (
        "import sys, time\n"
        "from tether.store import Store\n"
        "store = Store.from_url(sys.argv[1], migrate=False)\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "store.migrate()\n"
        "store.close()\n"
    )
    start_at = str(time.time() + 2.0)
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", script, pg_url, start_at],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outcomes = [replica.communicate(timeout=60) for replica in replicas]
    codes = [replica.returncode for replica in replicas]
    assert codes == [0, 0, 0], [err.decode()[-500:] for _, err in outcomes]
    with Store.from_url(pg_url, migrate=False) as store:
        assert store.revision() == head_revision()


def test_downgrade_and_upgrade(store: Store) -> None:
    downgrade(store.engine, "base")
    assert "traces" not in inspect(store.engine).get_table_names()
    store.migrate()
    assert store.revision() == head_revision()


async def test_writer_traces_survive_a_restart(pg_url: str) -> None:
    traces = [
        make_trace("support" if i % 3 else "search", user=f"u{i % 4}", age_s=i * 600)
        for i in range(90)
    ]
    store = Store.open(StoreConfig(url=pg_url, batch_size=16, flush_interval_s=0.05))
    try:
        async with store.writer() as writer:
            child = writer.pid
            assert writer.mode == "process" and child is not None  # its own engine, same URL
            await asyncio.gather(*(writer.write(t) for t in traces))
    finally:
        store.close()
    assert (writer.stats.written, writer.stats.failed) == (90, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # stopped and reaped by aclose()

    with Store.from_url(pg_url) as reopened:
        assert reopened.traces.count() == 90
        everything = reopened.traces.list(limit=1000)
        assert [t["id"] for t in everything] == [t.id for t in traces]  # newest first
        assert len(reopened.traces.list(feature="search", limit=1000)) == 30
        assert len(reopened.traces.list(variant="candidate", limit=1000)) == 22
        assert {t["user"] for t in reopened.traces.list(degraded=True, limit=1000)} == {"u3"}
        recent = reopened.traces.list(since=parse_since("1h"), limit=1000)
        assert [t["id"] for t in recent] == [t.id for t in traces[:6]]
        assert everything[5]["started_at"] == pytest.approx(traces[5].started_at, abs=1e-3)
        got = reopened.traces.get(traces[10].id)
        assert got is not None
        assert got["attempts"] == traces[10].to_dict()["attempts"]
        assert [s["kind"] for s in got["steps"]] == ["attempt", "event"]
        tail = reopened.traces.tail(None, limit=3)
        assert [t["id"] for t in tail] == [t.id for t in traces[-3:]]


async def test_back_pressure_on_postgres(store: Store) -> None:
    writer = TraceWriter(
        SlowStore(store.traces, 0.02), queue_size=2, batch_size=2, flush_interval_s=0.01
    )
    await writer.start()
    await asyncio.gather(*(writer.write(make_trace()) for _ in range(24)))
    assert writer.stats.queue_full > 0
    await writer.aclose()
    assert store.traces.count() == 24
    assert (writer.stats.written, writer.stats.failed) == (24, 0)


def test_odd_values_are_stored(store: Store) -> None:
    trace = make_trace()
    trace.output = "nul\x00inside \ud800"
    trace.metadata = {"score": float("nan"), "text": "\x00", "lone": "\udc00", "esc": "\\u0000"}
    assert store.traces.write_many([trace.to_dict()]) == 1
    got = store.traces.get(trace.id)
    assert got is not None
    assert got["output"] == "nul\ufffdinside \ufffd"
    assert got["metadata"] == {"score": None, "text": "\ufffd", "lone": "\ufffd", "esc": "\\u0000"}


def test_what_was_asked_is_stored_in_its_own_column(store: Store) -> None:
    trace = make_trace()
    messages = [{"role": "user", "content": "héllo\x00"}, {"role": "tool", "content": "ok"}]
    trace.input = {"capture": "full", "messages": messages, "variables": {"n": 1.5}}
    assert store.traces.write_many([trace.to_dict()]) == 1
    got = store.traces.get(trace.id)
    assert got is not None and got["input"]["messages"][0]["content"] == "héllo\ufffd"
    assert got["input"]["variables"] == {"n": 1.5}
    assert "input" not in store.traces.list()[0]


def test_keys_on_postgres(pg_url: str) -> None:
    with Store.from_url(pg_url) as store:
        key_id, plaintext = store.keys.create("ci", ["support"])
        _, admin = store.keys.create("admin", ["*"])
    with Store.from_url(pg_url) as store:
        key = store.keys.verify(plaintext)
        assert key is not None and key.id == key_id
        assert key.allows("support") and not key.allows("search")
        admin_key = store.keys.verify(admin)
        assert admin_key is not None and admin_key.allows("search")
        store.keys.revoke(key_id)
        assert store.keys.verify(plaintext) is None
        assert [k.revoked for k in store.keys.list()] == [True, False]


def test_key_tenant_on_postgres(pg_url: str) -> None:
    """Migration 0004 on PostgreSQL: a key's tenant is stored and read back; down and up."""
    with Store.from_url(pg_url) as store:
        _, plaintext = store.keys.create("acme", ["*"], tenant="acme")
        key = store.keys.verify(plaintext)
        assert key is not None and key.tenant == "acme"
        downgrade(store.engine, "0003")
        assert "tenant" not in {c["name"] for c in inspect(store.engine).get_columns("api_keys")}
        store.migrate()
        assert store.revision() == head_revision()
        assert [k.tenant for k in store.keys.list()] == [None]  # the column came back empty


def test_cli_against_postgres(pg_url: str, tmp_path: Path) -> None:
    trace = make_trace(user="u3")
    with Store.from_url(pg_url) as store:
        store.traces.write_many([trace.to_dict()])
    runner = CliRunner()
    missing = str(tmp_path / "none.yaml")
    listed = runner.invoke(
        traces_app, ["list", "--json", "--degraded", "--store-url", pg_url, "-c", missing]
    )
    assert listed.exit_code == 0, listed.output
    assert [t["id"] for t in json.loads(listed.stdout)] == [trace.id]
    shown = runner.invoke(traces_app, ["show", trace.id, "--store-url", pg_url, "-c", missing])
    assert shown.exit_code == 0 and "pii_redact" in shown.stdout
    created = runner.invoke(keys_app, ["create", "-s", "*", "--store-url", pg_url, "-c", missing])
    assert created.exit_code == 0
    with Store.from_url(pg_url) as store:
        assert store.keys.verify(created.stdout.strip()) is not None


def test_unreachable_database_is_a_clear_cli_error(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"
    result = CliRunner().invoke(
        traces_app, ["list", "--store-url", url, "-c", str(tmp_path / "none.yaml")]
    )
    assert result.exit_code == 1
    assert "check that the database" in result.stderr
