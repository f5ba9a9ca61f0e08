"""Stored eval runs on SQLite: a run and its results round-trip, ids resolve by unique prefix,
results come back in (index, repeat) order a batch at a time, and a run's results go with it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from tether.errors import EvalRunNotFound
from tether.evals.types import CaseResult, EvalRun, JudgeUsage, Output, Score
from tether.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.from_url(f"sqlite:///{tmp_path / 'tether.db'}") as opened:
        yield opened


def make_run(run_id: str, *, feature: str = "f", dataset: str = "d1", age_s: float = 0) -> EvalRun:
    return EvalRun(
        id=run_id,
        feature=feature,
        variant="default",
        config_version="v1",
        dataset_id=dataset,
        dataset_path="evals/x.jsonl",
        started_at=datetime.now(UTC) - timedelta(seconds=age_s),
        cases=3,
        settings={"concurrency": 4},
    )


def make_result(run_id: str, index: int, repeat: int = 0, passed: bool = True) -> CaseResult:
    judge = JudgeUsage(calls=1, input_tokens=5, output_tokens=2, cost_usd=0.001)
    return CaseResult(
        run_id=run_id,
        index=index,
        repeat=repeat,
        case_id=f"c{index}",
        passed=passed,
        score=1.0 if passed else 0.25,
        scores=[
            Score(1.0, True, "found", name="contains"),
            Score(0.5, passed, "judged\x00", name="llm-rubric", weight=2, judge=judge),
        ],
        output=Output(text=f"answer {index}", cost_usd=0.01, latency_ms=12.5, model="s:m"),
        tags=("geo",),
        vars={"q": f"question {index}"},
        expected={"city": "Paris"},
    )


def test_a_run_and_its_results_round_trip(store: Store) -> None:
    run = make_run("ev_0123456789ab")
    store.evals.create_run(run)
    assert store.evals.get_run(run.id).status == "running"
    assert store.evals.add_results([make_result(run.id, 1), make_result(run.id, 0, passed=False)])
    run.status, run.finished_at = "done", datetime.now(UTC)
    run.summary = {"pass_rate": 0.5, "scorers": {"contains": {"mean": 1.0, "pass_rate": 1.0}}}
    store.evals.finish_run(run)

    stored = store.evals.get_run(run.id)
    assert stored.status == "done" and stored.finished_at is not None
    assert stored.summary == run.summary and stored.settings == {"concurrency": 4}
    assert stored.to_dict()["pass_rate"] == 0.5

    first, second = store.evals.results(run.id)
    assert (first.index, second.index) == (0, 1)
    assert first.passed is False and first.score == 0.25 and first.output.text == "answer 0"
    assert first.output.cost_usd == 0.01 and first.output.latency_ms == 12.5
    assert first.scores[1].name == "llm-rubric" and first.scores[1].weight == 2
    assert first.scores[1].reason == "judged\ufffd"  # NUL cleaned (PostgreSQL refuses it)
    assert first.judge.calls == 1 and first.judge.cost_usd == 0.001
    assert first.tags == ("geo",) and first.vars == {"q": "question 0"}
    assert first.expected == {"city": "Paris"}
    assert [r.index for r in store.evals.results(run.id, failed=True)] == [0]
    assert store.evals.count_results(run.id) == 2


def test_a_run_resolves_by_unique_prefix_with_or_without_ev(store: Store) -> None:
    store.evals.create_run(make_run("ev_aaaa11112222"))
    store.evals.create_run(make_run("ev_aaaa33334444"))
    assert store.evals.get_run("ev_aaaa1").id == "ev_aaaa11112222"
    assert store.evals.get_run("aaaa3").id == "ev_aaaa33334444"
    with pytest.raises(EvalRunNotFound, match="several eval runs"):
        store.evals.get_run("ev_aaaa")
    with pytest.raises(EvalRunNotFound, match="at least 4 characters"):
        store.evals.get_run("ev_aaa")  # too short to be a prefix
    with pytest.raises(EvalRunNotFound, match="no eval run matches 'ev_ffff'"):
        store.evals.get_run("ev_ffff")


def test_list_is_newest_first_and_filters(store: Store) -> None:
    store.evals.create_run(make_run("ev_000000000001", age_s=30))
    store.evals.create_run(make_run("ev_000000000002", feature="g", age_s=20))
    store.evals.create_run(make_run("ev_000000000003", dataset="d2", age_s=10))
    assert [r.id[-1] for r in store.evals.list_runs()] == ["3", "2", "1"]
    assert [r.id[-1] for r in store.evals.list_runs(feature="f")] == ["3", "1"]
    assert [r.id[-1] for r in store.evals.list_runs(dataset_id="d1")] == ["2", "1"]
    assert len(store.evals.list_runs(limit=1)) == 1


def test_results_are_read_in_order_a_batch_at_a_time(store: Store) -> None:
    run = make_run("ev_bbbbbbbbbbbb")
    store.evals.create_run(run)
    results = [make_result(run.id, i, r) for i in reversed(range(25)) for r in range(2)]
    store.evals.add_results(results)
    selects: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM eval_results" in statement:
            selects.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        read = iter(store.evals.results(run.id, batch=7))
        head = [next(read) for _ in range(3)]
        assert len(selects) == 1  # lazily: one batch read so far
        rest = list(read)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    order = [(r.index, r.repeat) for r in head + rest]
    assert order == [(i, r) for i in range(25) for r in range(2)]
    assert len(selects) == 8  # 50 rows in batches of 7: 8 queries, never all at once


def test_deleting_a_run_deletes_its_results(store: Store) -> None:
    run = make_run("ev_cccccccccccc")
    store.evals.create_run(run)
    store.evals.add_results([make_result(run.id, 0)])
    assert store.evals.delete_run(run.id)
    assert store.evals.count_results(run.id) == 0
    with pytest.raises(EvalRunNotFound):
        store.evals.get_run(run.id)
    with pytest.raises(EvalRunNotFound, match="create it"):
        store.evals.finish_run(run)
