"""``tether eval run|list|show|compare|online``: measure a feature on a dataset, keep every run,
compare runs.

``run`` calls the feature (or one of its variants) on every dataset row through its full
pipeline, scores each answer, stores the run and its results, and exits non-zero when the gate
fails. ``list`` and ``show`` read stored runs; ``compare`` (:mod:`tether.cli.eval_compare`)
tells whether one run is significantly worse or better than another on the same dataset;
``online`` (:mod:`tether.cli.eval_online`) shows the scores of sampled live traffic.

The store comes from ``--store-url``, else ``$TETHER_STORE_URL``, else the config's
``store.url`` (as for ``tether traces``). Exit codes: 0 ok, 1 a gate failed (or a regression
with ``--fail-on-regression``), 2 a usage, config or dataset error (the message names the
file, the row and the field).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from tether.cli.app import App, ConfigOption
from tether.cli.eval_compare import compare
from tether.cli.eval_online import online
from tether.cli.traces import JsonOption, StoreUrlOption, cli_errors, open_store, print_json
from tether.errors import EvalRunNotFound, InvalidRequest
from tether.evals.types import CaseResult, EvalRun
from tether.settings import Settings

if TYPE_CHECKING:
    from tether.evals.compare import Comparison
    from tether.evals.modelcache import ModelCache
    from tether.evals.runner import RunSettings, Tally
    from tether.evals.types import Assertion, Dataset
    from tether.sdk import Tether
    from tether.store.store import Store

app = App(
    help="Evaluate features on datasets; compare runs.",
    no_args_is_help=True,
)


# ------------------------------------------------------------------ progress


class BarProgress:
    """A rich progress bar on stderr: rows done, rows/s, pass rate and cost so far, and a note
    while a rate limit is waited out."""

    def __init__(self, console: Console, total: int, label: str) -> None:
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("[yellow]{task.fields[note]}"),
            console=console,
        )
        self._task = self._bar.add_task(escape(label), total=total, stats="", note="")

    def update(self, tally: Tally) -> None:
        cost = tally.cost_usd + tally.judge.cost_usd
        stats = f"{tally.rate:.1f} rows/s  pass {tally.pass_rate:.1%}  ${cost:.4f}"
        self._bar.update(self._task, completed=tally.total, stats=stats)

    def note(self, text: str) -> None:
        self._bar.update(self._task, note=escape(text))

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()


# ------------------------------------------------------------------ run


@dataclass(slots=True)
class Plan:
    """What ``eval run`` was asked to do, resolved against the config."""

    feature: str
    config_path: Path
    settings: Settings
    dataset_flag: Path | None
    scorer_flags: list[str]
    run_settings: RunSettings
    model_cache: bool
    baseline: str | None
    alpha: float
    show_progress: bool


@dataclass(slots=True)
class Outcome:
    run: EvalRun
    baseline: EvalRun | None = None
    comparison: Comparison | None = None


def _dataset_path(tether: Tether, plan: Plan) -> Path:
    if plan.dataset_flag is not None:
        return plan.dataset_flag
    declared = tether.pipeline.feature(plan.feature).config.evals.dataset
    if declared is None:
        raise InvalidRequest(
            f"feature {plan.feature!r} declares no evals.dataset; pass --dataset FILE or set "
            f"features.{plan.feature}.evals.dataset in {plan.config_path}",
            param="dataset",
        )
    return plan.config_path.resolve().parent / declared


def _scorers(tether: Tether, plan: Plan) -> list[Assertion]:
    from tether.evals.scorers.registry import assertions, parse_scorer

    declared = tether.pipeline.feature(plan.feature).config.evals.scorers
    return [*assertions(declared), *(parse_scorer(flag) for flag in plan.scorer_flags)]


def _with_gate(tether: Tether, plan: Plan) -> None:
    gate = tether.pipeline.feature(plan.feature).config.evals.gate
    settings = plan.run_settings
    if settings.min_pass_rate is None:
        settings.min_pass_rate = gate.min_pass_rate
    if settings.min_score is None:
        settings.min_score = gate.min_score


async def _one_run(
    tether: Tether,
    plan: Plan,
    dataset: Dataset,
    store: Store,
    run_settings: RunSettings,
    cache: ModelCache | None,
) -> EvalRun:
    from tether.evals.runner import EvalRunner, scoring_context

    cache_dir = plan.config_path.resolve().parent / ".tether"
    context = scoring_context(tether, plan.feature, dataset, cache_dir)
    runner = EvalRunner(
        tether,
        plan.feature,
        dataset,
        store=store.evals,
        settings=run_settings,
        context=context,
        model_cache=cache,
    )
    if not plan.show_progress:
        return await runner.run()
    label = f"{plan.feature}/{runner.variant}"
    with BarProgress(Console(stderr=True), len(dataset) * run_settings.repeat, label) as bar:
        runner.progress = bar
        return await runner.run()


def _is_variant(tether: Tether, feature: str, name: str) -> bool:
    compiled = tether.pipeline.feature(feature)
    return name == "default" or name in compiled.variants


async def _evaluate(plan: Plan, store: Store) -> Outcome:
    from dataclasses import replace

    from tether.evals.datasets import load_dataset
    from tether.evals.modelcache import ModelCache
    from tether.sdk import Tether

    cache = ModelCache.in_dir(plan.config_path.resolve().parent / ".tether")
    wrappers = [cache.wrap] if plan.model_cache else []
    used_cache = cache if plan.model_cache else None
    try:
        tether = Tether.from_config(plan.config_path, settings=plan.settings, wrappers=wrappers)
        async with tether:
            tether.pipeline.feature(plan.feature).variant(
                plan.run_settings.variant or "default", strict=True
            )
            dataset = load_dataset(_dataset_path(tether, plan))
            plan.run_settings.scorers = _scorers(tether, plan)
            _with_gate(tether, plan)
            baseline: EvalRun | None = None
            if plan.baseline is not None and _is_variant(tether, plan.feature, plan.baseline):
                own = replace(plan.run_settings, variant=plan.baseline)
                baseline = await _one_run(tether, plan, dataset, store, own, used_cache)
            elif plan.baseline is not None:
                baseline = _stored_baseline(store, plan, tether)
            run = await _one_run(tether, plan, dataset, store, plan.run_settings, used_cache)
    finally:
        cache.close()
    outcome = Outcome(run, baseline)
    if baseline is not None:
        from tether.evals.compare import compare as compare_runs

        outcome.comparison = compare_runs(
            baseline,
            store.evals.results(baseline.id),
            run,
            store.evals.results(run.id),
            alpha=plan.alpha,
        )
    return outcome


def _stored_baseline(store: Store, plan: Plan, tether: Tether) -> EvalRun:
    assert plan.baseline is not None
    try:
        return store.evals.get_run(plan.baseline)
    except EvalRunNotFound:
        declared = ", ".join(["default", *tether.pipeline.feature(plan.feature).variants])
        raise EvalRunNotFound(
            f"--baseline {plan.baseline!r} is neither a variant of feature {plan.feature!r} "
            f"(declared: {declared}) nor a stored eval run; see `tether eval list`",
            param="baseline",
        ) from None


def _write_out(directory: Path, store: Store, outcome: Outcome) -> None:
    """results.json, report.html and junit.xml of the run, each read back from the store a
    batch at a time."""
    from tether.evals import report

    run = outcome.run
    directory.mkdir(parents=True, exist_ok=True)
    report.write_json(directory / "results.json", run, store.evals.results(run.id))
    html = directory / "report.html"
    report.write_html(html, run, store.evals.results(run.id), outcome.comparison)
    report.write_junit(directory / "junit.xml", run, store.evals.results(run.id))


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    data = outcome.run.to_dict()
    if outcome.baseline is not None:
        data["baseline"] = outcome.baseline.to_dict()
    if outcome.comparison is not None:
        data["comparison"] = outcome.comparison.to_dict()
    return data


def _print_outcome(outcome: Outcome) -> None:
    from tether.evals.report import comparison_table, run_table

    console = Console(highlight=False)
    run = outcome.run
    if outcome.baseline is not None:
        console.print(run_table(outcome.baseline))
    console.print(run_table(run))
    failed = run.summary.get("total", 0) - run.summary.get("passed", 0)
    if failed:
        console.print(f"{failed} failed: [bold]tether eval show {run.id} --failed[/bold]")
    if run.summary.get("flaky"):
        console.print(f"[yellow]flaky[/yellow] rows: {_rows(run.summary['flaky'])}")
    if outcome.comparison is not None:
        console.print(comparison_table(outcome.comparison))


def _gate_messages(outcome: Outcome, fail_on_regression: bool) -> list[str]:
    gate = outcome.run.summary.get("gate") or {}
    failures = [f"gate failed: {failure}" for failure in gate.get("failures", [])]
    comparison = outcome.comparison
    if fail_on_regression and comparison is not None and comparison.verdict == "regressed":
        failures.append(
            f"regression against {comparison.run_a.id} ({comparison.run_a.variant}): "
            f"p={comparison.p_value:.3g} by {comparison.decided_by} (--fail-on-regression)"
        )
    return failures


DatasetOption = Annotated[
    Path | None,
    typer.Option(
        "--dataset",
        "-d",
        help="JSONL, CSV or YAML rows, or a promptfoo config (default: the feature's "
        "evals.dataset).",
        show_default=False,
    ),
]
VariantOption = Annotated[str | None, typer.Option(help="Run this declared variant.")]
ScorerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--scorer",
        "-s",
        help="A scorer for every row, NAME[:ARG]: contains:paris, is-json, "
        "llm-rubric:'Is polite', my.module:function (repeatable).",
    ),
]
RepeatOption = Annotated[int, typer.Option(min=1, help="Run each row N times; name flaky rows.")]
ConcurrencyOption = Annotated[int, typer.Option(min=1, help="Rows in flight at once.")]
MinPassRateOption = Annotated[
    float | None,
    typer.Option(min=0.0, max=1.0, help="Exit 1 below this pass rate (default: evals.gate)."),
]
ModelCacheOption = Annotated[
    bool,
    typer.Option(
        "--model-cache",
        help="Reuse cached model answers (.tether/model-cache.sqlite): a re-run of unchanged "
        "rows makes no model calls and costs nothing.",
    ),
]
RunJsonOption = Annotated[
    bool, typer.Option("--json", help="Print the run's summary as JSON (no progress bar).")
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        help="Write results.json, report.html and junit.xml to this folder.", show_default=False
    ),
]
BaselineOption = Annotated[
    str | None,
    typer.Option(
        help="Compare with this stored run id, or run this variant on the same dataset first "
        "and compare with it.",
        show_default=False,
    ),
]
FailOnRegressionOption = Annotated[
    bool,
    typer.Option(
        "--fail-on-regression", help="Exit 1 when the comparison with --baseline says regressed."
    ),
]
AlphaOption = Annotated[
    float, typer.Option(min=0.0001, max=0.5, help="Significance level of the comparison.")
]


def _report(outcome: Outcome, as_json: bool, fail_on_regression: bool) -> None:
    """Print the outcome; exit 1 when a gate failed or a regression must fail the run."""
    if as_json:
        print_json(_outcome_json(outcome))
    else:
        _print_outcome(outcome)
    failures = _gate_messages(outcome, fail_on_regression)
    if failures:
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        for failure in failures:
            err.print(f"[red]{escape(failure)}[/red]")
        raise typer.Exit(1)


@app.command("run")
def run_command(
    feature: Annotated[str, typer.Argument(metavar="FEATURE", help="The feature to evaluate.")],
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    variant: VariantOption = None,
    scorer: ScorerOption = None,
    repeat: RepeatOption = 1,
    concurrency: ConcurrencyOption = 8,
    min_pass_rate: MinPassRateOption = None,
    model_cache: ModelCacheOption = False,
    as_json: RunJsonOption = False,
    out: OutOption = None,
    baseline: BaselineOption = None,
    fail_on_regression: FailOnRegressionOption = False,
    alpha: AlphaOption = 0.05,
    store_url: StoreUrlOption = None,
) -> None:
    """Run FEATURE on every dataset row through its full pipeline, score the answers, store
    the run, and exit 1 when the gate fails.

    Examples:

      tether eval run assistant --dataset evals/assistant.jsonl --scorer icontains:paris

      tether eval run assistant --variant candidate --baseline default --fail-on-regression

      tether eval run assistant --repeat 3 --min-pass-rate 0.9 --json --out eval-report/
    """
    from tether.evals.runner import RunSettings

    settings = Settings.load()
    if store_url:
        settings = settings.model_copy(update={"store_url": store_url})
    plan = Plan(
        feature=feature,
        config_path=settings.config_path(config),
        settings=settings,
        dataset_flag=dataset,
        scorer_flags=list(scorer or []),
        run_settings=RunSettings(
            variant=variant, repeat=repeat, concurrency=concurrency, min_pass_rate=min_pass_rate
        ),
        model_cache=model_cache,
        baseline=baseline,
        alpha=alpha,
        show_progress=not as_json and sys.stderr.isatty(),
    )
    with cli_errors():
        store, _ = open_store(config, store_url)
        try:
            outcome = asyncio.run(_evaluate(plan, store))
            if out is not None:
                _write_out(out, store, outcome)
        finally:
            store.close()
    _report(outcome, as_json, fail_on_regression)


# ------------------------------------------------------------------ list and show


def _rows(indexes: Iterable[int], limit: int = 20) -> str:
    shown = list(indexes)
    text = ", ".join(str(i) for i in shown[:limit])
    return text + (f" (+{len(shown) - limit} more)" if len(shown) > limit else "")


def _pass_rate(run: EvalRun) -> str:
    rate = run.summary.get("pass_rate")
    return "-" if rate is None else f"{rate:.1%}"


def _list_table(runs: list[EvalRun]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, collapse_padding=True)
    for name in ("started", "id", "feature", "dataset", "rows", "status", "pass", "score", "$"):
        right = name in {"rows", "pass", "score", "$"}
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    for run in runs:
        score = run.summary.get("score_mean")
        cost = run.summary.get("cost_usd", 0.0) + run.summary.get("judge", {}).get("cost_usd", 0)
        name = run.feature if run.variant == "default" else f"{run.feature}/{run.variant}"
        table.add_row(
            run.started_at.astimezone().strftime("%m-%d %H:%M"),
            f"[cyan]{run.id}[/cyan]",
            escape(name),
            escape(Path(run.dataset_path).name),
            f"{run.cases}" + (f"x{run.repeat}" if run.repeat > 1 else ""),
            escape(run.status),
            _pass_rate(run),
            "-" if score is None else f"{score:.3f}",
            f"{cost:.4f}",
        )
    return table


@app.command("list")
def list_command(
    feature: Annotated[
        str | None, typer.Option("--feature", "-f", help="Only this feature.")
    ] = None,
    dataset_id: Annotated[
        str | None, typer.Option("--dataset-id", help="Only runs on this dataset (its hash).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs.")] = 50,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
) -> None:
    """Stored eval runs, newest first, e.g. `tether eval list --feature assistant`."""
    with cli_errors():
        store, _ = open_store(config, store_url)
        try:
            runs = store.evals.list_runs(feature=feature, dataset_id=dataset_id, limit=limit)
        finally:
            store.close()
    if as_json:
        print_json([run.to_dict() for run in runs])
    elif not runs:
        Console(stderr=True).print("no eval runs stored yet; start one with `tether eval run`")
    else:
        Console(highlight=False).print(_list_table(runs))


def _stream_json(run: EvalRun, results: Iterable[CaseResult]) -> None:
    """The run and every result as one JSON object, written a result at a time."""
    head = json.dumps(run.to_dict(), default=str)
    write = sys.stdout.write
    write(head[:-1] + ', "results": [')
    for n, result in enumerate(results):
        write(("," if n else "") + "\n  " + json.dumps(result.to_dict(), default=str))
    write("\n]}\n")


@app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id or unique prefix.")],
    as_json: JsonOption = False,
    failed: Annotated[bool, typer.Option("--failed", help="Only the failed cases.")] = False,
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
) -> None:
    """One run: its summary, then every case with its row index, repeat, passed, score, each
    assert's result and reason, the answer, cost and latency.

    Examples: `tether eval show ev_3f2a`, `tether eval show ev_3f2a --failed`,
    `tether eval show ev_3f2a --json | jq '.results[] | select(.passed | not)'`
    """
    from tether.evals.report import cases_table, run_table

    with cli_errors():
        store, _ = open_store(config, store_url)
        try:
            run = store.evals.get_run(run_id)
            results = store.evals.results(run.id, failed=failed)
            if as_json:
                _stream_json(run, results)
                return
            console = Console(highlight=False)
            console.print(Group(run_table(run), cases_table(results)))
        finally:
            store.close()


app.command("compare")(compare)
app.command("online")(online)
