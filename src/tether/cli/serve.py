"""``tether serve``: run the OpenAI-compatible gateway."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from tether.cli.app import ConfigOption, compile_config, load_settings
from tether.config.models import TetherConfig
from tether.errors import ConfigError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def per_process_limits(config: TetherConfig) -> list[str]:
    """What several workers on the in-process state would each count on their own: the
    features' budgets, rate limits and caches (empty on shared state)."""
    if config.state.backend != "memory":
        return []
    found = []
    for name, feature in config.features.items():
        if not feature.budgets.empty:
            found.append(f"budgets of {name}")
        if not feature.rate_limits.empty:
            found.append(f"rate limits of {name}")
        if feature.cache is not None:
            found.append(f"cache of {name}")
    return found


def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes. Budgets, rate limits, the cache and breakers hold across "
            "workers only on shared state (state.backend: redis).",
        ),
    ] = 1,
) -> None:
    """Serve the features in CONFIG over an OpenAI-compatible API.

    Clients point their OpenAI SDK at http://HOST:PORT/v1 and use a feature name as the model.
    Until the first API key is created (see `tether keys create`) the gateway accepts calls
    without a key and therefore binds to 127.0.0.1 only. Set TETHER_ADMIN_TOKEN to enable
    /admin and to protect /metrics; TETHER_STORE_URL replaces the config's store.url (as for
    `tether keys` and `tether traces`).
    """
    try:
        import uvicorn

        from tether.gateway.app import create_app
        from tether.gateway.runtime import GatewaySettings
        from tether.store.store import Store
    except ImportError as exc:
        sys.stderr.write(f"the gateway needs its extra: pip install 'tether[gateway]' ({exc})\n")
        raise typer.Exit(1) from None
    console = Console(stderr=True)
    env = load_settings()
    path = env.config_path(config)
    try:
        compile_config(path, env)  # everything start-up builds fails here, before "serving"
        settings = GatewaySettings.load(path, settings=env)
        with Store.open(settings.config.store, config_dir=settings.config_dir) as store:
            any_keys = store.keys.list(include_revoked=True)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(1) from None
    per_process = per_process_limits(settings.config) if workers > 1 else []
    if per_process:
        sys.stderr.write(
            f"--workers {workers} with state.backend: memory would give each worker its own "
            f"{', '.join(per_process)}, so each would allow the whole limit; set state: "
            "{backend: redis, url: redis://127.0.0.1:6379/0} (pip install 'tether[redis]') or "
            "serve with one worker\n"
        )
        raise typer.Exit(1)
    if not any_keys and host not in LOOPBACK_HOSTS:
        console.print(
            f"[yellow]no API key was ever created: binding to 127.0.0.1 instead of {host}[/] "
            "(create one with `tether keys create --scope FEATURE`, then restart)"
        )
        host = "127.0.0.1"
    elif not any_keys:
        console.print("[yellow]local mode[/]: no API keys exist, calls without a key are accepted")
    console.print(
        f"tether gateway on http://{host}:{port}/v1 serving "
        f"{', '.join(settings.config.features) or 'no features'}"
    )
    from tether.gateway.entry import CONFIG_ENV, tune_gc

    if workers == 1:
        app = create_app(settings)
        tune_gc()
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    os.environ[CONFIG_ENV] = str(path.resolve())
    uvicorn.run(
        "tether.gateway.entry:app_factory",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
    )
