"""The ``tether`` command line: init, check, run, demo (and the pillars' sub-commands)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tether._version import __version__
from tether.cli.app import App, ConfigOption, compile_config, load_settings
from tether.cli.render import trace_table
from tether.cli.serve import serve
from tether.cli.templates import STARTER_CONFIG, starter_dataset
from tether.errors import ConfigError, FeatureFailed, InvalidRequest, TetherError
from tether.settings import Settings

SUB_APPS = (
    ("tether.cli.guards", "guards", "Run and measure input/output guards."),
    ("tether.cli.traces", "traces", "List, show and follow stored traces."),
    ("tether.cli.keys", "keys", "Create, list and revoke gateway API keys."),
    ("tether.cli.budgets", "budgets", "Where budgets stand: spent, reserved, limit and reset."),
    ("tether.cli.evals", "eval", "Evaluate features on datasets; compare runs."),
    ("tether.cli.datasets", "datasets", "Build eval datasets (from stored traces)."),
)


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value, e.g. --var message='Hello'")
        variables[key] = value
    return variables


def init(
    directory: Annotated[Path, typer.Argument(help="Where to write tether.yaml.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing tether.yaml.")] = False,
) -> None:
    """Write a commented tether.yaml with a working feature named `assistant`, and the small
    dataset it is evaluated on (evals/assistant.jsonl, kept if it exists)."""
    target = directory / "tether.yaml"
    if target.exists() and not force:
        Console(stderr=True).print(f"[red]{target} exists[/]; pass --force to overwrite it")
        raise typer.Exit(1)
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(STARTER_CONFIG, encoding="utf-8")
    dataset = directory / "evals" / "assistant.jsonl"
    if not dataset.exists():
        dataset.parent.mkdir(exist_ok=True)
        dataset.write_text(starter_dataset(), encoding="utf-8")
    Console().print(
        f"wrote [bold]{target}[/] and [bold]{dataset}[/]\nnext: tether run assistant --config "
        f"{target} --var message='What is tether?'\n      tether eval run assistant --config "
        f"{target}"
    )


def check(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="The tether.yaml to check (default: $TETHER_CONFIG, else tether.yaml).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check a config as start-up does (it builds every feature's guards, templates and model
    chain, without network); exit non-zero with FILE:LINE, the YAML path and a fix."""
    if file is not None and config is not None and file != config:
        raise typer.BadParameter(f"two configs given ({file} and {config}); give one")
    settings = load_settings()
    path = settings.config_path(file or config)
    try:
        loaded = compile_config(path, settings)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(1) from None
    Console().print(
        f"[green]ok[/] {path}: {len(loaded.features)} feature(s) "
        f"({', '.join(loaded.features) or 'none'}), {len(loaded.providers)} provider(s)"
    )


def run(
    feature: Annotated[str, typer.Argument(help="The feature to call.")],
    config: ConfigOption = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", "-v", help="A template variable: key=value.")
    ] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is produced.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    user: Annotated[str | None, typer.Option(help="The end user the call is for.")] = None,
    show_trace: Annotated[bool, typer.Option("--trace", help="Show the call's trace.")] = False,
) -> None:
    """Call a feature once, e.g. `tether run assistant --var message='Hi'`; its trace is stored
    (see `tether traces list`)."""
    variables = _parse_vars(var or [])
    err = Console(stderr=True, highlight=False)
    settings = load_settings()
    path = settings.config_path(config)
    try:
        result = asyncio.run(_run(feature, path, settings, variables, stream and not as_json, user))
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        raise typer.Exit(1) from None
    except InvalidRequest as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(2) from None
    except FeatureFailed as exc:
        sys.stderr.write(f"failed: {exc}\n")
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    elif not stream:
        sys.stdout.write(result.output + "\n")
    if result.degraded and not as_json:
        err.print(f"[yellow]degraded[/]: {result.reason} (trace {result.trace_id})")
    if show_trace and result.trace is not None:
        err.print(trace_table(result.trace))


async def _run(
    feature: str,
    config: Path,
    settings: Settings,
    variables: dict[str, str],
    stream: bool,
    user: str | None,
) -> Any:
    from tether.sdk import Tether

    async with Tether.from_config(config, settings=settings) as tether:
        if not stream:
            return await tether.run(feature, variables, user=user)
        final = None
        async for chunk in tether.stream(feature, variables, user=user):
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
            if chunk.done:
                final = chunk
        sys.stdout.write("\n")
        if final is not None and final.error:
            Console(stderr=True).print(f"[red]stream interrupted[/]: {final.error}")
        assert final is not None and final.result is not None
        return final.result


def demo() -> None:
    """Offline tour: the local model answering, then an outage handled by fallback and by the
    failure path."""
    from tether.cli.demo import run_demo

    try:
        run_demo(Console(highlight=False))
    except TetherError as exc:
        Console(stderr=True).print(f"[red]demo failed[/]: {exc}")
        raise typer.Exit(1) from None


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tether {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """tether: the production layer for AI features (guarded, budgeted, traced calls with a
    designed failure path)."""


def build_app() -> typer.Typer:
    app = App(name="tether", no_args_is_help=True, pretty_exceptions_enable=False)
    app.callback()(_root)
    app.command()(init)
    app.command()(check)
    app.command()(run)
    app.command()(demo)
    app.command()(serve)
    for module_name, name, help_text in SUB_APPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        app.add_typer(module.app, name=name, help=help_text)
    return app


def main() -> None:
    build_app()()
