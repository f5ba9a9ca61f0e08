"""Shared fixtures: a real PostgreSQL and a real Redis for the tests that need them (never
skipped)."""

from __future__ import annotations

import sys

import pytest

from tests.postgres import pg_url, postgres, store_url
from tests.redis_server import redis_url, spare_redis, state_prefix
from tests.state_backends import backend

__all__ = ["backend", "pg_url", "postgres", "redis_url", "spare_redis", "state_prefix", "store_url"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """llama-cpp-python opens /dev/null twice at import and never closes it; close it at the
    end of the run so the interpreter does not print ResourceWarnings after the summary."""
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()
