"""``tether keys create|list|revoke``: API keys for the gateway, scoped to features.

``create`` prints the new key once, alone on stdout (``KEY=$(tether keys create -s support)``);
tether keeps only its hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.cli.app import App, ConfigOption
from tether.cli.traces import (
    JsonOption,
    StoreUrlOption,
    cli_errors,
    open_store,
    print_json,
)
from tether.config import TetherConfig
from tether.errors import KeyNotFound
from tether.store.keys import ApiKey

app = App(help="Create, list and revoke gateway API keys.", no_args_is_help=True)


def _check_scopes(scopes: list[str], config: TetherConfig | None) -> None:
    if config is None:
        return
    unknown = [s for s in scopes if s != "*" and s not in config.features]
    if unknown:
        declared = ", ".join(sorted(config.features)) or "none"
        raise typer.BadParameter(
            f"{', '.join(unknown)}: not a feature of the config (declared: {declared}); "
            "use a declared feature name, or '*' for every feature",
            param_hint="--scope",
        )


def _key_json(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "tenant": key.tenant,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M")


@app.command("create")
def create(
    scope: Annotated[
        list[str],
        typer.Option("--scope", "-s", help="A feature this key may call ('*': all); repeatable."),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="A label, e.g. the client.")] = "",
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            help="The tenant this key calls for: budgets, rate limits and a tenant-scoped "
            "cache count its calls there, and its callers cannot name another.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once."""
    with cli_errors():
        store, tether_config = open_store(config, store_url)
        with store:
            _check_scopes(scope, tether_config)
            if tenant is not None and not tenant.strip():
                raise typer.BadParameter(
                    "name the tenant, or leave --tenant out", param_hint="--tenant"
                )
            key_id, plaintext = store.keys.create(name, scope, tenant=tenant)
    tenant = tenant.strip() if tenant is not None else None
    if as_json:
        scopes = sorted(set(scope))
        print_json(
            {"id": key_id, "name": name, "key": plaintext, "scopes": scopes, "tenant": tenant}
        )
        return
    typer.echo(plaintext)
    for_tenant = f" (tenant [cyan]{escape(tenant)}[/cyan])" if tenant else ""
    Console(stderr=True, soft_wrap=True).print(
        f"created key [cyan]{key_id}[/cyan] for {escape(', '.join(sorted(set(scope))))}"
        f"{for_tenant}. Copy it now: tether stores only its hash and cannot show it again."
    )


@app.command("list")
def list_keys(
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every key (never the secret), oldest first."""
    with cli_errors():
        store, _ = open_store(config, store_url)
        with store:
            keys = store.keys.list()
    if as_json:
        print_json([_key_json(k) for k in keys])
        return
    console = Console()
    if not keys:
        console.print("no keys yet; create one with `tether keys create --scope FEATURE`")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "name", "prefix", "scopes", "tenant", "created", "last used", "state"):
        table.add_column(column, no_wrap=column in ("id", "prefix"))
    for key in keys:
        state = "[red]revoked[/red]" if key.revoked else "[green]active[/green]"
        table.add_row(
            key.id,
            escape(key.name or "-"),
            escape(key.prefix) + "…",
            escape(", ".join(key.scopes)),
            escape(key.tenant or "-"),
            _when(key.created_at),
            _when(key.last_used_at),
            state,
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id or its display prefix.")],
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
) -> None:
    """Revoke a key: the gateway refuses it from now on (401)."""
    with cli_errors():
        store, _ = open_store(config, store_url)
        with store:
            try:
                key = store.keys.revoke(key_id)
            except KeyNotFound as exc:
                Console(stderr=True, soft_wrap=True).print(
                    f"[red]error:[/red] {escape(exc.message)}"
                )
                raise typer.Exit(1) from None
    Console().print(f"revoked key [cyan]{key.id}[/cyan] ({escape(key.prefix)}…)")
