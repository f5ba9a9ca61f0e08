"""Run the store's Alembic migrations from code: no ``alembic.ini`` on disk, no CLI needed.

The migration scripts ship inside the package (``tether/store/migrations``); the same scripts
create and upgrade SQLite and PostgreSQL databases.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine


def migrations_dir() -> Path:
    return Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An in-memory Alembic config pointing at the packaged migrations."""
    config = Config()
    # Config options go through ConfigParser interpolation: a '%' in a path must be doubled.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the package knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError(f"no migrations found in {migrations_dir()}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` in one transaction (idempotent)."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Step the database back to ``revision`` (``"base"``: drop everything)."""
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)
