"""Entry point for multi-worker serving: ``uvicorn --factory tether.gateway.entry:app_factory``
reads the config path from ``TETHER_CONFIG`` (``tether serve --workers N`` sets it)."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from tether.gateway.app import create_app
from tether.gateway.runtime import GatewaySettings

CONFIG_ENV = "TETHER_CONFIG"


def app_factory() -> Starlette:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"set {CONFIG_ENV} to the tether.yaml to serve")
    settings = GatewaySettings.load(path)
    return create_app(settings)
