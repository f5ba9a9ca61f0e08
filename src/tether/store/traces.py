"""Durable traces: write batches, search with filters, show one, follow new ones.

A trace is stored as one ``traces`` row (the columns filters use, what it was asked in
``input``, plus the trace's JSON without its attempts, events and input) and one
``trace_steps`` row per attempt and per event, in time order.
:meth:`TraceStore.get` reassembles the ``Trace.to_dict()`` shape and adds ``steps``.

All methods are synchronous and short; async callers run them in a thread. Writes come from
the :class:`~tether.store.writer.TraceWriter`, usually in its writer process; how a trace becomes
rows is in :mod:`tether.store.rows`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, func, select
from sqlalchemy.orm import Session, defer

from tether.store.rows import build_rows, insert_new
from tether.store.rows import jsonable as jsonable  # re-exported from its former home
from tether.store.schema import StepRow, TraceRow

TraceDict = dict[str, Any]
TraceDicts = list[TraceDict]

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE | re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ID_PREFIX = re.compile(r"^[0-9A-Za-z_-]{4,64}$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``"10m"``, ``"2h"``, ``"1d"``, ``"1w"``, ``"30s"`` ago, or an ISO 8601 time.

    A naive ISO time is read as local time. Raises ``ValueError`` naming the accepted forms
    otherwise, also for a duration or a time too far back for a date (``99999999999w``).
    """
    forms = "use a duration like 10m, 2h, 1d, 1w or an ISO time like 2024-05-01T12:00:00Z"
    match = _SINCE.match(text)
    try:
        moment = None if match else datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text[:80]!r} is not a time; {forms}") from None
    try:
        if moment is None:
            assert match is not None
            seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
            return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
        return moment.astimezone() if moment.tzinfo is None else moment
    except (OverflowError, ValueError):
        raise ValueError(f"{text[:80]!r} is too far back; {forms}") from None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _summary(row: TraceRow) -> TraceDict:
    return {
        "cursor": row.pk,
        "id": row.id,
        "feature": row.feature,
        "variant": row.variant,
        "user": row.user_id,
        "status": row.status,
        "degraded": row.degraded,
        "reason": row.reason,
        "model": row.model,
        "started_at": row.started_at.timestamp(),
        "latency_ms": row.latency_ms,
        "usage": {
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "total_tokens": row.input_tokens + row.output_tokens,
        },
        "cost_usd": row.cost_usd,
        "output": row.output,
        "metadata": row.meta,
    }


def _step_view(step: StepRow) -> TraceDict:
    view: TraceDict = {"seq": step.seq, "kind": step.kind, "at_ms": step.at_ms}
    if step.kind == "event":
        view["event"] = step.event
        view["data"] = step.data.get("data", {})
    else:
        view.update(step.data)
    return view


def _filters(
    feature: str | None,
    variant: str | None,
    degraded: bool | None,
    since: datetime | None,
    user: str | None,
    status: str | None,
) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if feature is not None:
        clauses.append(TraceRow.feature == feature)
    if variant is not None:
        clauses.append(TraceRow.variant == variant)
    if degraded is not None:
        clauses.append(TraceRow.degraded == degraded)
    if since is not None:
        clauses.append(TraceRow.started_at >= since)
    if user is not None:
        clauses.append(TraceRow.user_id == user)
    if status is not None:
        clauses.append(TraceRow.status == status)
    return clauses


