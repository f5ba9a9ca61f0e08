"""A real PostgreSQL (127.0.0.1:5432, database ``test``) for tests: each test gets its own
schema (via ``search_path`` in the URL), dropped afterwards. If the server is down the fixture
tries to start it, then FAILS (never skips) with the command to run."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "TETHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
START_HINT = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or point TETHER_TEST_POSTGRES_URL at a server"
)


def admin_connect() -> psycopg.Connection[Any]:
    url = make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password or None,
        dbname=url.database or "test",
        connect_timeout=3,
        autocommit=True,
    )


def _problem() -> str | None:
    try:
        with admin_connect() as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def _try_to_start() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
    subprocess.run(command, check=False, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def postgres() -> str:
    problem = _problem()
    if problem is not None:
        _try_to_start()
        deadline = time.monotonic() + 15
        while problem is not None and time.monotonic() < deadline:
            time.sleep(0.5)
            problem = _problem()
    if problem is not None:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable ({problem}); {START_HINT}")
    return POSTGRES_URL


@pytest.fixture
def pg_url(postgres: str) -> Iterator[str]:
    """A URL whose connections live in a fresh schema, with a non-UTC session time zone."""
    schema = f"tether_test_{secrets.token_hex(6)}"
    with admin_connect() as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = make_url(postgres).update_query_dict(
        {"options": f"-csearch_path={schema} -ctimezone=Pacific/Auckland"}
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin_connect() as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs twice: on a SQLite file in ``tmp_path``, and on a fresh PostgreSQL
    schema (``pg_url``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/traces.db"
    return str(request.getfixturevalue("pg_url"))
