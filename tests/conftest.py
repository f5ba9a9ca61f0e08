"""Shared fixtures: a real PostgreSQL for the tests that need one (never skipped)."""

from __future__ import annotations

from tests.postgres import pg_url, postgres

__all__ = ["pg_url", "postgres"]
