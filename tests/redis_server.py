"""A real Redis for tests (never skipped).

``redis_url``: the server on 127.0.0.1:6379 (``TETHER_TEST_REDIS_URL`` to point elsewhere); if
it is down the fixture starts it, then FAILS with the command to run. ``state_prefix``: a key
prefix of the test's own (its keys are deleted afterwards), so tests never see each other's
counters. ``spare_redis``: a second redis-server the test starts on a free port and can kill
(``stop()``) and start again on the same port (``start()``), or freeze (``freeze()`` /
``thaw()``: it hangs without closing connections): the outage tests.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_COMMAND = (
    'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
)


def _problem(url: str) -> str | None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        client.close()
    return None


def _wait_for(url: str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    problem = _problem(url)
    while problem is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        problem = _problem(url)
    return problem


@pytest.fixture(scope="session")
def redis_url() -> str:
    problem = _problem(REDIS_URL)
    if problem is not None and shutil.which("redis-server") is not None:
        command = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1"]
        command += ["--port", "6379", "--save", "", "--appendonly", "no"]
        subprocess.run(command, check=False, capture_output=True, timeout=30)
        problem = _wait_for(REDIS_URL, 10)
    if problem is not None:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({problem}); start it: {START_COMMAND}")
    return REDIS_URL


@pytest.fixture
def state_prefix(redis_url: str) -> Iterator[str]:
    """``test:<random>:``; every key under it is deleted after the test."""
    prefix = f"test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SpareRedis:
    """A redis-server of the test's own on ``port`` (no persistence): ``stop()`` kills it,
    ``start()`` starts it again on the same port (empty: it keeps nothing)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._process is not None:
            return
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        problem = _wait_for(self.url, 10)
        if problem is not None:
            self.stop()
            pytest.fail(f"could not start a spare redis-server on port {self.port}: {problem}")

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye to its clients, as when a server dies)."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGCONT)  # a frozen one too
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def freeze(self) -> None:
        """Stop it answering without closing a connection (SIGSTOP): a server that hangs."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self._process is not None


@pytest.fixture
def spare_redis(redis_url: str) -> Iterator[SpareRedis]:
    """A second, disposable Redis on a free port, running; stopped after the test."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; install it (apt-get install redis-server)")
    spare = SpareRedis(free_port())
    spare.start()
    try:
        yield spare
    finally:
        spare.stop()
