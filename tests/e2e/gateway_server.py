"""A live ``tether serve`` in a subprocess on loopback, for the gateway tests."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies (Linux), so a
    killed test run never leaves a gateway behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tether_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


class GatewayProcess:
    """``tether serve --config CONFIG`` on a free port; ``stop()`` sends SIGTERM (graceful)."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.config = config
        self.args = args
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log = config.parent / f"gateway-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stored_trace(self, trace_id: str, admin_token: str = "admin-secret") -> dict[str, Any]:
        """The trace as the gateway stored it (the writer stores off the request path: wait up
        to 30 s for it). Needs the gateway started with ``TETHER_ADMIN_TOKEN``."""
        url = f"{self.root}/admin/traces/{trace_id}"
        headers = {"authorization": f"Bearer {admin_token}"}
        deadline = time.monotonic() + 30
        while (got := httpx.get(url, headers=headers, timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, f"trace {trace_id} was not stored: {got.text}"
            time.sleep(0.05)
        trace: dict[str, Any] = got.json()
        return trace

    def start(self) -> GatewayProcess:
        out = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tether",
                "serve",
                "--config",
                str(self.config),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *self.args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            preexec_fn=die_with_parent,
        )
        out.close()
        try:
            return self._wait_ready()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def _wait_ready(self) -> GatewayProcess:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tether serve exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.root}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"tether serve did not become ready: {self.log.read_text()}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
