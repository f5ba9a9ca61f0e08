"""What every ``tether`` command shares: its Typer app, the ``--config`` option, the settings.

Typer's help gives every option a type column; for a flag (``--stream``, ``--json``, ``--help``)
it reads ``<bool>``, which suggests a value the flag does not take. :class:`App` leaves it empty.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from tether.config.models import TetherConfig
from tether.errors import ConfigError
from tether.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The tether.yaml to use (default: $TETHER_CONFIG, else tether.yaml).",
        show_default=False,
    ),
]


def _quiet_flags(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # shown as the type; a flag takes no value
    return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _quiet_flags(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _quiet_flags(super().get_params(ctx))


class App(typer.Typer):
    """A ``typer.Typer`` whose commands show flags without a ``<bool>`` type."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


def load_settings() -> Settings:
    """The ``TETHER_*`` settings (see :mod:`tether.settings`); an invalid one ends the command."""
    try:
        return Settings.load()
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(2) from None


def compile_config(path: Path, settings: Settings) -> TetherConfig:
    """Load ``path`` and compile every feature the way start-up does (guards, templates, model
    chains; no network); raises ConfigError with FILE:LINE. Returns the config."""
    from tether.sdk import Tether

    tether = Tether.from_config(path, store=False, settings=settings)
    asyncio.run(tether.aclose())
    return tether.config
