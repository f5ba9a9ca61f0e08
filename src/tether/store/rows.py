"""``Trace.to_dict()`` → the rows of ``traces`` and ``trace_steps``, built and inserted in bulk.

A trace is one ``traces`` row (the columns filters use, what it was asked in ``input``, plus the
trace's JSON without its attempts, events and input) and one ``trace_steps`` row per attempt
and per event, in time order.

Rows are plain tuples in the order of :data:`TRACE_COLUMNS` / :data:`STEP_COLUMNS`, with every
JSON value encoded once, here, by the C encoder. A value the encoder refuses, or whose text the
database would refuse (NaN, infinities, NUL characters, lone surrogates, objects JSON has no type
for), is cleaned by :func:`jsonable` and encoded again: one odd value never fails a batch.

:func:`build_rows` is the Python half of a write (no database access), :func:`insert_new` the
database half: it hands the tuples to the driver without SQLAlchemy's per-row parameter
processing, ``COPY … FROM STDIN`` on PostgreSQL and one ``executemany`` per table elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, select

from tether.store.schema import TraceRow, UtcDateTime

Row = tuple[Any, ...]
Stamp = Callable[[datetime], Any]

TRACE_COLUMNS = (
    "id", "feature", "variant", "user_id", "status", "degraded", "reason", "model", "started_at",
    "latency_ms", "input_tokens", "output_tokens", "cost_usd", "output", "input", "metadata",
    "data", "written_at",
)  # fmt: skip
STEP_COLUMNS = (
    "trace_id", "seq", "kind", "at_ms", "end_ms", "event", "provider", "model", "number",
    "chain_position", "status", "error_class", "error", "status_code", "ttft_ms", "input_tokens",
    "output_tokens", "cost_usd", "streamed", "data",
)  # fmt: skip

_SURROGATE = re.compile("[\ud800-\udfff]")
_dumps = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode


def clean_text(text: str) -> str:
    """``text`` without what PostgreSQL refuses: NUL and lone surrogates become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    return text


