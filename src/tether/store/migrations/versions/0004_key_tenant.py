"""api_keys.tenant: the tenant a key calls for (budgets, rate limits and the cache count per it)

Revision ID: 0004
Revises: 0003

Written by hand and append-only: never edit a released migration; add ``0005_...`` instead.
Keys created before this revision have no tenant (``NULL``): the caller's ``x-tether-tenant``
header, when sent, names it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("tenant", sa.String(200), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+, PostgreSQL), as 0002 does.
    op.execute("ALTER TABLE api_keys DROP COLUMN tenant")
