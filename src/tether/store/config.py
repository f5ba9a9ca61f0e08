"""The ``store:`` section of ``tether.yaml``: where traces and keys live, how traces are written.

SQLite is the default (one file next to the config, WAL mode); PostgreSQL is a URL away
(``postgresql://user@host/db``) and is what several replicas share.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from tether.config.base import Strict


class StoreConfig(Strict):
    """Where the store is and how the trace writer batches.

    ``url`` is a SQLAlchemy URL. A relative SQLite path is relative to the folder of the config
    file (see :meth:`resolve_url`), so ``tether -c deploy/tether.yaml`` and the gateway agree on
    one database whatever the working directory. ``postgresql://`` URLs use psycopg 3.
    """

    url: str = Field(
        default="sqlite:///tether.db",
        description="SQLAlchemy URL: sqlite:///tether.db (default) or postgresql://user@host/db.",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Traces waiting to be written; when full, callers wait (back-pressure).",
    )
    batch_size: int = Field(default=200, ge=1, description="Traces written per transaction.")
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="Longest a trace waits in the queue before a write."
    )
    write_attempts: int = Field(
        default=3, ge=1, description="Tries of a failed batch before writing traces one by one."
    )
    busy_timeout_s: float = Field(
        default=5.0, ge=0, description="SQLite only: how long a writer waits for a lock."
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url  # here, not at import: config loads stay light
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                f"store url {value!r} is not a database URL; use sqlite:///tether.db or "
                "postgresql://user@host:5432/dbname"
            ) from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                f"store url {value!r}: backend {url.get_backend_name()!r} is not supported; "
                "use sqlite:/// or postgresql://"
            )
        return value

    def resolve_url(self, config_dir: str | Path) -> str:
        """The URL with a relative SQLite path made absolute against ``config_dir``."""
        return resolve_url(self.url, config_dir)


def resolve_url(url: str, config_dir: str | Path) -> str:
    """Make a relative SQLite file path absolute against ``config_dir``; other URLs unchanged.

    ``sqlite://`` and ``sqlite:///:memory:`` (in-memory) and ``file:`` URIs are left alone.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = Path(config_dir).expanduser().resolve() / path
    return parsed.set(database=str(path)).render_as_string(hide_password=False)
