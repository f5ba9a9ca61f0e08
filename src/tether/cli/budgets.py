"""``tether budgets status``: where each budget stands (spent, reserved, limit, mode, reset)
per feature and scope, read from the config's state backend.

With ``state.backend: redis`` the numbers are the ones every replica shares. With the
in-process default (``memory``) budgets live inside each running process, so this command
(a process of its own) shows the limits and periods only, says why on stderr, and exits 0:
the running gateway's own numbers are at ``GET /admin/budgets``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.cli.app import App, ConfigOption, load_settings
from tether.cli.traces import JsonOption, cli_errors, print_json
from tether.settings import Settings

app = App(help="Where budgets stand: spent, reserved, limit and reset.", no_args_is_help=True)


def _option(name: str, short: str, what: str) -> Any:
    return typer.Option(name, short, help=what, show_default=False)


async def _report(path: Path, settings: Settings, **filters: str | None) -> dict[str, Any]:
    from tether.gateway.budgets import budget_report
    from tether.sdk import Tether

    tether = Tether.from_config(path, store=False, settings=settings)
    try:
        return await budget_report(tether, in_process=False, **filters)
    finally:
        await tether.aclose()


def _amount(value: float | None, dimension: str) -> str:
    if value is None:
        return "-"
    return f"${value:,.4f}" if dimension == "cost_usd" else f"{value:,.0f}"


def _moment(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(scopes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("feature", "scope", "who", "of", "spent", "reserved", "limit", "mode", "resets"):
        table.add_column(
            column, justify="right" if column in ("spent", "reserved", "limit") else "left"
        )
    for row in scopes:
        dimension = str(row.get("dimension"))
        spent, limit = row.get("spent"), row.get("limit")
        over = isinstance(spent, int | float) and isinstance(limit, int | float) and spent >= limit
        mode = str(row.get("mode"))
        table.add_row(
            escape(str(row.get("feature"))),
            escape(str(row.get("scope"))),
            escape(str(row.get("identity") or "-")),
            "USD" if dimension == "cost_usd" else "tokens",
            ("[red]" if over else "") + _amount(spent, dimension),
            _amount(row.get("reserved"), dimension),
            _amount(limit, dimension),
            f"{mode} / {row.get('period')}",
            _moment(row.get("resets_at")),
        )
    return table


@app.command("status")
def status(
    config: ConfigOption = None,
    feature: Annotated[
        str | None, _option("--feature", "-f", "One feature (default: every one with budgets).")
    ] = None,
    user: Annotated[str | None, _option("--user", "-u", "The user whose budgets to show.")] = None,
    tenant: Annotated[str | None, _option("--tenant", "-t", "The tenant to show.")] = None,
    key: Annotated[str | None, _option("--key", "-k", "The API key id to show.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Spent, reserved, limit, mode and reset time of each budget scope."""
    settings = load_settings()
    path = settings.config_path(config)
    with cli_errors():
        report = asyncio.run(
            _report(path, settings, feature=feature, user=user, tenant=tenant, key=key)
        )
    if as_json:
        print_json(report)
        return
    err = Console(stderr=True, soft_wrap=True)
    if report["note"]:
        err.print(f"[yellow]note:[/yellow] {escape(report['note'])}")
    if not report["scopes"]:
        err.print(
            "no budgets to show: no feature declares budgets"
            if feature is None
            else f"feature {escape(feature)} declares no budgets (add `budgets:` to it)"
        )
        return
    Console().print(_table(report["scopes"]))
