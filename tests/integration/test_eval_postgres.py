"""Stored eval runs on a real PostgreSQL (a fresh schema per test, a non-UTC session time zone):
the migration matches the models, a run and its results round-trip (JSONB, timestamptz),
prefix lookup, ordered batched reads, and a run's results are deleted with it (cascade)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import delete, inspect

from tests.unit.test_eval_store import make_result, make_run
from tether.errors import EvalRunNotFound
from tether.store import Store
from tether.store.migrate import downgrade
from tether.store.schema import Base, EvalRunRow


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    with Store.from_url(pg_url) as opened:
        yield opened


def test_the_eval_tables_match_the_models_and_go_down(store: Store) -> None:
    assert {"eval_runs", "eval_results"} <= set(inspect(store.engine).get_table_names())
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    downgrade(store.engine, "0004")
    assert "eval_runs" not in inspect(store.engine).get_table_names()
    store.migrate()
    assert "eval_results" in inspect(store.engine).get_table_names()


def test_a_run_round_trips_on_postgres(store: Store) -> None:
    run = make_run("ev_dddd00001111")
    store.evals.create_run(run)
    store.evals.add_results([make_result(run.id, i, r) for i in (2, 0, 1) for r in (1, 0)])
    run.status, run.finished_at = "done", datetime.now(UTC)
    run.summary = {"pass_rate": 1.0, "latency_ms": {"p50": 12.5, "p95": 12.5}, "flaky": []}
    store.evals.finish_run(run)

    stored = store.evals.get_run("dddd0")
    assert stored.id == run.id and stored.summary == run.summary
    assert stored.started_at == run.started_at and stored.started_at.tzinfo is not None
    results = list(store.evals.results(run.id, batch=4))
    assert [(r.index, r.repeat) for r in results] == [(i, r) for i in range(3) for r in range(2)]
    assert results[0].scores[1].reason == "judged\ufffd"  # PostgreSQL refuses NUL in text
    assert results[0].expected == {"city": "Paris"}
    with pytest.raises(EvalRunNotFound):
        store.evals.get_run("ev_9999")

    with store.engine.begin() as connection:  # the foreign key cascades
        connection.execute(delete(EvalRunRow).where(EvalRunRow.id == run.id))
    assert store.evals.count_results(run.id) == 0
