"""Entry point for multi-worker serving: ``uvicorn --factory tether.gateway.entry:app_factory``
reads the config path from ``TETHER_CONFIG`` (``tether serve --workers N`` sets it) and the
other ``TETHER_*`` settings like every command."""

from __future__ import annotations

import gc

from tether.gateway.app import create_app
from tether.gateway.asgi import App
from tether.gateway.runtime import GatewaySettings
from tether.settings import Settings

CONFIG_ENV = "TETHER_CONFIG"


def tune_gc() -> None:
    """Server-process GC settings: move start-up objects out of the collector's sight and
    collect the young generation less often. A gateway allocates many short-lived objects per
    call; default thresholds make full collections (pauses of tens of ms) frequent under load."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def app_factory() -> App:
    """The gateway for ``$TETHER_CONFIG`` (default ``tether.yaml``) and the other ``TETHER_*``
    settings (:mod:`tether.settings`)."""
    settings = Settings.load()
    app = create_app(GatewaySettings.load(settings.config, settings=settings))
    tune_gc()
    return app
