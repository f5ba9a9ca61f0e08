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
from tether.store.store import Store
from tether.store.traces import parse_since
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
        cls, path: str | os.PathLike[str], env: Mapping[str, str] | None = None
    ) -> GatewaySettings:
        env = os.environ if env is None else env
        config = load_config(path, env)
        return cls(
            config=config,
            config_dir=Path(path).resolve().parent,
            admin_token=env.get(ADMIN_TOKEN_ENV) or None,
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
        self._given_store = store
        self._extra_sinks = extra_sinks
        self._store: Store | None = store
        self._writer: TraceWriter | None = None
        self._tether: Tether | None = None
        self._auth: Authenticator | None = None
        self.metrics = PrometheusMetrics()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._store is None:
            self._store = await asyncio.to_thread(
                Store.open, self.settings.config.store, config_dir=self.settings.config_dir
            )
        writer = self._writer = self._store.writer()
        await writer.start()
        sinks: list[TraceSink] = [writer, *self._extra_sinks]
        if self.settings.config.telemetry.prometheus:
            sinks.append(self.metrics)
        self._tether = Tether(self.settings.config, providers=self._providers, sink=FanOut(*sinks))
        self.metrics.watch(health=self._tether.health, queue=lambda: writer.stats)
        _ = self._tether.pipeline  # compile templates and chains now, not on the first call
        self._auth = Authenticator(
            self._store.keys,
            self.settings.admin_token,
            cache_ttl_s=self.settings.config.gateway.key_cache_ttl_s,
        )
        log.info("tether gateway ready: store %s", self._store.url)

    async def stop(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()
        if self._tether is not None:
            await self._tether.aclose()
        if self._store is not None and self._given_store is None:
            self._store.close()

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
        return checks

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def list_traces(self, **filters: Any) -> list[dict[str, Any]]:
        since = filters.pop("since", None)
        rows = self.store.traces.list(
            since=parse_since(since) if since else None,
            **{k: v for k, v in filters.items() if v is not None},
        )
        return [dict(r) for r in rows]

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        row = self.store.traces.get(trace_id)
        return dict(row) if row is not None else None