def jsonable(value: Any) -> Any:
    """A copy of ``value`` that every backend stores as JSON.

    Unknown objects become ``str(value)``, NaN and infinities become ``None``, NUL characters
    (refused by PostgreSQL) and lone surrogates become U+FFFD.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {clean_text(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return jsonable(str(value))


def encode(value: Any) -> str:
    """``value`` as JSON text every backend accepts (cleaned by :func:`jsonable` if needed)."""
    try:
        text: str = _dumps(value)
    except (TypeError, ValueError):  # an object JSON has no type for, NaN or an infinity
        return _dumps(jsonable(value))
    # "\u0000" also matches an escaped backslash before "u0000": cleaning is then a no-op.
    if "\\u0000" in text or (not text.isascii() and _SURROGATE.search(text)):
        return _dumps(jsonable(value))
    return text


def _text(value: Any, width: int) -> str | None:
    if value is None:
        return None
    text = value[:width] if type(value) is str else str(value)[:width]
    return text if text.isascii() and "\x00" not in text else clean_text(text)


def _opt_num(value: Any) -> float | None:
    """A finite float, or ``None`` (bool and int count: JSON does not tell them apart)."""
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else None  # NaN and infinities are not finite
    if kind is int or kind is bool or isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _num(value: Any) -> float:
    number = _opt_num(value)
    return 0.0 if number is None else number


def _opt_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    number = _opt_num(value)
    return None if number is None else int(number)


def _int(value: Any) -> int:
    if type(value) is int:
        return value
    number = _opt_num(value)
    return 0 if number is None else int(number)


def _usage(data: Mapping[str, Any]) -> Mapping[str, Any]:
    usage = data.get("usage")
    return usage if isinstance(usage, Mapping) else {}


def checked_id(data: Mapping[str, Any]) -> str:
    """The id of a trace that can be stored: ``KeyError`` without ``id`` or ``feature``,
    ``ValueError`` for an id that is not a string of 1 to 64 characters."""
    value = data["id"]
    if "feature" not in data:
        raise KeyError("feature")
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise ValueError(f"trace id {value!r} must be a string of 1 to 64 characters")
    return clean_text(value)


def trace_row(data: Mapping[str, Any], trace_id: str, written_at: Any, stamp: Stamp) -> Row:
    """The ``traces`` row (:data:`TRACE_COLUMNS`) of a ``Trace.to_dict()``-shaped mapping.

    ``written_at`` is already stamped; ``stamp`` turns ``started_at`` into what the database
    takes for a time."""
    usage = _usage(data)
    output = data.get("output")
    asked = data.get("input")
    meta = data.get("metadata")
    return (
        trace_id,
        _text(data["feature"], 200),
        _text(data.get("variant") or "default", 200),
        _text(data.get("user"), 200),
        _text(data.get("status") or "ok", 16),
        bool(data.get("degraded")),
        _text(data.get("reason"), 200),
        _text(data.get("model"), 200),
        stamp(datetime.fromtimestamp(_num(data.get("started_at")), UTC)),
        _num(data.get("latency_ms")),
        _int(usage.get("input_tokens")),
        _int(usage.get("output_tokens")),
        _num(data.get("cost_usd")),
        clean_text(output) if isinstance(output, str) else None,
        encode(asked) if isinstance(asked, Mapping) else None,
        encode(meta) if isinstance(meta, Mapping) else "{}",
        encode({k: v for k, v in data.items() if k not in _OWN_COLUMNS}),
        written_at,
    )


_OWN_COLUMNS = frozenset(("attempts", "events", "input"))  # not repeated in ``data``


def _attempt_step(attempt: Mapping[str, Any]) -> Row:
    usage = _usage(attempt)
    return (
        "attempt",
        _num(attempt.get("start_ms")),
        _num(attempt.get("end_ms")),
        None,
        _text(attempt.get("provider"), 200),
        _text(attempt.get("model"), 200),
        _int(attempt.get("number")),
        _int(attempt.get("chain_position")),
        _text(attempt.get("status"), 16),
        _text(attempt.get("error_class"), 200),
        _text(attempt.get("error"), 100_000),
        _opt_int(attempt.get("status_code")),
        _opt_num(attempt.get("ttft_ms")),
        _int(usage.get("input_tokens")),
        _int(usage.get("output_tokens")),
        _num(attempt.get("cost_usd")),
        bool(attempt.get("streamed")),
        encode(attempt),
    )


_NO_ATTEMPT = (None,) * 13  # provider ... streamed: only attempts have them


def _event_step(event: Mapping[str, Any]) -> Row:
    at_ms = _num(event.get("at_ms"))
    return ("event", at_ms, None, _text(event.get("kind"), 64), *_NO_ATTEMPT, encode(event))


def step_rows(data: Mapping[str, Any], trace_id: str) -> list[Row]:
    """The ``trace_steps`` rows (:data:`STEP_COLUMNS`): attempts and events merged into one
    timeline (stable: attempts first on a tie)."""
    steps = [_attempt_step(a) for a in data.get("attempts") or () if isinstance(a, Mapping)]
    steps += [_event_step(e) for e in data.get("events") or () if isinstance(e, Mapping)]
    steps.sort(key=_at_ms)
    return [(trace_id, seq, *step) for seq, step in enumerate(steps)]


_at_ms = itemgetter(1)


@dataclass(frozen=True, slots=True)
class TraceRows:
    """A batch ready to insert: each trace's ``traces`` row and its ``trace_steps`` rows, by id
    (the first trace of each id in the batch)."""

    by_id: dict[str, tuple[Row, list[Row]]]


def build_rows(traces: Iterable[Mapping[str, Any]], dialect: Dialect) -> TraceRows:
    """Every row of ``traces``, for ``dialect``, without touching the database (so the write
    transaction is only database work).

    Raises ``KeyError`` / ``ValueError`` for a trace that cannot be stored (see
    :func:`checked_id`).
    """
    stamp = _stamp(dialect)
    written_at = stamp(datetime.now(UTC))
    by_id: dict[str, tuple[Row, list[Row]]] = {}
    for data in traces:
        trace_id = checked_id(data)
        if trace_id not in by_id:
            row = trace_row(data, trace_id, written_at, stamp)
            by_id[trace_id] = (row, step_rows(data, trace_id))
    return TraceRows(by_id)


def insert_new(connection: Connection, rows: TraceRows) -> int:
    """Insert the traces whose id is not stored yet, in the connection's transaction; returns
    how many. ``COPY`` on PostgreSQL, one ``executemany`` per table elsewhere.

    A trace stored again (a crash journal replayed twice) is skipped, never duplicated, and
    never fails the batch, even when another writer stores it meanwhile: inserts say ``ON
    CONFLICT DO NOTHING``, and a ``COPY`` that meets such a trace is rolled back to a savepoint
    and the batch inserted that way (the count then includes it)."""
    known = _known_ids(connection, list(rows.by_id))
    fresh = [pair for trace_id, pair in rows.by_id.items() if trace_id not in known]
    if not fresh:
        return 0
    traces = [row for row, _ in fresh]
    steps = [step for _, steps in fresh for step in steps]
    if connection.dialect.name == "postgresql" and _copied(connection, traces, steps):
        return len(fresh)
    mark = _PLACEHOLDERS.get(connection.dialect.paramstyle)
    if mark is None:
        raise NotImplementedError(
            f"{connection.dialect.name}: the trace store supports SQLite and PostgreSQL"
        )
    connection.exec_driver_sql(_insert_sql(connection, "traces", TRACE_COLUMNS, mark), traces)
    if steps:
        sql = _insert_sql(connection, "trace_steps", STEP_COLUMNS, mark)
        connection.exec_driver_sql(sql, steps)
    return len(fresh)


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _stamp(dialect: Dialect) -> Stamp:
    """How ``dialect`` takes a time: psycopg adapts aware datetimes itself; elsewhere
    SQLAlchemy's own conversion (on SQLite, the UTC text that range filters compare)."""
    if dialect.name == "postgresql":
        return _same
    return UtcDateTime().dialect_impl(dialect).bind_processor(dialect) or _same


