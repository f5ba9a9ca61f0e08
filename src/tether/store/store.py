"""The store: one engine, migrated, with traces and keys on it.

``Store.open(config.store, config_dir=...)`` at startup (it runs ``upgrade head``, which is
idempotent and serialised between replicas on PostgreSQL), ``store.writer()`` for the async
trace sink (with its crash journal), ``store.close()`` at shutdown.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine

from tether.config.store import StoreConfig
from tether.store import migrate as migrations
from tether.store.engine import create_store_engine
from tether.store.evals import EvalStore
from tether.store.journal import Journal
from tether.store.keys import KeyStore
from tether.store.process import WriterProcess, can_reopen
from tether.store.responses import ResponseStore
from tether.store.traces import TraceStore
from tether.store.writer import TraceWriter


class Store:
    """Traces, API keys and stored Responses API answers on one database. Owns its engine:
    close it (or use ``with``)."""

    def __init__(
        self,
        engine: Engine,
        config: StoreConfig | None = None,
        *,
        config_dir: str | Path = ".",
    ) -> None:
        self.engine = engine
        self.config = config or StoreConfig()
        self.config_dir = Path(config_dir)
        self.traces = TraceStore(engine)
        self.keys = KeyStore(engine)
        self.responses = ResponseStore(engine)
        self.evals = EvalStore(engine)

    @classmethod
    def open(
        cls,
        config: StoreConfig | None = None,
        *,
        config_dir: str | Path = ".",
        migrate: bool = True,
    ) -> Store:
        """Connect to ``config.url`` (relative SQLite paths against ``config_dir``) and, unless
        ``migrate=False``, bring the schema to the newest revision."""
        config = config or StoreConfig()
        engine = create_store_engine(
            config.resolve_url(config_dir), busy_timeout_s=config.busy_timeout_s
        )
        store = cls(engine, config, config_dir=config_dir)
        if migrate:
            try:
                store.migrate()
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True) -> Store:
        """``Store.open(StoreConfig(url=url))`` with relative paths against the working folder."""
        return cls.open(StoreConfig(url=url), migrate=migrate)

    @property
    def url(self) -> str:
        """The database URL with any password hidden (for messages)."""
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self, revision: str = "head") -> None:
        """Apply the packaged migrations up to ``revision`` (idempotent)."""
        migrations.upgrade(self.engine, revision)

    def revision(self) -> str | None:
        """The schema revision of the database (``None``: not migrated)."""
        return migrations.current_revision(self.engine)

    def writer(self, *, process: bool | None = None) -> TraceWriter:
        """A new (not yet started) async trace writer on this store, sized by the config: the
        one construction the gateway, the SDK and the CLI share.

        With ``process`` true (the default when the database can be opened from another
        process: a SQLite file, PostgreSQL) batches are written by a child process with its own
        engine, so the caller's event loop never runs database code; otherwise in a thread.
        Unless ``store.journal`` is off (or the database is in memory), the writer keeps a
        crash journal (see :class:`~tether.config.store.JournalConfig`).
        """
        journal = self.journal()
        if process is None:
            process = can_reopen(self.engine.url)
        if not process:
            return TraceWriter.from_config(self.traces, self.config, journal)
        child = WriterProcess(
            self.engine.url,
            busy_timeout_s=self.config.busy_timeout_s,
            # a journal that fsyncs deletes what was committed: the commit must be on disk too
            synchronous="NORMAL" if journal is None or journal.fsync == "none" else "FULL",
        )
        return TraceWriter.from_config(child, self.config, journal)

    def journal(self) -> Journal | None:
        """A new (not yet open) crash journal for this store, or ``None`` when it is off."""
        url = self.engine.url.render_as_string(hide_password=False)
        directory = self.config.journal.directory(url, self.config_dir)
        return None if directory is None else Journal.from_config(directory, self.config.journal)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def store_config_of(config: object) -> StoreConfig:
    """``config.store`` when the loaded config has a store section, else the defaults."""
    store = getattr(config, "store", None)
    return store if isinstance(store, StoreConfig) else StoreConfig()
