"""``tether traces list|show|tail``: search, inspect and follow stored traces.

The store comes from ``--store-url``, else ``$TETHER_STORE_URL``, else the config's ``store.url``
(a relative SQLite path is relative to the config file); the config is ``--config``, else
``$TETHER_CONFIG``, else ``tether.yaml``: the same settings as ``run`` and ``serve``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from tether.cli.app import App, ConfigOption
from tether.cli.render import attempt_detail, event_pairs, model_label
from tether.config import TetherConfig, load_config
from tether.config.store import StoreConfig
from tether.errors import TetherError
from tether.settings import Settings
from tether.store.store import Store, store_config_of
from tether.store.traces import TraceDict, parse_since

app = App(help="Search, inspect and follow stored traces.", no_args_is_help=True)

StoreUrlOption = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        help="A database URL (default: $TETHER_STORE_URL, else the config's store.url).",
        show_default=False,
    ),
]
FeatureOption = Annotated[str | None, typer.Option("--feature", "-f", help="Only this feature.")]
VariantOption = Annotated[str | None, typer.Option("--variant", help="Only this variant.")]
DegradedOption = Annotated[
    bool | None,
    typer.Option("--degraded/--no-degraded", help="Only degraded (or only healthy) calls."),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Started within 10m, 2h, 1d, 1w, or since an ISO time."),
]
UserOption = Annotated[str | None, typer.Option("--user", "-u", help="Only this user.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SHORT_ID = 12  # `show` accepts any unique prefix of at least 4 characters


# ------------------------------------------------------------------ shared with `tether keys`


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn tether and database errors into one red line and a non-zero exit."""
    try:
        yield
    except TetherError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/red] the store refused the operation: {escape(detail)}\n"
            "  fix: check that the database in store.url (or --store-url) is running and reachable"
        )
        raise typer.Exit(1) from None


def open_store(
    config_flag: Path | None, store_url: str | None
) -> tuple[Store, TetherConfig | None]:
    """The migrated store named by ``--store-url``, ``$TETHER_STORE_URL`` or the config, and the
    config if read (with a store URL, only if the file exists: for validation)."""
    settings = Settings.load()
    config_path = settings.config_path(config_flag)
    store_url = store_url or settings.store_url
    if store_url:
        config = load_config(config_path) if config_path.exists() else None
        return Store.open(StoreConfig(url=store_url)), config
    config = load_config(config_path)
    store_config = store_config_of(config)
    return Store.open(store_config, config_dir=config_path.resolve().parent), config


def local_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch).astimezone().strftime("%m-%d %H:%M")


