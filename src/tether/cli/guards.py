"""``tether guards``: run one guard over JSONL on stdin (``scan``) or over a labelled dataset
(``eval``: balanced accuracy, TPR, FPR overall and per category, p50/p99 latency)."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from tether.cli.app import App
from tether.config.guards import PII_TYPES, GuardSpec
from tether.errors import TetherError
from tether.guards.base import Guard, GuardContext, Stage, Verdict
from tether.guards.evaluation import Confusion, EvalReport, evaluate, read_rows
from tether.guards.registry import as_verdict, build_guard

app = App(help="Run guards on text: scan JSONL from stdin, or evaluate on a dataset.")

GuardArg = Annotated[
    str, typer.Argument(help="pii, prompt_injection, secrets, json_schema, system_prompt_leak, "
                             "topics, banned, max_length, or module:function")
]  # fmt: skip
OptionsOpt = Annotated[
    str | None,
    typer.Option("--options", "-o", help="guard settings as JSON, e.g. '{\"threshold\": 0.8}'"),
]
ThresholdOpt = Annotated[float | None, typer.Option(help="score threshold (prompt_injection)")]
StageOpt = Annotated[str, typer.Option(help="input or output")]


def make_guard(name: str, options: str | None, threshold: float | None) -> Guard:
    try:
        settings: dict[str, Any] = json.loads(options) if options else {}
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--options is not JSON: {exc}") from None
    if threshold is not None:
        settings["threshold"] = threshold
    try:
        return build_guard(GuardSpec.model_validate({name: settings}))
    except ValidationError as exc:
        raise typer.BadParameter(f"guard {name}: {exc}") from None
    except TetherError as exc:
        raise typer.BadParameter(exc.message) from None


def run_check(guard: Guard, text: str, ctx: GuardContext) -> Verdict:
    result = guard.check(text, ctx)
    if inspect.isawaitable(result):
        awaitable = result

        async def wait() -> Any:
            return await awaitable

        return as_verdict(asyncio.run(wait()))
    return as_verdict(result)


def scan_line(verdict: Verdict) -> dict[str, Any]:
    return {
        "flagged": not verdict.passed,
        "score": round(float(verdict.score), 4),
        "findings": [f.as_dict() for f in verdict.findings],
    }


@app.command()
def scan(
    guard: GuardArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines (default when piped)")
    ] = False,
    options: OptionsOpt = None,
    threshold: ThresholdOpt = None,
    stage: StageOpt = "input",
) -> None:
    """Read JSONL rows with a `text` field on stdin; write one verdict per row."""
    checker = make_guard(guard, options, threshold)
    ctx = GuardContext(stage="output" if stage == "output" else "input")
    console = Console()
    json_out = as_json or not sys.stdout.isatty()
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row["text"] if isinstance(row, dict) else None
        except json.JSONDecodeError:
            text = None
        if not isinstance(text, str):
            typer.echo(f"line {n}: expected a JSON object with a string 'text' field", err=True)
            raise typer.Exit(2)
        out = scan_line(run_check(checker, text, ctx))
        if json_out:
            typer.echo(json.dumps(out))
        else:
            mark = "[red]FLAG[/red]" if out["flagged"] else "[green]ok  [/green]"
            spans = " ".join(f"{f['type']}[{f['start']}:{f['end']}]" for f in out["findings"])
            console.print(f"{mark} {out['score']:.2f} {spans}", highlight=False)


def labelled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """presidio-style rows (full_text + spans) become {text, label, category}."""
    out = []
    for row in rows:
        if "text" in row:
            out.append(row)
            continue
        kinds = sorted({s["entity_type"] for s in row["spans"]} & set(PII_TYPES))
        out.append(
            {
                "text": row["full_text"],
                "label": int(bool(kinds)),
                "category": kinds[0] if kinds else "no_pii",
            }
        )
    return out


def read_dataset(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("[") and '"full_text"' in text[:2000]:
        return labelled(json.loads(text))
    return read_rows(path)


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def row_cells(name: str, c: Confusion) -> list[str]:
    return [name, str(c.n), rate(c.balanced_accuracy), rate(c.tpr), rate(c.fpr)]


def report_table(guard: str, report: EvalReport) -> Table:
    table = Table(title=f"{guard}: {report.overall.n} rows")
    for col in ("rows", "n", "balanced acc", "TPR", "FPR"):
        table.add_column(col, justify="left" if col == "rows" else "right")
    table.add_row(*row_cells("overall", report.overall), style="bold")
    table.add_row(*row_cells("without hard negatives", report.easy))
    table.add_row(*row_cells("hard negatives", report.hard_negatives))
    table.add_section()
    for cat, conf in sorted(report.by_category.items()):
        table.add_row(*row_cells(cat, conf))
    table.caption = f"latency p50 {report.p50_ms:.3f} ms, p99 {report.p99_ms:.3f} ms"
    return table


@app.command("eval")
def eval_(
    guard: GuardArg,
    dataset: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="JSONL rows")],
    options: OptionsOpt = None,
    threshold: ThresholdOpt = None,
    stage: StageOpt = "input",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Balanced accuracy, TPR, FPR (overall, per category, hard negatives apart), p50/p99."""
    checker = make_guard(guard, options, threshold)
    try:
        rows = read_dataset(dataset)
    except (ValueError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from None
    where: Stage = "output" if stage == "output" else "input"
    ctx = GuardContext(stage=where)
    checker.check("warm up", ctx)  # loads lazy resources outside the timing
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True, disable=as_json,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"{guard}", total=len(rows))
        report = evaluate(
            rows,
            lambda text: not run_check(checker, text, ctx).passed,
            progress=lambda: progress.advance(task),
        )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        Console().print(report_table(guard, report))
