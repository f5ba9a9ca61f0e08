"""Durable traces: write batches, search with filters, show one, follow new ones.

A trace is stored as one ``traces`` row (the columns filters use, plus the trace's JSON without
its attempts and events) and one ``trace_steps`` row per attempt and per event, in time order.
:meth:`TraceStore.get` reassembles the ``Trace.to_dict()`` shape and adds ``steps``.

All methods are synchronous and short; async callers run them in a thread (the
:class:`~tether.store.writer.TraceWriter` does).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, func, insert, select
from sqlalchemy.orm import Session, defer

from tether.store.schema import StepRow, TraceRow

TraceDict = dict[str, Any]
TraceDicts = list[TraceDict]

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ID_PREFIX = re.compile(r"^[0-9A-Za-z_-]{4,64}$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``"10m"``, ``"2h"``, ``"1d"``, ``"1w"``, ``"30s"`` ago, or an ISO 8601 time.

    A naive ISO time is read as local time. Raises ``ValueError`` with an example otherwise.
    """
    match = _SINCE.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use a duration like 10m, 2h, 1d, 1w or an ISO time like "
            "2024-05-01T12:00:00Z"
        ) from None
    return moment.astimezone() if moment.tzinfo is None else moment


def jsonable(value: Any) -> Any:
    """A copy of ``value`` that every backend stores as JSON.

    Unknown objects become ``str(value)``, NaN and infinities become ``None``, NUL characters
    (refused by PostgreSQL) become U+FFFD: one odd value never fails a batch of traces.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return jsonable(str(value))


def _clip(value: Any, width: int) -> str | None:
    return None if value is None else str(value)[:width]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _opt_num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _usage(data: TraceDict) -> dict[str, Any]:
    usage = data.get("usage")
    return usage if isinstance(usage, dict) else {}


def _trace_id(data: TraceDict) -> str:
    trace_id = data["id"]
    if not isinstance(trace_id, str) or not 0 < len(trace_id) <= 64:
        raise ValueError(f"trace id {trace_id!r} must be a string of 1 to 64 characters")
    return trace_id


def _trace_row(data: TraceDict, written_at: datetime) -> dict[str, Any]:
    usage = _usage(data)
    return {
        "id": _trace_id(data),
        "feature": _clip(data["feature"], 200),
        "variant": _clip(data.get("variant") or "default", 200),
        "user_id": _clip(data.get("user"), 200),
        "status": _clip(data.get("status") or "ok", 16),
        "degraded": bool(data.get("degraded")),
        "reason": _clip(data.get("reason"), 200),
        "model": _clip(data.get("model"), 200),
        "started_at": datetime.fromtimestamp(_num(data.get("started_at")), UTC),
        "latency_ms": _num(data.get("latency_ms")),
        "input_tokens": _int(usage.get("input_tokens")),
        "output_tokens": _int(usage.get("output_tokens")),
        "cost_usd": _num(data.get("cost_usd")),
        "output": data.get("output") if isinstance(data.get("output"), str) else None,
        "meta": data.get("metadata") if isinstance(data.get("metadata"), dict) else {},
        "data": {k: v for k, v in data.items() if k not in ("attempts", "events")},
        "written_at": written_at,
    }


def _attempt_step(attempt: TraceDict) -> dict[str, Any]:
    usage = _usage(attempt)
    return {
        "kind": "attempt",
        "at_ms": _num(attempt.get("start_ms")),
        "end_ms": _num(attempt.get("end_ms")),
        "event": None,
        "provider": _clip(attempt.get("provider"), 200),
        "model": _clip(attempt.get("model"), 200),
        "number": _int(attempt.get("number")),
        "chain_position": _int(attempt.get("chain_position")),
        "status": _clip(attempt.get("status"), 16),
        "error_class": _clip(attempt.get("error_class"), 200),
        "error": _clip(attempt.get("error"), 100_000),
        "status_code": _opt_int(attempt.get("status_code")),
        "ttft_ms": _opt_num(attempt.get("ttft_ms")),
        "input_tokens": _int(usage.get("input_tokens")),
        "output_tokens": _int(usage.get("output_tokens")),
        "cost_usd": _num(attempt.get("cost_usd")),
        "streamed": bool(attempt.get("streamed")),
        "data": attempt,
    }


_ATTEMPT_ONLY = (
    "end_ms", "provider", "model", "number", "chain_position", "status", "error_class", "error",
    "status_code", "ttft_ms", "input_tokens", "output_tokens", "cost_usd", "streamed",
)  # fmt: skip


def _event_step(event: TraceDict) -> dict[str, Any]:
    step: dict[str, Any] = dict.fromkeys(_ATTEMPT_ONLY)
    step.update(kind="event", at_ms=_num(event.get("at_ms")), event=_clip(event.get("kind"), 64))
    step["data"] = event
    return step


def _step_rows(data: TraceDict) -> list[dict[str, Any]]:
    """Attempts and events merged into one timeline (stable: attempts first on a tie)."""
    attempts = [a for a in data.get("attempts") or [] if isinstance(a, dict)]
    events = [e for e in data.get("events") or [] if isinstance(e, dict)]
    steps = [_attempt_step(a) for a in attempts] + [_event_step(e) for e in events]
    steps.sort(key=lambda step: step["at_ms"])
    for seq, step in enumerate(steps):
        step["trace_id"] = data["id"]
        step["seq"] = seq
    return steps


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
        written_at = datetime.now(UTC)
        unique: dict[str, TraceDict] = {}
        for trace in traces:
            data = jsonable(trace)
            unique.setdefault(_trace_id(data), data)
        if not unique:
            return 0
        rows = [_trace_row(data, written_at) for data in unique.values()]
        with Session(self._engine) as session, session.begin():
            stored = session.scalars(select(TraceRow.id).where(TraceRow.id.in_(list(unique))))
            known = set(stored)
            fresh = [row for row in rows if row["id"] not in known]
            steps = [s for row in fresh for s in _step_rows(unique[row["id"]])]
            if fresh:
                session.execute(insert(TraceRow), fresh)
            if steps:
                session.execute(insert(StepRow), steps)
        return len(fresh)

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
            .options(defer(TraceRow.data))
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
        query = select(TraceRow).options(defer(TraceRow.data)).where(*clauses)
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
            trace["attempts"] = sorted(
                (s.data for s in steps if s.kind == "attempt"), key=lambda a: _int(a.get("number"))
            )
            trace["events"] = [s.data for s in steps if s.kind == "event"]
            trace["steps"] = [_step_view(s) for s in steps]
            trace["cursor"] = row.pk
            return trace

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
