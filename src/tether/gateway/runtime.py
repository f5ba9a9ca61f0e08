"""What a running gateway holds: settings, the SDK, the store, its trace writer, telemetry."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.config.loader import load_config
from tether.config.models import TetherConfig
from tether.gateway.auth import ADMIN_TOKEN_ENV, Authenticator
from tether.providers.base import Provider
from tether.sdk import Tether
from tether.settings import Settings
from tether.store.sink import StoreSink
from tether.store.store import Store
from tether.store.writer import TraceWriter
from tether.telemetry.metrics import PrometheusMetrics
from tether.telemetry.sink import FanOut, TraceSink

log = logging.getLogger("tether.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway needs, loaded once and passed explicitly."""

    config: TetherConfig
    config_dir: Path = Path(".")
    admin_token: str | None = None
    max_body_bytes: int = 1_048_576

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        *,
        settings: Settings | None = None,
    ) -> GatewaySettings:
        """The config at ``path`` with the ``TETHER_*`` settings applied (read from ``env``,
        default ``os.environ``, unless given): the same source as every ``tether`` command."""
        settings = settings or Settings.load(env)
        config = settings.apply(load_config(path, env))
        token = settings.admin_token
        return cls(
            config=config,
            config_dir=Path(path).resolve().parent,
            admin_token=token.get_secret_value() if token is not None else None,
            max_body_bytes=config.gateway.max_body_bytes,
        )


class GatewayRuntime:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        providers: Mapping[str, Provider] | None = None,
        store: Store | None = None,
        extra_sinks: tuple[TraceSink, ...] = (),
    ) -> None:
        self.settings = settings
        self._providers = providers
        self._extra_sinks = extra_sinks
        self._store: Store | None = store
        self._traces = StoreSink(settings.config.store, config_dir=settings.config_dir, store=store)
        self._writer: TraceWriter | None = None
        self._tether: Tether | None = None
        self._auth: Authenticator | None = None
        self.metrics = PrometheusMetrics()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        writer = self._writer = await self._traces.start()  # the SDK stores through it too
        self._store = self._traces.store
        sinks: list[TraceSink] = [writer, *self._extra_sinks]
        if self.settings.config.telemetry.prometheus:
            sinks.append(self.metrics)
        self._tether = Tether(
            self.settings.config,
            providers=self._providers,
            sink=FanOut(*sinks),
            config_dir=self.settings.config_dir,
        )
        self.metrics.watch(health=self._tether.health, queue=lambda: writer.stats)
        _ = self._tether.pipeline  # compile templates and chains now, not on the first call
        gateway = self.settings.config.gateway
        self._auth = Authenticator(
            self._store.keys,
            self.settings.admin_token,
            cache_ttl_s=gateway.key_cache_ttl_s,
            allowed_origins=frozenset(gateway.cors.allow_origins),
        )
        log.info("tether gateway ready: store %s", self._store.url)
        await self._log_open_surfaces(self._auth)

    async def _log_open_surfaces(self, auth: Authenticator) -> None:
        """One start-up line naming what answers without a key or token: a warning when that
        is more than the health checks and the API description."""
        open_paths = ["/healthz", "/readyz", "/openapi.json"]
        notes = []
        if not self.settings.admin_token:
            open_paths.insert(0, "/metrics")
            notes.append(f"/admin/* is off (set {ADMIN_TOKEN_ENV} to enable it and close /metrics)")
        local = await auth.local_mode()
        if local:
            notes.append(
                "local mode: /v1/* accepts calls without a key from this machine only (create "
                "a key with `tether keys create --scope FEATURE` to require keys)"
            )
        origins = self.settings.config.gateway.cors.allow_origins
        if origins:
            notes.append(f"browser pages on {', '.join(origins)} may call the API (gateway.cors)")
        wide_open = local or not self.settings.admin_token
        log.log(
            logging.WARNING if wide_open else logging.INFO,
            "open without auth: %s%s",
            ", ".join(open_paths),
            "".join(f"; {note}" for note in notes),
        )

    async def stop(self) -> None:
        self._writer = None
        if self._tether is not None:  # first: traces still being scored online go to the writer
            await self._tether.aclose()
        await self._traces.aclose()  # flushes the writer; closes the store unless it was given

    # ------------------------------------------------------------------ parts

    @property
    def tether(self) -> Tether:
        if self._tether is None:
            raise RuntimeError("the gateway has not started")
        return self._tether

    @property
    def auth(self) -> Authenticator:
        if self._auth is None:
            raise RuntimeError("the gateway has not started")
        return self._auth

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the gateway has not started")
        return self._store

    @property
    def writer(self) -> TraceWriter | None:
        return self._writer

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(self.store.traces.count)
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as the check's result
            checks["store"] = f"error: {type(exc).__name__}: {exc}"
        checks["trace_writer"] = "ok" if self._writer is not None else "stopped"
        checks["state"] = await self._state_check()
        return checks

    async def _state_check(self) -> str:
        """``ok``; ``error: ...`` when the state backend (Redis) cannot be reached and calls
        take their failure path (fail_closed: not ready); ``degraded: ...`` when they pass
        unchecked (fail_open: still ready, said so)."""
        shared = self.tether.services.state
        try:
            await shared.backend.ping()
        except Exception as exc:  # noqa: BLE001 - reported as the check's result
            problem = f"{type(exc).__name__}: {exc}"
            if shared.on_unavailable == "fail_open":
                return f"degraded: {problem} (fail_open: calls pass without budgets or limits)"
            return f"error: {problem}"
        return "ok"

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def list_traces(self, **filters: Any) -> list[dict[str, Any]]:
        """Stored traces; ``filters`` as ``TraceStore.list`` takes them (None: no filter)."""
        rows = self.store.traces.list(**{k: v for k, v in filters.items() if v is not None})
        return [dict(r) for r in rows]

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        row = self.store.traces.get(trace_id)
        return dict(row) if row is not None else None