class TraceStore:
    """Reads and writes traces on an engine it does not own (see :class:`~tether.store.Store`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
        """Store ``Trace.to_dict()``-shaped traces in one transaction; returns how many were new.

        A trace whose id is already stored is skipped, so writing a batch again after an
        uncertain failure never duplicates. Raises ``KeyError`` for a trace without ``id`` or
        ``feature``, ``ValueError`` for an id that is not a string of 1 to 64 characters, and
        SQLAlchemy errors when the database refuses the batch.
        """
        rows = build_rows(traces, self._engine.dialect)  # Python work, before the transaction
        if not rows.by_id:
            return 0
        with self._engine.begin() as connection:
            return insert_new(connection, rows)

    def list(
        self,
        *,
        feature: str | None = None,
        variant: str | None = None,
        degraded: bool | None = None,
        since: datetime | None = None,
        user: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> TraceDicts:
        """Trace summaries (no steps), newest first."""
        query = (
            select(TraceRow)
            .options(defer(TraceRow.data), defer(TraceRow.input))
            .where(*_filters(feature, variant, degraded, since, user, status))
            .order_by(TraceRow.started_at.desc(), TraceRow.pk.desc())
            .limit(limit)
        )
        with Session(self._engine) as session:
            return [_summary(row) for row in session.scalars(query)]

    def tail(
        self,
        after: int | None = None,
        *,
        feature: str | None = None,
        variant: str | None = None,
        degraded: bool | None = None,
        since: datetime | None = None,
        user: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> TraceDicts:
        """Summaries stored after cursor ``after``, oldest first (``after=None``: the last
        ``limit``). Pass the last summary's ``cursor`` as the next ``after``.

        On PostgreSQL with several writers a transaction that commits late can carry a lower
        cursor than one already shown; tail is a live view, use ``list --since`` for audits.
        """
        clauses = _filters(feature, variant, degraded, since, user, status)
        query = select(TraceRow).options(defer(TraceRow.data), defer(TraceRow.input))
        query = query.where(*clauses)
        if after is None:
            query = query.order_by(TraceRow.pk.desc()).limit(limit)
            with Session(self._engine) as session:
                return [_summary(row) for row in reversed(session.scalars(query).all())]
        query = query.where(TraceRow.pk > after).order_by(TraceRow.pk).limit(limit)
        with Session(self._engine) as session:
            return [_summary(row) for row in session.scalars(query)]

    def get(self, trace_id: str) -> TraceDict | None:
        """The full trace (``Trace.to_dict()`` shape) plus ``steps`` in time order.

        ``trace_id`` may be a unique prefix of at least 4 characters (as shown by ``list``).
        """
        with Session(self._engine) as session:
            row = session.scalar(select(TraceRow).where(TraceRow.id == trace_id))
            if row is None and _ID_PREFIX.match(trace_id):
                prefixed = select(TraceRow).where(TraceRow.id.startswith(trace_id, autoescape=True))
                matches = session.scalars(prefixed.limit(2)).all()
                row = matches[0] if len(matches) == 1 else None
            if row is None:
                return None
            steps = session.scalars(
                select(StepRow).where(StepRow.trace_id == row.id).order_by(StepRow.seq)
            ).all()
            trace: TraceDict = dict(row.data)
            trace["input"] = row.input  # None for a trace stored before it was kept
            trace["attempts"] = sorted(
                (s.data for s in steps if s.kind == "attempt"), key=lambda a: _int(a.get("number"))
            )
            trace["events"] = [s.data for s in steps if s.kind == "event"]
            trace["steps"] = [_step_view(s) for s in steps]
            trace["cursor"] = row.pk
            return trace

    def scan(
        self,
        *,
        feature: str | None = None,
        variant: str | None = None,
        degraded: bool | None = None,
        since: datetime | None = None,
        model: str | None = None,
        batch: int = 500,
    ) -> Iterator[TraceDict]:
        """Full traces (``Trace.to_dict()`` shape with ``input`` and ``events``, without
        attempts), newest first, read ``batch`` at a time so memory stays flat: what turning
        stored traces into eval rows needs."""
        clauses = _filters(feature, variant, degraded, since, None, None)
        if model is not None:
            clauses.append(TraceRow.model == model)
        before: int | None = None
        while True:
            query = select(TraceRow).where(*clauses).order_by(TraceRow.pk.desc()).limit(batch)
            if before is not None:
                query = query.where(TraceRow.pk < before)
            with Session(self._engine) as session:
                rows = session.scalars(query).all()
                if not rows:
                    return
                events = select(StepRow.trace_id, StepRow.data).where(
                    StepRow.trace_id.in_([row.id for row in rows]), StepRow.kind == "event"
                )
                by_trace: dict[str, list[Any]] = {}
                for trace_id, data in session.execute(events.order_by(StepRow.seq)):
                    by_trace.setdefault(trace_id, []).append(data)
                found = [
                    {**row.data, "input": row.input, "events": by_trace.get(row.id, [])}
                    for row in rows
                ]
            yield from found
            before = rows[-1].pk

    def latest_cursor(self) -> int:
        """The cursor of the newest stored trace (0 when there is none)."""
        with Session(self._engine) as session:
            return session.scalar(select(func.max(TraceRow.pk))) or 0

    def count(self) -> int:
        """How many traces are stored."""
        with Session(self._engine) as session:
            return session.scalar(select(func.count()).select_from(TraceRow)) or 0

    def prune(self, before: datetime) -> int:
        """Delete traces (and their steps) that started before ``before``; returns how many."""
        with Session(self._engine) as session, session.begin():
            old = select(TraceRow.id).where(TraceRow.started_at < before)
            ids = list(session.scalars(old))
            for chunk in _chunks(ids, 500):
                session.execute(delete(StepRow).where(StepRow.trace_id.in_(chunk)))
                session.execute(delete(TraceRow).where(TraceRow.id.in_(chunk)))
            return len(ids)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
