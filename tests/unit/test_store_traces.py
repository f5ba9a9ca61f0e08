"""TraceStore on SQLite: write, read back, filter, follow, survive a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tether.store import Store, parse_since
from tether.store.rows import STEP_COLUMNS, TRACE_COLUMNS, encode, jsonable
from tether.store.schema import Base
from tether.telemetry import Trace
from tether.types import Usage


def make_trace(
    feature: str = "support",
    *,
    variant: str = "default",
    user: str | None = "u1",
    degraded: bool = False,
    age_s: float = 0.0,
    **metadata: Any,
) -> Trace:
    """A finished trace: a failed attempt, a fallback event, a successful attempt."""
    trace = Trace(feature=feature, variant=variant, user=user, metadata=dict(metadata))
    trace.started_at = time.time() - age_s
    first = trace.start_attempt("gpt-4o-mini", "openai")
    first.status, first.error_class, first.status_code = "error", "RateLimited", 429
    first.end_ms = first.start_ms + 5
    trace.event("fallback", to="local:smollm2", after="rate_limited")
    second = trace.start_attempt("smollm2", "local")
    second.chain_position, second.end_ms = 1, second.start_ms + 40
    second.usage, second.cost_usd = Usage(12, 30), 0.0
    trace.status = "degraded" if degraded else "ok"
    trace.degraded, trace.reason = degraded, ("rate_limited" if degraded else None)
    trace.output, trace.model = "Hello!", "local:smollm2"
    trace.usage, trace.cost_usd, trace.latency_ms = Usage(12, 30), 0.0001, 47.5
    return trace


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tether.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.from_url(db_url) as opened:
        yield opened


def test_get_returns_the_trace_dict_with_steps_in_time_order(store: Store) -> None:
    trace = make_trace(ticket="T-1")
    assert store.traces.write_many([trace.to_dict()]) == 1
    got = store.traces.get(trace.id)
    assert got is not None
    expected = trace.to_dict()
    for key in ("id", "feature", "variant", "user", "status", "output", "usage", "metadata"):
        assert got[key] == expected[key]
    assert got["attempts"] == expected["attempts"]
    assert got["events"] == expected["events"]
    kinds = [(s["seq"], s["kind"], s.get("event") or s.get("provider")) for s in got["steps"]]
    assert kinds == [(0, "attempt", "openai"), (1, "event", "fallback"), (2, "attempt", "local")]
    assert got["steps"][0]["status_code"] == 429
    assert got["steps"][1]["data"] == {"to": "local:smollm2", "after": "rate_limited"}


def test_get_accepts_a_unique_prefix(store: Store) -> None:
    trace = make_trace()
    store.traces.write_many([trace.to_dict()])
    got = store.traces.get(trace.id[:8])
    assert got is not None and got["id"] == trace.id
    assert store.traces.get("nope") is None
    assert store.traces.get("%") is None


def test_writing_a_trace_twice_stores_it_once(store: Store) -> None:
    trace = make_trace()
    assert store.traces.write_many([trace.to_dict(), trace.to_dict()]) == 1
    assert store.traces.write_many([trace.to_dict()]) == 0
    assert store.traces.count() == 1
    got = store.traces.get(trace.id)
    assert got is not None and len(got["steps"]) == 3


def test_list_filters(store: Store) -> None:
    traces = [
        make_trace("support", user="alice", age_s=10),
        make_trace("support", variant="candidate", user="bob", degraded=True, age_s=20),
        make_trace("search", user="alice", age_s=3 * 3600),
        make_trace("search", user=None, degraded=True, age_s=2 * 86400),
    ]
    store.traces.write_many([t.to_dict() for t in traces])

    def ids(**filters: Any) -> list[str]:
        return [t["id"] for t in store.traces.list(**filters)]

    assert ids() == [t.id for t in traces]  # newest first
    assert ids(feature="support") == [traces[0].id, traces[1].id]
    assert ids(variant="candidate") == [traces[1].id]
    assert ids(degraded=True) == [traces[1].id, traces[3].id]
    assert ids(degraded=False) == [traces[0].id, traces[2].id]
    assert ids(user="alice") == [traces[0].id, traces[2].id]
    assert ids(since=parse_since("1h")) == [traces[0].id, traces[1].id]
    assert ids(since=parse_since("1d"), feature="search") == [traces[2].id]
    assert ids(status="degraded", feature="search") == [traces[3].id]
    assert ids(limit=1) == [traces[0].id]


def test_list_returns_summaries(store: Store) -> None:
    trace = make_trace(degraded=True, ticket="T-9")
    store.traces.write_many([trace.to_dict()])
    [summary] = store.traces.list()
    assert summary["degraded"] is True and summary["reason"] == "rate_limited"
    assert summary["usage"] == {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42}
    assert summary["metadata"] == {"ticket": "T-9"}
    assert summary["started_at"] == pytest.approx(trace.started_at, abs=1e-3)
    assert "steps" not in summary and "attempts" not in summary


def test_tail_follows_a_cursor(store: Store) -> None:
    first = [make_trace() for _ in range(3)]
    store.traces.write_many([t.to_dict() for t in first])
    backlog = store.traces.tail(None, limit=2)
    assert [t["id"] for t in backlog] == [first[1].id, first[2].id]  # oldest first
    cursor = backlog[-1]["cursor"]
    assert store.traces.latest_cursor() == cursor
    assert store.traces.tail(cursor) == []
    later = [make_trace("search"), make_trace("support")]
    store.traces.write_many([t.to_dict() for t in later])
    assert [t["id"] for t in store.traces.tail(cursor)] == [later[0].id, later[1].id]
    assert [t["id"] for t in store.traces.tail(cursor, feature="support")] == [later[1].id]


def test_odd_values_never_fail_a_write(store: Store) -> None:
    trace = make_trace(score=float("nan"), when=datetime(2024, 1, 1, tzinfo=UTC), obj=object())
    trace.output = "nul\x00byte"
    trace.user = "u" * 500
    trace.event("custom", values={1, 2}, inf=float("inf"))
    assert store.traces.write_many([trace.to_dict()]) == 1
    got = store.traces.get(trace.id)
    assert got is not None
    assert got["metadata"]["score"] is None
    assert got["metadata"]["when"] == "2024-01-01T00:00:00+00:00"
    assert got["output"] == "nul\ufffdbyte"
    assert got["user"] == "u" * 500  # the full value is kept in the trace JSON
    assert store.traces.list()[0]["user"] == "u" * 200  # the indexed column is clipped
    assert got["events"][-1]["data"] == {"values": [1, 2], "inf": None}


def test_a_trace_without_a_usable_id_is_refused_loudly(store: Store) -> None:
    with pytest.raises(KeyError):
        store.traces.write_many([{"feature": "support"}])
    with pytest.raises(ValueError, match="1 to 64"):
        store.traces.write_many([{"id": "x" * 65, "feature": "support"}])
    assert store.traces.count() == 0


def test_traces_survive_a_restart(db_url: str) -> None:
    traces = [make_trace(user=f"user-{i % 3}") for i in range(20)]
    with Store.from_url(db_url) as first:
        first.traces.write_many([t.to_dict() for t in traces])
    with Store.from_url(db_url) as second:
        assert second.traces.count() == 20
        assert len(second.traces.list(user="user-1")) == 7
        got = second.traces.get(traces[5].id)
        assert got is not None and got["attempts"] == traces[5].to_dict()["attempts"]


def test_prune_deletes_old_traces_and_their_steps(store: Store) -> None:
    old, new = make_trace(age_s=40 * 86400), make_trace()
    store.traces.write_many([old.to_dict(), new.to_dict()])
    assert store.traces.prune(datetime.now(UTC) - timedelta(days=30)) == 1
    assert store.traces.get(old.id) is None
    assert store.traces.get(new.id) is not None


@pytest.mark.parametrize(
    ("text", "seconds"), [("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("30s", 30)]
)
def test_parse_since_durations(text: str, seconds: int) -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_since(text, now) == now - timedelta(seconds=seconds)


def test_parse_since_iso_and_errors() -> None:
    assert parse_since("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_since("2024-05-01T12:00:00").tzinfo is not None  # naive = local time
    with pytest.raises(ValueError, match="10m, 2h"):
        parse_since("yesterday")


def test_jsonable() -> None:
    assert jsonable({"a": (1, 2.5, None, True)}) == {"a": [1, 2.5, None, True]}
    assert jsonable({3: float("-inf")}) == {"3": None}
    assert jsonable(Usage(1, 2)) == {
        "input_tokens": 1,
        "output_tokens": 2,
        "cached_input_tokens": 0,
        "reasoning_tokens": 0,
    }


def test_row_columns_are_the_tables_columns() -> None:
    traces, steps = Base.metadata.tables["traces"], Base.metadata.tables["trace_steps"]
    assert set(TRACE_COLUMNS) == {c.name for c in traces.columns} - {"pk"}
    assert set(STEP_COLUMNS) == {c.name for c in steps.columns}


def test_text_the_database_would_refuse_is_cleaned_everywhere(store: Store) -> None:
    trace = make_trace(note="lone \ud800 surrogate", literal="a \\u0000 b")
    trace.metadata["key\x00"] = 1
    trace.output = "out \udfff put"
    trace.attempts[0].error = "err\x00or"
    trace.latency_ms = float("nan")
    trace.attempts[0].status_code = float("inf")  # type: ignore[assignment]
    assert store.traces.write_many([trace.to_dict()]) == 1
    got = store.traces.get(trace.id)
    assert got is not None
    assert got["output"] == "out \ufffd put"
    assert got["metadata"]["note"] == "lone \ufffd surrogate"
    assert got["metadata"]["literal"] == "a \\u0000 b"  # an escaped backslash is not a NUL
    assert got["metadata"]["key\ufffd"] == 1
    assert got["attempts"][0]["error"] == "err\ufffdor"
    assert got["steps"][0]["status_code"] is None
    assert store.traces.list()[0]["latency_ms"] == 0.0


def test_encode_takes_the_fast_path_only_for_clean_values() -> None:
    assert encode({"a": [1, 2.5, None, True], "é": "ü"}) == '{"a":[1,2.5,null,true],"é":"ü"}'
    assert encode({"x": float("nan"), "t": (1, 2)}) == '{"x":null,"t":[1,2]}'
    assert encode({"s": {3}, "o": object}) == '{"s":[3],"o":"<class \'object\'>"}'
    assert encode("\x00") == '"\ufffd"'
