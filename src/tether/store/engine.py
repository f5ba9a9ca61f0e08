"""Build the SQLAlchemy engine for a store URL.

* ``postgresql://`` and ``postgres://`` mean psycopg 3 (``postgresql+psycopg://``).
* SQLite connections get WAL (readers never block the writer), a busy timeout (a second writer
  waits instead of failing with "database is locked"), ``synchronous=NORMAL`` (durable in WAL
  across application crashes) and foreign keys on.
* A SQLite file's folder is created if missing.
* An in-memory SQLite database is one shared connection, so the trace writer's thread sees the
  same tables as the caller.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool


def normalize_url(url: str | URL) -> URL:
    """Pick the psycopg 3 driver for PostgreSQL URLs that name no driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _json_dumps(value: Any) -> str:
    # Rows are sanitised before insert (see rows.encode); ``default=str`` is a last guard so
    # one odd value in a trace's metadata can never fail a whole batch.
    return json.dumps(value, default=str, separators=(",", ":"))


def create_store_engine(url: str | URL, *, busy_timeout_s: float = 5.0) -> Engine:
    """An engine for ``url`` with the SQLite pragmas applied on every new connection."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, json_serializer=_json_dumps)
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps}
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    elif not parsed.database.startswith("file:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)
    busy_ms = int(busy_timeout_s * 1000)

    def on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    return engine
