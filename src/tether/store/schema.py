"""The store's tables, as typed SQLAlchemy 2 declarative classes.

The classes describe what the code reads and writes; the database itself is created and changed
only by the hand-written, append-only Alembic migrations in ``tether/store/migrations``. A test
compares the two on SQLite and PostgreSQL, so they cannot drift.

Later pillars (reviews, datasets, rollout history) subclass :class:`Base` in their own module
and add their tables in a new migration; constraint names follow ``Base.metadata``'s naming
convention so a later migration can drop or alter them by name.

Times are stored in UTC (:class:`UtcDateTime`): ``timestamptz`` on PostgreSQL, ISO text on SQLite
(where a fixed UTC format keeps range filters correct), and always read back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on every backend (naive values are refused)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL (indexable, compact)."""
    return JSON().with_variant(JSONB(), "postgresql")


def big_int_pk() -> TypeEngine[int]:
    """BIGINT on PostgreSQL; INTEGER on SQLite, where only that aliases the rowid."""
    return BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Base of every stored table; its metadata names constraints predictably."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class TraceRow(Base):
    """One call: the columns the filters use, what it was asked (``input``: messages and
    variables, kept out of ``data`` so listing never reads them), plus the rest of the trace as
    JSON (``data``).

    ``pk`` is an insertion-ordered integer: the cursor ``tether traces tail`` follows.
    """

    __tablename__ = "traces"
    __table_args__ = (
        Index("ix_traces_started_at", "started_at"),
        Index("ix_traces_feature_started_at", "feature", "started_at"),
        Index("ix_traces_variant_started_at", "variant", "started_at"),
        Index("ix_traces_user_id_started_at", "user_id", "started_at"),
        Index("ix_traces_degraded_started_at", "degraded", "started_at"),
    )

    pk: Mapped[int] = mapped_column(big_int_pk(), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    feature: Mapped[str] = mapped_column(String(200))
    variant: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    degraded: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    latency_ms: Mapped[float] = mapped_column(Float)
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    output: Mapped[str | None] = mapped_column(Text)
    input: Mapped[dict[str, Any] | None] = mapped_column(json_type())  # what was asked
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", json_type())
    data: Mapped[dict[str, Any]] = mapped_column(json_type())
    written_at: Mapped[datetime] = mapped_column(UtcDateTime())


class StepRow(Base):
    """One attempt or one event of a trace, in time order (``seq``)."""

    __tablename__ = "trace_steps"
    __table_args__ = (Index("ix_trace_steps_event", "event"),)

    trace_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "attempt" | "event"
    at_ms: Mapped[float] = mapped_column(Float)
    end_ms: Mapped[float | None] = mapped_column(Float)
    event: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    number: Mapped[int | None] = mapped_column(Integer)
    chain_position: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    error_class: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    streamed: Mapped[bool | None] = mapped_column(Boolean)
    data: Mapped[dict[str, Any]] = mapped_column(json_type())


class KeyRow(Base):
    """An API key: only its SHA-256 is stored; ``prefix`` identifies it on screen."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    tenant: Mapped[str | None] = mapped_column(String(200))  # migration 0004


class ResponseRow(Base):
    """A stored Responses API answer (``store: true``), for ``previous_response_id`` and
    ``GET /v1/responses/{id}``: the input items as the model saw them (the earlier turns
    included, as the feature's trace capture keeps text), the output items, and the response
    object as retrieved. ``owner`` is the id of the API key that created it (``None``: local
    mode); no other key reads it."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(32))
    feature: Mapped[str] = mapped_column(String(200))
    trace_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    input: Mapped[list[Any]] = mapped_column(json_type())
    output: Mapped[list[Any]] = mapped_column(json_type())
    response: Mapped[dict[str, Any]] = mapped_column(json_type())


class EvalRunRow(Base):
    """One ``tether eval run``: what ran (feature, variant, its config version, the dataset),
    its ``status`` (running, done, failed, interrupted), and once done its ``summary`` (the JSON
    ``--json`` prints) and the ``settings`` it ran with (scorers, repeat, concurrency, gate)."""

    __tablename__ = "eval_runs"
    __table_args__ = (
        Index("ix_eval_runs_started_at", "started_at"),
        Index("ix_eval_runs_feature_started_at", "feature", "started_at"),
        Index("ix_eval_runs_dataset_id_started_at", "dataset_id", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    feature: Mapped[str] = mapped_column(String(200))
    variant: Mapped[str] = mapped_column(String(200))
    config_version: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str] = mapped_column(String(64))
    dataset_path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cases: Mapped[int] = mapped_column(Integer)
    repeat: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(json_type())
    settings: Mapped[dict[str, Any]] = mapped_column(json_type())


class EvalResultRow(Base):
    """One case of one run, one repeat: the columns reports sort and filter on, the answer
    (``output``) and the rest as JSON (``data``: each scorer's verdict, the output's details,
    the case's tags, variables and expected answer)."""

    __tablename__ = "eval_results"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    repeat: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float)
    degraded: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(json_type())
