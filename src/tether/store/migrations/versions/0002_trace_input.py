"""traces.input: what the call was asked (messages and variables, as trace.capture keeps them)

Revision ID: 0002
Revises: 0001

Written by hand and append-only: never edit a released migration; add ``0003_...`` instead.
Traces stored before this revision have no input (``NULL``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("traces", sa.Column("input", _json(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of ``traces`` would
    # cascade-delete its trace_steps.
    op.execute("ALTER TABLE traces DROP COLUMN input")
