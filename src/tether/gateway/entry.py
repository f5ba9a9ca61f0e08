"""Entry point for multi-worker serving: ``uvicorn --factory tether.gateway.entry:app_factory``
reads the config path from ``TETHER_CONFIG`` (``tether serve --workers N`` sets it)."""

from __future__ import annotations

import gc
import os

from tether.gateway.app import create_app
from tether.gateway.asgi import App
from tether.gateway.runtime import GatewaySettings

CONFIG_ENV = "TETHER_CONFIG"


def tune_gc() -> None:
    """Server-process GC settings: move start-up objects out of the collector's sight and
    collect the young generation less often. A gateway allocates many short-lived objects per
    call; default thresholds make full collections (pauses of tens of ms) frequent under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def app_factory() -> App:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"set {CONFIG_ENV} to the tether.yaml to serve")
    settings = GatewaySettings.load(path)
    app = create_app(settings)
    tune_gc()
    return app