def _same(value: datetime) -> datetime:
    return value


def _known_ids(connection: Connection, ids: list[str]) -> set[str]:
    if connection.dialect.name == "postgresql":
        # Never a prepared statement: a generic plan made while the table was nearly empty
        # would scan the whole table on every batch until the next ANALYZE.
        driver: Any = connection.connection.driver_connection  # a psycopg 3 connection
        with driver.cursor() as cursor:
            cursor.execute("SELECT id FROM traces WHERE id = ANY(%s)", (ids,), prepare=False)
            return {trace_id for (trace_id,) in cursor.fetchall()}
    known: set[str] = set()
    for start in range(0, len(ids), 500):  # under every SQLite's limit of bound parameters
        chunk = ids[start : start + 500]
        known.update(connection.scalars(select(TraceRow.id).where(TraceRow.id.in_(chunk))))
    return known


def _names(connection: Connection, columns: tuple[str, ...]) -> str:
    quote = connection.dialect.identifier_preparer.quote
    return ", ".join(quote(column) for column in columns)


def _insert_sql(connection: Connection, table: str, columns: tuple[str, ...], mark: str) -> str:
    marks = ", ".join([mark] * len(columns))
    names = _names(connection, columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def _copied(connection: Connection, traces: list[Row], steps: list[Row]) -> bool:
    """``COPY`` both tables in a savepoint; ``False`` (rolled back) when one of the traces was
    stored by another writer after :func:`_known_ids` looked."""
    from psycopg.errors import UniqueViolation

    try:
        with connection.begin_nested():
            _copy(connection, "traces", TRACE_COLUMNS, traces)
            _copy(connection, "trace_steps", STEP_COLUMNS, steps)
    except UniqueViolation:
        return False
    return True


def _copy(connection: Connection, table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
    """PostgreSQL ``COPY … FROM STDIN`` through psycopg (JSON text is parsed as ``jsonb``)."""
    driver: Any = connection.connection.driver_connection
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {table} ({_names(connection, columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
