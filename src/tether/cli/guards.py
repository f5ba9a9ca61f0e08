"""``tether guards``: run one guard over JSONL on stdin (``scan``) or over a labelled dataset
(``eval``: balanced accuracy, TPR, FPR overall, per source and per category, hard negatives apart,
p50/p99 latency, and warnings about entity types the guard does not detect)."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from tether.cli.app import App, load_settings
from tether.config.guards import GuardSpec
from tether.errors import TetherError
from tether.guards.base import Guard, GuardContext, Verdict, as_verdict
from tether.guards.evaluation import (
    Confusion,
    DatasetError,
    EvalReport,
    declared_types,
    evaluate,
    evaluate_concurrently,
    rate,
    read_rows,
)
from tether.guards.registry import GuardServices, build_guard

if TYPE_CHECKING:
    from tether.sdk import Tether

app = App(help="Run guards on text: scan JSONL from stdin, or evaluate on a dataset.")

GuardArg = Annotated[
    str, typer.Argument(help="pii, prompt_injection, secrets, json_schema, system_prompt_leak, "
                             "topics, banned, max_length, llm_judge, ensemble, or module:function")
]  # fmt: skip
OptionsOpt = Annotated[
    str | None,
    typer.Option("--options", "-o", help="guard settings as JSON, e.g. '{\"threshold\": 0.8}'"),
]
ThresholdOpt = Annotated[float | None, typer.Option(help="score threshold (prompt_injection)")]
StageOpt = Annotated[str, typer.Option(help="input or output")]


MODEL_GUARDS = ("llm_judge", "ensemble")  # guards that may ask a configured model
GuardConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        exists=True,
        dir_okay=False,
        help="a tether.yaml whose providers a guard that asks a model (llm_judge) uses",
    ),
]


def guard_settings(options: str | None, threshold: float | None) -> dict[str, Any]:
    try:
        settings = json.loads(options) if options else {}
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--options is not JSON: {exc}") from None
    if not isinstance(settings, dict):
        raise typer.BadParameter("--options must be a JSON object, e.g. '{\"threshold\": 0.8}'")
    if threshold is not None:
        settings["threshold"] = threshold
    return settings


def make_guard(
    name: str,
    options: str | None,
    threshold: float | None,
    services: GuardServices | None = None,
) -> Guard:
    try:
        spec = GuardSpec.model_validate({name: guard_settings(options, threshold)})
        return build_guard(spec, services)
    except ValidationError as exc:
        raise typer.BadParameter(f"guard {name}: {exc}") from None
    except TetherError as exc:
        hint = ""
        if services is None and name in MODEL_GUARDS:
            hint = "; here: pass --config tether.yaml to give it that file's providers"
        raise typer.BadParameter(exc.message + hint) from None


def open_tether(config: Path) -> Tether:
    from tether.sdk import Tether

    try:
        return Tether.from_config(config, store=False, settings=load_settings())
    except TetherError as exc:
        raise typer.BadParameter(exc.message, param_hint="--config") from None


@dataclass(slots=True)
class GuardSession:
    """A guard and the one event loop that all its checks of a command run on, so the clients
    an async guard opens on its first call stay usable for the next rows."""

    guard: Guard
    ctx: GuardContext
    loop: asyncio.Runner

    def check(self, text: str) -> Verdict:
        result = self.guard.check(text, self.ctx)
        if inspect.isawaitable(result):
            return as_verdict(self.loop.run(awaited(result)))
        return as_verdict(result)

    async def acheck(self, text: str) -> Verdict:
        result = self.guard.check(text, self.ctx)
        if inspect.isawaitable(result):
            result = await result
        return as_verdict(result)


@contextmanager
def guard_session(
    name: str, options: str | None, threshold: float | None, config: Path | None, stage: str
) -> Iterator[GuardSession]:
    """The guard ``name``, built with the providers of ``config`` when given (closed on the
    session's loop at the end)."""
    ctx = GuardContext(stage="output" if stage == "output" else "input")
    with asyncio.Runner() as loop:
        tether = None if config is None else open_tether(config)
        try:
            services = None if tether is None else tether.guard_services
            yield GuardSession(make_guard(name, options, threshold, services), ctx, loop)
        finally:
            if tether is not None:
                loop.run(tether.aclose())


async def awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


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
    config: GuardConfigOpt = None,
) -> None:
    """Read JSONL rows with a `text` field on stdin; write one verdict per row."""
    with guard_session(guard, options, threshold, config, stage) as session:
        scan_rows(session.check, as_json or not sys.stdout.isatty())


def scan_rows(check: Callable[[str], Verdict], json_out: bool) -> None:
    console = Console()
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
        out = scan_line(check(text))
        if json_out:
            typer.echo(json.dumps(out))
        else:
            mark = "[red]FLAG[/red]" if out["flagged"] else "[green]ok  [/green]"
            spans = " ".join(f"{f['type']}[{f['start']}:{f['end']}]" for f in out["findings"])
            console.print(f"{mark} {out['score']:.2f} {spans}", highlight=False)


