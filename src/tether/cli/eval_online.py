"""``tether eval online``: online evaluation results of stored traces, per feature, variant and
scorer (what ``evals.online`` scored on sampled live calls; :mod:`tether.evals.online`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tether.cli.app import ConfigOption
from tether.cli.traces import (
    SinceOption,
    StoreUrlOption,
    cli_errors,
    open_store,
    print_json,
    since_option,
)
from tether.evals.online import OnlineScores, stored_scores


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _mean(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def online_table(scores: OnlineScores) -> Table:
    """One row per feature, variant and scorer: scored calls, pass rate, mean score, errors."""
    table = Table(title="online evaluation", title_justify="left")
    for column in ("feature", "variant", "scorer"):
        table.add_column(column)
    for column in ("scored", "pass rate", "mean score", "errors"):
        table.add_column(column, justify="right")
    for (feature, variant, scorer), stats in sorted(scores.by_key.items()):
        table.add_row(
            feature,
            variant,
            scorer,
            str(stats.count),
            _rate(stats.pass_rate),
            _mean(stats.mean),
            str(stats.errors) if stats.errors else "",
        )
    return table


def online(
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
    feature: Annotated[
        str | None, typer.Option("--feature", "-f", help="Only this feature.")
    ] = None,
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Online evaluation of stored traces: per feature, variant and scorer, how many sampled
    calls were scored, the pass rate, the mean score and scorer errors (features declare it
    with evals.online: {sample, scorers})."""
    started_after = since_option(since)
    with cli_errors():
        store, _ = open_store(config, store_url)
        with store:
            scores = stored_scores(store, feature=feature, since=started_after)
    if as_json:
        print_json(scores.to_dict())
        return
    console = Console()
    if not scores.by_key and not scores.dropped:
        console.print(
            "no online evaluation results: declare evals.online: {sample: 0.05, scorers: [...]} "
            "on a feature, then serve some calls"
        )
        return
    if scores.by_key:
        console.print(online_table(scores))
    for name, count in sorted(scores.dropped.items()):
        console.print(f"{name}: {count} sampled calls not scored (online evaluation was behind)")
