"""Stored evaluation runs: one ``eval_runs`` row per run, one ``eval_results`` row per case and
repeat.

A run is created when it starts (status ``running``), its results are added in batches while it
runs (so a large dataset never sits in memory), and it is finished with its summary.
:meth:`EvalStore.results` reads a run's results back in (index, repeat) order, a batch at a time.
Methods are synchronous and short; async callers run them in a thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from tether.errors import EvalRunNotFound
from tether.evals.types import CaseResult, EvalRun, Output, Score
from tether.store.rows import clean_text, jsonable
from tether.store.schema import EvalResultRow, EvalRunRow

RUN_PREFIX = "ev_"
MIN_PREFIX = 4  # characters after ``ev_`` a prefix needs
BATCH = 500
_PREFIX = re.compile(r"^[0-9a-f]+$")


def _run_of(row: EvalRunRow) -> EvalRun:
    return EvalRun(
        id=row.id,
        feature=row.feature,
        variant=row.variant,
        config_version=row.config_version,
        dataset_id=row.dataset_id,
        dataset_path=row.dataset_path,
        started_at=row.started_at,
        cases=row.cases,
        repeat=row.repeat,
        status=row.status,  # type: ignore[arg-type]  # written from RunStatus only
        finished_at=row.finished_at,
        summary=dict(row.summary),
        settings=dict(row.settings),
    )


def _result_values(result: CaseResult) -> dict[str, Any]:
    output = result.output.to_dict()
    del output["text"]  # its own column
    return {
        "run_id": result.run_id,
        "index": result.index,
        "repeat": result.repeat,
        "case_id": result.case_id,
        "passed": result.passed,
        "score": result.score,
        "latency_ms": result.output.latency_ms,
        "cost_usd": result.output.cost_usd,
        "degraded": result.output.degraded,
        "error": None if result.output.error is None else clean_text(result.output.error),
        "output": clean_text(result.output.text),
        "data": jsonable(
            {
                "scores": [score.to_dict() for score in result.scores],
                "output": output,
                "tags": list(result.tags),
                "vars": dict(result.vars),
                "expected": result.expected,
            }
        ),
    }


def _result_of(row: EvalResultRow) -> CaseResult:
    data = row.data
    output = Output.from_dict({**data.get("output", {}), "text": row.output, "error": row.error})
    return CaseResult(
        run_id=row.run_id,
        index=row.index,
        repeat=row.repeat,
        case_id=row.case_id,
        passed=row.passed,
        score=row.score,
        scores=[Score.from_dict(score) for score in data.get("scores", [])],
        output=output,
        tags=tuple(data.get("tags", ())),
        vars=dict(data.get("vars") or {}),
        expected=data.get("expected"),
    )


class EvalStore:
    """The ``eval_runs`` and ``eval_results`` tables, on an engine it does not own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create_run(self, run: EvalRun) -> None:
        """Store a run as it starts (its summary may still be empty)."""
        row = EvalRunRow(
            id=run.id,
            feature=run.feature,
            variant=run.variant,
            config_version=run.config_version,
            dataset_id=run.dataset_id,
            dataset_path=run.dataset_path,
            status=run.status,
            started_at=run.started_at,
            finished_at=run.finished_at,
            cases=run.cases,
            repeat=run.repeat,
            summary=jsonable(run.summary),
            settings=jsonable(run.settings),
        )
        with Session(self._engine) as session, session.begin():
            session.add(row)

    def add_results(self, results: Iterable[CaseResult]) -> int:
        """Store results of a created run in one transaction; returns how many."""
        values = [_result_values(result) for result in results]
        if not values:
            return 0
        with self._engine.begin() as connection:
            connection.execute(insert(EvalResultRow), values)
        return len(values)

    def finish_run(self, run: EvalRun) -> None:
        """Record a run's end: its status, finish time, case count, summary and settings."""
        with Session(self._engine) as session, session.begin():
            done = session.execute(
                update(EvalRunRow)
                .where(EvalRunRow.id == run.id)
                .values(
                    status=run.status,
                    finished_at=run.finished_at,
                    cases=run.cases,
                    summary=jsonable(run.summary),
                    settings=jsonable(run.settings),
                )
            )
            if not getattr(done, "rowcount", 0):
                raise EvalRunNotFound(
                    f"eval run {run.id!r} is not stored; create it (create_run) before finishing it"
                )

    def get_run(self, id_or_prefix: str) -> EvalRun:
        """The run of that id, or of a unique prefix of it (at least 4 characters after
        ``ev_``; the ``ev_`` may be left out). Raises EvalRunNotFound otherwise."""
        text = id_or_prefix.strip()
        with Session(self._engine) as session:
            row = session.get(EvalRunRow, text)
            if row is not None:
                return _run_of(row)
            rest = text.removeprefix(RUN_PREFIX)
            if len(rest) >= MIN_PREFIX and _PREFIX.match(rest):
                query = select(EvalRunRow).where(EvalRunRow.id.startswith(RUN_PREFIX + rest))
                matches = session.scalars(query.limit(2)).all()
                if len(matches) == 1:
                    return _run_of(matches[0])
                if matches:
                    raise EvalRunNotFound(
                        f"{text!r} matches several eval runs; give more characters of the id "
                        "(see `tether eval list`)"
                    )
        raise EvalRunNotFound(
            f"no eval run matches {text!r}; give a run id or a prefix of at least "
            f"{MIN_PREFIX} characters after {RUN_PREFIX!r} (see `tether eval list`)"
        )

    def list_runs(
        self, feature: str | None = None, dataset_id: str | None = None, limit: int = 50
    ) -> list[EvalRun]:
        """Runs, newest first."""
        clauses: list[ColumnElement[bool]] = []
        if feature is not None:
            clauses.append(EvalRunRow.feature == feature)
        if dataset_id is not None:
            clauses.append(EvalRunRow.dataset_id == dataset_id)
        query = (
            select(EvalRunRow)
            .where(*clauses)
            .order_by(EvalRunRow.started_at.desc(), EvalRunRow.id)
            .limit(limit)
        )
        with Session(self._engine) as session:
            return [_run_of(row) for row in session.scalars(query)]

    def results(
        self, run_id: str, *, failed: bool = False, batch: int = BATCH
    ) -> Iterator[CaseResult]:
        """A run's results in (index, repeat) order (only failed ones with ``failed``), read
        ``batch`` rows at a time (keyset pagination: memory stays flat on large runs)."""
        after: tuple[int, int] | None = None
        while True:
            query = select(EvalResultRow).where(EvalResultRow.run_id == run_id)
            if failed:
                query = query.where(EvalResultRow.passed.is_(False))
            if after is not None:
                position = tuple_(EvalResultRow.index, EvalResultRow.repeat)
                query = query.where(position > tuple_(*after))
            query = query.order_by(EvalResultRow.index, EvalResultRow.repeat).limit(batch)
            with Session(self._engine) as session:
                rows = session.scalars(query).all()
                found = [_result_of(row) for row in rows]
            yield from found
            if len(found) < batch:
                return
            after = (found[-1].index, found[-1].repeat)

    def count_results(self, run_id: str) -> int:
        """How many results a run has stored."""
        query = select(func.count()).select_from(EvalResultRow)
        with Session(self._engine) as session:
            return session.scalar(query.where(EvalResultRow.run_id == run_id)) or 0

    def delete_run(self, run_id: str) -> bool:
        """Delete a run and its results; whether it existed."""
        with Session(self._engine) as session, session.begin():
            session.execute(delete(EvalResultRow).where(EvalResultRow.run_id == run_id))
            gone = session.execute(delete(EvalRunRow).where(EvalRunRow.id == run_id))
            return bool(getattr(gone, "rowcount", 0))