def since_option(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


# ------------------------------------------------------------------ rendering


def _status(trace: TraceDict) -> str:
    status = str(trace.get("status"))
    if trace.get("degraded"):
        reason = trace.get("reason") or "degraded"
        return f"[yellow]degraded[/yellow] {escape(str(reason))}"
    colour = {"ok": "green", "error": "red"}.get(status, "white")
    return f"[{colour}]{escape(status)}[/{colour}]"


def _tokens(trace: TraceDict) -> str:
    usage = trace.get("usage") or {}
    return f"{usage.get('input_tokens', 0)}/{usage.get('output_tokens', 0)}"


def _feature(trace: TraceDict) -> str:
    variant = trace.get("variant") or "default"
    name = str(trace["feature"]) if variant == "default" else f"{trace['feature']}/{variant}"
    return escape(name)


def _list_table(traces: list[TraceDict]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, collapse_padding=True)
    table.add_column("started", no_wrap=True)
    table.add_column("id", no_wrap=True, style="cyan")
    table.add_column("feature")
    table.add_column("user")
    table.add_column("status")
    table.add_column("model")
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("$", justify="right", no_wrap=True)
    for t in traces:
        table.add_row(
            short_time(t.get("started_at")),
            escape(t["id"][:SHORT_ID]),
            _feature(t),
            escape(t.get("user") or "-"),
            _status(t),
            escape(t.get("model") or "-"),
            f"{t.get('latency_ms', 0):.0f}",
            _tokens(t),
            f"{t.get('cost_usd', 0):.4f}",
        )
    return table


def _tail_line(t: TraceDict) -> str:
    user = f" user={escape(t['user'])}" if t.get("user") else ""
    return (
        f"{short_time(t.get('started_at'))} [cyan]{escape(t['id'][:SHORT_ID])}[/cyan] "
        f"{_feature(t)}{user} {_status(t)} "
        f"{escape(t.get('model') or '-')} {t.get('latency_ms', 0):.0f}ms "
        f"tok={_tokens(t)} ${t.get('cost_usd', 0):.6f}"
    )


def _step_what(step: TraceDict) -> str:
    if step["kind"] == "event":
        pairs = event_pairs(step.get("data"))
        return f"[magenta]{escape(str(step.get('event')))}[/magenta] {escape(pairs)}".rstrip()
    label = model_label(step.get("provider"), step.get("model"))
    outcome = attempt_detail(
        status=step.get("status"),
        error_class=step.get("error_class"),
        status_code=step.get("status_code"),
        error=step.get("error"),
    )
    return f"attempt {step.get('number')} {escape(label)} {outcome}"


def _steps_table(steps: list[TraceDict]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("at ms", justify="right")
    table.add_column("step")
    table.add_column("ms", justify="right")
    table.add_column("tok in/out", justify="right")
    table.add_column("cost $", justify="right")
    for step in steps:
        attempt = step["kind"] == "attempt"
        table.add_row(
            str(step["seq"]),
            f"{step.get('at_ms', 0):.1f}",
            _step_what(step),
            f"{step.get('duration_ms', 0):.1f}" if attempt else "",
            _tokens(step) if attempt else "",
            f"{step.get('cost_usd', 0):.6f}" if attempt else "",
        )
    return table


def _asked(asked: TraceDict) -> str:
    """What the call was asked, one line per message (``metadata`` capture: only lengths)."""
    lines = []
    for message in asked.get("messages") or []:
        role = escape(str(message.get("role")))
        if "chars" in message:  # capture: metadata
            lines.append(f"[bold]{role}[/bold] ({message['chars']} chars)")
            continue
        text = escape(str(message.get("content") or ""))
        for call in message.get("tool_calls") or []:
            text += f"\n  -> {escape(str(call.get('name')))}({escape(str(call.get('arguments')))})"
        lines.append(f"[bold]{role}[/bold]: {text}")
    variables = asked.get("variables")
    if variables:
        lines.append(f"[bold]variables[/bold]: {escape(json.dumps(variables, default=str))}")
    return "\n".join(lines)


def _show(console: Console, trace: TraceDict) -> None:
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("trace", escape(trace["id"]))
    header.add_row("feature", f"{escape(trace['feature'])} (variant {escape(trace['variant'])})")
    header.add_row("user", escape(trace.get("user") or "-"))
    header.add_row("started", local_time(trace.get("started_at")))
    header.add_row("status", _status(trace))
    header.add_row("model", escape(trace.get("model") or "-"))
    header.add_row("latency", f"{trace.get('latency_ms', 0):.1f} ms")
    header.add_row("tokens in/out", _tokens(trace))
    header.add_row("cost", f"${trace.get('cost_usd', 0):.6f}")
    if trace.get("metadata"):
        header.add_row("metadata", escape(json.dumps(trace["metadata"], default=str)))
    console.print(header)
    steps = trace.get("steps") or []
    if steps:
        console.print()
        console.print(_steps_table(steps))
    asked = trace.get("input")
    if asked:
        console.print()
        title = f"asked (capture: {escape(str(asked.get('capture')))})"
        console.print(Panel(_asked(asked), title=title, title_align="left"))
    if trace.get("output") is not None:
        console.print()
        console.print(Panel(escape(trace["output"]), title="output", title_align="left"))


# ------------------------------------------------------------------ commands


@app.command("list")
def list_traces(
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
    feature: FeatureOption = None,
    variant: VariantOption = None,
    degraded: DegradedOption = None,
    since: SinceOption = None,
    user: UserOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Recent traces, newest first, filtered."""
    started_after = since_option(since)
    with cli_errors():
        store, _ = open_store(config, store_url)
        with store:
            traces = store.traces.list(
                feature=feature,
                variant=variant,
                degraded=degraded,
                since=started_after,
                user=user,
                limit=limit,
            )
    if as_json:
        print_json(traces)
        return
    console = Console()
    if not traces:
        console.print("no traces match")
        return
    console.print(_list_table(traces))


@app.command("show")
def show(
    trace_id: Annotated[str, typer.Argument(help="A trace id, or a unique prefix of it.")],
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """One trace with every attempt and decision, in time order."""
    with cli_errors():
        store, _ = open_store(config, store_url)
        with store:
            trace = store.traces.get(trace_id)
    if trace is None:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error:[/red] no trace {escape(trace_id)!r}; find ids with `tether traces list`"
        )
        raise typer.Exit(1)
    if as_json:
        print_json(trace)
        return
    _show(Console(), trace)


@app.command("tail")
def tail(
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
    feature: FeatureOption = None,
    variant: VariantOption = None,
    degraded: DegradedOption = None,
    user: UserOption = None,
    last: Annotated[int, typer.Option("--last", min=0, help="Show this many first.")] = 10,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between polls.")
    ] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print the latest and exit.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Follow new traces as they are stored (Ctrl-C to stop)."""
    filters: dict[str, Any] = {
        "feature": feature,
        "variant": variant,
        "degraded": degraded,
        "user": user,
    }
    console = Console(highlight=False, soft_wrap=True)

    def emit(traces: list[TraceDict]) -> None:
        for trace in traces:
            if as_json:
                typer.echo(json.dumps(trace, default=str))
            else:
                console.print(_tail_line(trace))

    with cli_errors():
        store, _ = open_store(config, store_url)
        with store:
            cursor = store.traces.latest_cursor()
            if last:
                backlog = store.traces.tail(None, limit=last, **filters)
                emit([t for t in backlog if t["cursor"] <= cursor])
            if once:
                return
            try:
                while True:
                    time.sleep(interval)
                    fresh = store.traces.tail(cursor, **filters)
                    emit(fresh)
                    if fresh:
                        cursor = fresh[-1]["cursor"]
            except KeyboardInterrupt:
                return
