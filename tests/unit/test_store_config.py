"""StoreConfig: URL validation and resolution of relative SQLite paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tether.store import StoreConfig, resolve_url
from tether.store.engine import normalize_url
from tether.store.store import store_config_of


def test_defaults() -> None:
    config = StoreConfig()
    assert config.url == "sqlite:///tether.db"
    assert config.queue_size >= config.batch_size >= 1
    assert config.flush_interval_s > 0


def test_relative_sqlite_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    assert StoreConfig().resolve_url(tmp_path) == f"sqlite:///{tmp_path / 'tether.db'}"
    nested = StoreConfig(url="sqlite:///data/traces.db").resolve_url(tmp_path)
    assert nested == f"sqlite:///{tmp_path / 'data' / 'traces.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/tether/tether.db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://u:secret@db/tether?sslmode=require",
    ],
)
def test_other_urls_are_left_alone(url: str, tmp_path: Path) -> None:
    assert resolve_url(url, tmp_path) == url


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError, match="extra"):
        StoreConfig.model_validate({"url": "sqlite:///x.db", "batchsize": 3})
    with pytest.raises(ValidationError, match="queue_size"):
        StoreConfig(queue_size=0)


@pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db"])
def test_bad_urls_say_what_to_write(url: str) -> None:
    with pytest.raises(ValidationError, match="sqlite:///"):
        StoreConfig(url=url)


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


def test_store_config_of_falls_back_to_defaults() -> None:
    class WithStore:
        store = StoreConfig(url="sqlite:///elsewhere.db")

    assert store_config_of(object()) == StoreConfig()
    assert store_config_of(WithStore()).url == "sqlite:///elsewhere.db"
