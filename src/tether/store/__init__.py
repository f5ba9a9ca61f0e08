"""Durable storage: traces (written off the request path) and API keys, on SQLite or PostgreSQL.

SQLAlchemy 2 with Alembic migrations that ship in the package and run from code
(:meth:`Store.migrate`). Later pillars (reviews, datasets, rollout history) add tables to
:class:`~tether.store.schema.Base` and a new migration.

The names below are imported on first use, so importing ``tether.store`` does not pay for
SQLAlchemy and Alembic. :class:`StoreConfig` is the ``store:`` section's model, which lives with
the other config models in :mod:`tether.config.store`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.config.store import StoreConfig, resolve_url
    from tether.store.keys import ApiKey, KeyStore, scope_allows
    from tether.store.store import Store
    from tether.store.traces import TraceStore, parse_since
    from tether.store.writer import TraceWriter, WriterStats

_HOMES = {
    "ApiKey": "tether.store.keys",
    "KeyStore": "tether.store.keys",
    "Store": "tether.store.store",
    "StoreConfig": "tether.config.store",
    "TraceStore": "tether.store.traces",
    "TraceWriter": "tether.store.writer",
    "WriterStats": "tether.store.writer",
    "parse_since": "tether.store.traces",
    "resolve_url": "tether.config.store",
    "scope_allows": "tether.store.keys",
}

__all__ = [
    "ApiKey",
    "KeyStore",
    "Store",
    "StoreConfig",
    "TraceStore",
    "TraceWriter",
    "WriterStats",
    "parse_since",
    "resolve_url",
    "scope_allows",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'tether.store' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
