"""Alembic environment for tether's store, run only from code (``tether.store.migrate``).

There is no ``alembic.ini``: the caller opens a connection inside a transaction and hands it
over in ``config.attributes["connection"]``, so the migrations run on exactly the engine (and
SQLite pragmas, and PostgreSQL ``search_path``) the store uses. On PostgreSQL a transaction-level
advisory lock, keyed by the current schema, serialises replicas that start at the same time and
all run ``upgrade head``.

Alembic's ``context`` and ``op`` are per-process proxies: run one migration at a time per process
(replicas are processes, so the lock above is what serialises them).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

# Any int4 constant works; it only has to be the same for every tether process.
_PG_MIGRATION_LOCK = 0x7E7E_0001


def run_migrations() -> None:
    if context.is_offline_mode():
        raise RuntimeError("tether runs its migrations online only: call Store.migrate()")
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "tether's migrations need a connection: call tether.store.Store.migrate() "
            "instead of the alembic command line"
        )
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"),
                {"key": _PG_MIGRATION_LOCK},
            )
        context.run_migrations()


run_migrations()