def label_map_option(value: str | None) -> dict[str, int] | None:
    if not value:
        return None
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--label-map is not JSON: {exc}") from None
    if not isinstance(mapping, dict) or any(v not in (0, 1) for v in mapping.values()):
        raise typer.BadParameter(
            '--label-map maps label values to 0 or 1, e.g. \'{"jailbreak": 1, "benign": 0}\''
        )
    return {str(k): int(v) for k, v in mapping.items()}


def row_cells(name: str, c: Confusion) -> list[str]:
    return [escape(name), str(c.n), rate(c.balanced_accuracy), rate(c.tpr), rate(c.fpr)]


def heading(table: Table, title: str) -> None:
    table.add_section()
    table.add_row(f"[dim]{title}[/dim]")


def report_table(guard: str, report: EvalReport) -> Table:
    table = Table(title=f"{guard}: {report.overall.n} rows")
    for col in ("rows", "n", "balanced acc", "TPR", "FPR"):
        table.add_column(col, justify="left" if col == "rows" else "right")
    table.add_row(*row_cells("overall", report.overall), style="bold")
    table.add_row(*row_cells("without hard negatives", report.easy))
    table.add_row(*row_cells("hard negatives", report.hard_negatives))
    if report.uncovered_types:
        label = f"covered types only ({report.outside} rows left out)"
        table.add_row(*row_cells(label, report.covered), style="yellow")
    sources = report.sources()
    if sources:
        heading(table, "by source")
        for source, conf in sources.items():
            table.add_row(*row_cells(source, conf))
            hard = report.by_source_hard.get(source)
            if hard is not None and hard.n:
                table.add_row(*row_cells("  hard negatives", hard))
    heading(table, "by category")
    for cat, conf in sorted(report.by_category.items()):
        table.add_row(*row_cells(cat, conf))
    if report.by_type:
        heading(table, "by entity type (TPR: rows flagged)")
        for kind, count in sorted(report.by_type.items()):
            name = kind if report.covers(kind) else f"{kind} (not detected)"
            table.add_row(escape(name), str(count.rows), "-", rate(count.recall), "-")
    table.caption = f"latency p50 {report.p50_ms:.3f} ms, p99 {report.p99_ms:.3f} ms"
    return table


def run_eval(
    session: GuardSession, rows: list[dict[str, Any]], concurrency: int, advance: Callable[[], None]
) -> EvalReport:
    covered = declared_types(session.guard)
    if concurrency <= 1:
        return evaluate(rows, lambda text: not session.check(text).passed, advance, covered)

    async def flag(text: str) -> bool:
        return not (await session.acheck(text)).passed

    return session.loop.run(evaluate_concurrently(rows, flag, concurrency, advance, covered))


def coverage_fix(guard: str) -> str:
    if guard != "pii":
        return ""
    return (
        "`--options '{\"ner\": true}'` adds PERSON and LOCATION (presidio's GPE) through spaCy; "
        "the pii guard has no detector for the other types: remove their spans from the dataset "
        "to score it on what it covers."
    )


@app.command("eval")
def eval_(
    guard: GuardArg,
    dataset: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="labelled rows {text, label (1 flag / 0 pass), category?, source?, types?} as "
            "JSONL or a JSON list; presidio-research records work too",
        ),
    ],
    options: OptionsOpt = None,
    threshold: ThresholdOpt = None,
    stage: StageOpt = "input",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    label_map: Annotated[
        str | None,
        typer.Option(help='label values to 0/1 as JSON, e.g. \'{"jailbreak": 1, "benign": 0}\''),
    ] = None,
    config: GuardConfigOpt = None,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            help="checks in flight, for a guard that waits on a model (llm_judge, a model "
            "classifier); a row's latency then includes its wait for a batch",
        ),
    ] = 1,
) -> None:
    """Balanced accuracy, TPR, FPR (overall, per source, per category, hard negatives apart),
    p50/p99; warns about entity types in the dataset that the guard does not detect."""
    try:
        rows = read_rows(dataset, label_map_option(label_map))
    except DatasetError as exc:
        raise typer.BadParameter(str(exc), param_hint="--dataset") from None
    console = Console(stderr=True)
    with guard_session(guard, options, threshold, config, stage) as session, Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True, disable=as_json,
    ) as progress:  # fmt: skip
        session.check("warm up")  # loads lazy resources outside the timing
        task = progress.add_task(f"{guard}", total=len(rows))
        report = run_eval(session, rows, concurrency, lambda: progress.advance(task))
    warnings = report.warnings(guard, coverage_fix(guard))
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), "warnings": warnings}, indent=2))
    else:
        Console().print(report_table(guard, report))
