"""traces, trace_steps and api_keys

Revision ID: 0001
Revises: (none)

Written by hand and append-only: never edit a released migration; add ``0002_...`` instead.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "traces",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("feature", sa.String(200), nullable=False),
        sa.Column("variant", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("degraded", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.Column("written_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_traces"),
        sa.UniqueConstraint("id", name="uq_traces_id"),
    )
    op.create_index("ix_traces_started_at", "traces", ["started_at"])
    op.create_index("ix_traces_feature_started_at", "traces", ["feature", "started_at"])
    op.create_index("ix_traces_variant_started_at", "traces", ["variant", "started_at"])
    op.create_index("ix_traces_user_id_started_at", "traces", ["user_id", "started_at"])
    op.create_index("ix_traces_degraded_started_at", "traces", ["degraded", "started_at"])

    op.create_table(
        "trace_steps",
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.Float(), nullable=False),
        sa.Column("end_ms", sa.Float(), nullable=True),
        sa.Column("event", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(200), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("chain_position", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("error_class", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("streamed", sa.Boolean(), nullable=True),
        sa.Column("data", _json(), nullable=False),
        sa.PrimaryKeyConstraint("trace_id", "seq", name="pk_trace_steps"),
        sa.ForeignKeyConstraint(
            ["trace_id"],
            ["traces.id"],
            name="fk_trace_steps_trace_id_traces",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_trace_steps_event", "trace_steps", ["event"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("scopes", _json(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("last_used_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("hash", name="uq_api_keys_hash"),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("trace_steps")
    op.drop_table("traces")
