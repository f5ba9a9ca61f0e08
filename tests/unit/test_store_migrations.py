"""Migrations on SQLite: run from code, idempotent, reversible, and equal to the models."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from tether.store import Store
from tether.store.migrate import downgrade, head_revision, migrations_dir
from tether.store.schema import Base


def test_migrations_ship_in_the_package_without_alembic_ini() -> None:
    folder = migrations_dir()
    assert (folder / "env.py").is_file()
    assert sorted(p.name for p in (folder / "versions").glob("0*.py"))[0].startswith("0001_")
    assert not list(folder.parent.glob("alembic.ini"))
    assert head_revision() == "0005"


def test_open_migrates_to_head_and_again_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    with Store.from_url(url, migrate=False) as store:
        assert store.revision() is None
        store.migrate()
        store.migrate()
        assert store.revision() == head_revision()
        tables = set(inspect(store.engine).get_table_names())
    assert {"traces", "trace_steps", "api_keys", "alembic_version"} <= tables


def test_models_match_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    with Store.from_url(url) as store, store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    with Store.from_url(f"sqlite:///{tmp_path / 'tether.db'}") as store:
        downgrade(store.engine, "base")
        assert store.revision() is None
        assert "traces" not in inspect(store.engine).get_table_names()
        store.migrate()
        assert store.revision() == head_revision()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "tether.db"
    with Store.from_url(f"sqlite:///{path}") as store, store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # persisted in the file
    finally:
        raw.close()


def test_in_memory_database_is_shared_across_threads() -> None:
    with Store.from_url("sqlite://") as store:
        counts: list[int] = []
        thread = threading.Thread(target=lambda: counts.append(store.traces.count()))
        thread.start()
        thread.join()
        assert counts == [0]


def test_0004_gives_keys_made_before_it_no_tenant(tmp_path: Path) -> None:
    """A key created on 0003 survives the upgrade (tenant NULL) and 0004 goes down cleanly."""
    with Store.from_url(f"sqlite:///{tmp_path / 'tether.db'}") as store:
        downgrade(store.engine, "0003")
        assert "tenant" not in {c["name"] for c in inspect(store.engine).get_columns("api_keys")}
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, prefix, hash, scopes, created_at) VALUES "
                    "('k1', 'old', 'tth_old', 'h1', '[\"*\"]', '2026-01-01 00:00:00.000000')"
                )
            )
        store.migrate()
        assert store.revision() == head_revision()
        (old,) = store.keys.list()
        assert (old.id, old.tenant) == ("k1", None)
        store.keys.create("new", ["*"], tenant="acme")
        assert [k.tenant for k in store.keys.list()] == [None, "acme"]
        downgrade(store.engine, "0003")
        assert "tenant" not in {c["name"] for c in inspect(store.engine).get_columns("api_keys")}
