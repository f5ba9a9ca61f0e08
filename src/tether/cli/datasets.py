"""``tether datasets from-traces``: production traffic as an eval dataset; ``tether datasets
check``: load a dataset (or promptfoo config) as ``tether eval run`` would and summarise it.

    tether datasets from-traces --config tether.yaml --feature assistant \\
        --where degraded --where since=1d --limit 200 --out evals/degraded.jsonl

writes one JSONL row per stored trace that matches (newest first); ``tether eval run
assistant --dataset evals/degraded.jsonl`` runs them. The store is found as ``tether traces``
finds it (``--store-url``, ``$TETHER_STORE_URL``, else the config's ``store.url``).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tether.cli.app import App, ConfigOption
from tether.cli.traces import StoreUrlOption, cli_errors, open_store, print_json
from tether.config.models import FeatureConfig, TetherConfig
from tether.evals.datasets import load_dataset
from tether.evals.from_traces import (
    WHERE_FORMS,
    ExportStats,
    TraceFilter,
    export_rows,
    parse_where,
)

app = App(help="Build eval datasets (from stored traces).", no_args_is_help=True)


def _feature_config(config: TetherConfig | None, feature: str) -> FeatureConfig | None:
    if config is None:
        return None
    return config.features.get(feature)


@app.command("from-traces")
def from_traces(
    feature: Annotated[str, typer.Option("--feature", "-f", help="The feature whose traces.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The JSONL file to write.")],
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", "-w", help=f"A condition, repeatable (all hold): {WHERE_FORMS}."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="At most this many rows.")
    ] = None,
) -> None:
    """Write stored traces of a feature as dataset rows: what each call was asked (vars or its
    conversation), its answer as the reference, and where it came from (trace id, config
    version, variant)."""
    try:
        conditions = parse_where(where or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--where") from None
    err = Console(stderr=True, highlight=False)
    partial = out.with_name(f".{out.name}.partial")
    try:
        stats = _export(config, store_url, feature, conditions, partial, limit, err)
    except BaseException:
        partial.unlink(missing_ok=True)  # a failed export leaves no half-written file
        raise
    _finish(stats, partial, out, feature, err)


def _export(
    config: Path | None,
    store_url: str | None,
    feature: str,
    conditions: TraceFilter,
    partial: Path,
    limit: int | None,
    err: Console,
) -> ExportStats:
    with cli_errors():
        store, loaded = open_store(config, store_url)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with store, partial.open("w", encoding="utf-8") as handle, _progress(err) as progress:
            task = progress.add_task("reading traces", total=None)

            def advance(stats: ExportStats) -> None:
                progress.update(
                    task, description=f"{stats.written} rows from {stats.scanned} traces"
                )

            return export_rows(
                store.traces,
                feature,
                conditions,
                handle,
                config=_feature_config(loaded, feature),
                limit=limit,
                on_trace=advance,
            )


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _finish(stats: ExportStats, partial: Path, out: Path, feature: str, err: Console) -> None:
    skipped = f" (skipped {stats.skipped} without captured input)" if stats.skipped else ""
    if not stats.written:
        partial.unlink(missing_ok=True)
        hint = (
            "its feature keeps only metadata (trace: {capture: metadata}); use capture: full or "
            "redacted"
            if stats.skipped
            else "check --feature and the --where conditions (see `tether traces list`)"
        )
        err.print(
            f"[red]error:[/red] no stored trace of {escape(feature)!r} became a row{skipped}; "
            f"{escape(hint)}"
        )
        raise typer.Exit(1)
    os.replace(partial, out)
    err.print(f"wrote {stats.written} rows to {escape(str(out))}{skipped}")


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv, .yaml or promptfoo config.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Load a dataset as `tether eval run` does (every row and assert type checked) and say
    what it holds; exit non-zero naming the file, row and field of the first problem."""
    with cli_errors():
        data = load_dataset(file)
    asserts = dict(sorted(Counter(a.type for c in data.cases for a in c.asserts).items()))
    tags = Counter(tag for case in data.cases for tag in case.tags)
    summary: dict[str, Any] = {
        "path": data.path,
        "format": data.format,
        "dataset_id": data.id,
        "cases": len(data),
        "conversations": sum(case.messages is not None for case in data.cases),
        "asserts": asserts,
        "tags": dict(sorted(tags.items())),
    }
    if as_json:
        print_json(summary)
        return
    kinds = ", ".join(f"{name} x{count}" for name, count in asserts.items()) or "none"
    Console(highlight=False).print(
        f"[green]ok[/] {escape(data.path)}: {len(data)} cases ({data.format}), dataset id "
        f"{data.id}\n  asserts: {escape(kinds)}"
    )
