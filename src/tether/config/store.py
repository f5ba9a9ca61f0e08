"""The ``store:`` section of ``tether.yaml``: where traces and keys live, how traces are written.

SQLite is the default (one file next to the config, WAL mode); PostgreSQL is a URL away
(``postgresql://user@host/db``) and is what several replicas share.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from tether.config.base import Strict

FsyncPolicy = Literal["none", "interval", "always"]


class JournalConfig(Strict):
    """``store.journal``: the crash journal that keeps acknowledged traces across a crash.

    Every trace is appended to a local file (one JSON line, one ``write`` call) before the
    response that carries its ``x-tether-trace-id`` leaves; the trace writer deletes a journal
    file once every trace in it is committed to the store, and start-up stores whatever a
    crashed process left (idempotently: traces are keyed by id). What each setting guarantees:

    * ``fsync: none`` (default): an acknowledged trace survives a crash or ``kill -9`` of
      tether (the kernel keeps what was written); a crash of the machine or the operating
      system (power loss, kernel panic) can lose what the kernel had not written to disk yet
      (on Linux, up to about 30 seconds of traces).
    * ``fsync: interval``: as ``none``, and the journal is flushed to disk every
      ``fsync_interval_s`` in the background: a machine crash loses about the traces
      acknowledged in the last ``fsync_interval_s`` at most. SQLite commits are made durable too
      (``synchronous=FULL``).
    * ``fsync: always``: a response waits until its trace is on disk (group commit: one
      ``fsync`` covers every trace appended meanwhile), so an acknowledged trace survives a
      machine crash as well; adds the disk's flush latency to every request.
    * ``journal: off`` (or ``enabled: false``): no journal. Traces wait in memory for the
      writer (up to ``flush_interval_s``, longer under load), so a crash of tether loses the
      acknowledged traces not yet written. A graceful stop (SIGTERM) still writes them all.

    ``path`` is the journal folder (relative to the config file's folder); by default it is
    next to the SQLite file (``tether.db-trace-journal/``) or, for PostgreSQL,
    ``trace-journal-<database>-<hash of the URL>/`` in the config file's folder. It must be on a
    local disk of the machine that runs tether (several processes on one machine may share it;
    each replica has its own). tether creates it readable by its owner only (0700, files 0600),
    and removes it when it stops with every trace stored.
    """

    enabled: bool = Field(default=True, description="Keep acknowledged traces across a crash.")
    path: str | None = Field(
        default=None,
        description="Journal folder; default: next to the SQLite file or the config file.",
    )
    fsync: FsyncPolicy = Field(
        default="none",
        description="none: survives a tether crash; interval / always: a machine crash too.",
    )
    fsync_interval_s: float = Field(
        default=1.0, gt=0, description="fsync: interval: how often the journal is flushed."
    )
    segment_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=4096,
        description="A journal file is closed at this size; deleted once fully stored.",
    )

    def directory(self, url: str, config_dir: str | Path) -> Path | None:
        """The journal folder for a store at ``url`` (already resolved), or ``None`` when
        there is no journal (turned off, or an in-memory database that a crash loses anyway)."""
        from sqlalchemy.engine import make_url

        if not self.enabled:
            return None
        base = Path(config_dir).expanduser().resolve()
        if self.path is not None:
            return base / Path(self.path).expanduser()
        parsed = make_url(url)
        database = parsed.database or ""
        if parsed.get_backend_name() == "sqlite":
            if not database or ":memory:" in database or database.startswith("file:"):
                return None
            return Path(database).expanduser().with_name(f"{Path(database).name}-trace-journal")
        anonymous = parsed.render_as_string(hide_password=True)
        digest = hashlib.sha256(anonymous.encode()).hexdigest()[:10]
        return base / f"trace-journal-{database or 'postgres'}-{digest}"


class StoreConfig(Strict):
    """Where the store is and how the trace writer batches.

    ``url`` is a SQLAlchemy URL. A relative SQLite path is relative to the folder of the config
    file (see :meth:`resolve_url`), so ``tether -c deploy/tether.yaml`` and the gateway agree on
    one database whatever the working directory. ``postgresql://`` URLs use psycopg 3.

    ``journal`` keeps every acknowledged trace across a crash of tether (see
    :class:`JournalConfig` for what each setting guarantees); store files are created 0600.
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
    journal: JournalConfig = Field(
        default_factory=JournalConfig,
        description="Crash journal: `off`, or {fsync: none | interval | always, path: DIR}.",
    )

    @field_validator("journal", mode="before")
    @classmethod
    def _journal_switch(cls, value: Any) -> Any:
        """``journal: off`` (YAML reads it as false) / ``on`` / ``true``."""
        if value is False or value == "off":
            return {"enabled": False}
        if value is True or value == "on":
            return {}
        return value

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
