"""Build the SQLAlchemy engine for a store URL.

* ``postgresql://`` and ``postgres://`` mean psycopg 3 (``postgresql+psycopg://``).
* SQLite connections get WAL (readers never block the writer), a busy timeout (a second writer
  waits instead of failing with "database is locked"), ``synchronous=NORMAL`` (durable in WAL
  across application crashes) and foreign keys on.
* A SQLite file's folder is created if missing, and a new database file is created readable by
  its owner only (0600, whatever the umask; SQLite gives its ``-wal`` and ``-shm`` files the
  database file's mode, and they are checked after the first connection).
* ``synchronous`` is ``NORMAL`` unless asked for ``FULL`` (a commit then survives a machine
  crash too: what a journal with ``fsync`` needs before it deletes what was committed).
* An in-memory SQLite database is one shared connection, so the trace writer's thread sees the
  same tables as the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Literal

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


def create_store_engine(
    url: str | URL,
    *,
    busy_timeout_s: float = 5.0,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
) -> Engine:
    """An engine for ``url`` with the SQLite pragmas applied on every new connection."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, json_serializer=_json_dumps)
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps}
    path: Path | None = None
    if parsed.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    elif not parsed.database.startswith("file:"):
        path = Path(parsed.database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private_file(path)
    engine = create_engine(parsed, **kwargs)
    busy_ms = int(busy_timeout_s * 1000)

    def on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()
        if path is not None:
            _keep_private(path)

    event.listen(engine, "connect", on_connect)
    return engine


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (whatever the umask) unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _keep_private(database: Path) -> None:
    """SQLite creates ``-wal`` and ``-shm`` with the database file's mode; make sure a private
    database never gets readable companions (an old SQLite, a file created by hand)."""
    try:
        private = database.stat().st_mode & 0o077 == 0
    except FileNotFoundError:
        return
    if not private:
        return
    for suffix in ("-wal", "-shm"):
        companion = database.with_name(database.name + suffix)
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if companion.stat().st_mode & 0o077:
                os.chmod(companion, 0o600)
