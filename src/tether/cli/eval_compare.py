"""``tether eval compare RUN_A RUN_B``: is run B significantly worse (or better) than run A?

Two stored runs compare when they used the same dataset, whatever feature, variant or config
produced them. The command pairs their items by dataset row, prints the statistics (McNemar's
exact test on pass/fail, a bootstrap confidence interval and Wilcoxon's test on scores), the
changed items and a verdict: ``regressed``, ``improved`` or ``no significant change``.
``--fail-on-regression`` exits 1 on ``regressed``: the CI gate of a pull request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tether.cli.app import ConfigOption
from tether.cli.traces import JsonOption, StoreUrlOption, cli_errors, open_store, print_json


def compare(
    run_a: Annotated[str, typer.Argument(help="The baseline run (id or unique prefix).")],
    run_b: Annotated[str, typer.Argument(help="The candidate run (id or unique prefix).")],
    fail_on_regression: Annotated[
        bool,
        typer.Option("--fail-on-regression", help="Exit 1 when the verdict is `regressed`."),
    ] = False,
    alpha: Annotated[
        float,
        typer.Option("--alpha", min=0.0001, max=0.5, help="The significance level."),
    ] = 0.05,
    as_json: JsonOption = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write report.html (B's cases, both runs' statistics, diffs of changed "
            "answers) and comparison.json to this folder.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Changed items shown in the terminal.")
    ] = 20,
    config: ConfigOption = None,
    store_url: StoreUrlOption = None,
) -> None:
    """Compare candidate run B with baseline run A on the same dataset: per-item deltas, p-values
    and a verdict (regressed / improved / no significant change).

    Examples: `tether eval compare ev_3f2a ev_9c1d`,
    `tether eval compare ev_3f2a ev_9c1d --fail-on-regression --out eval-report`
    """
    from tether.evals.compare import compare as compare_runs
    from tether.evals.report import changes_table, comparison_table, write_html

    with cli_errors():
        store, _ = open_store(config, store_url)
        try:
            first = store.evals.get_run(run_a)
            second = store.evals.get_run(run_b)
            result = compare_runs(
                first,
                store.evals.results(first.id),
                second,
                store.evals.results(second.id),
                alpha=alpha,
            )
            if out is not None:
                report = write_html(
                    out / "report.html", second, store.evals.results(second.id), result
                )
                (out / "comparison.json").write_text(_json_text(result.to_dict()), encoding="utf-8")
        finally:
            store.close()
    if as_json:
        print_json(result.to_dict())
    else:
        console = Console(highlight=False)
        console.print(comparison_table(result))
        if result.items and limit:
            console.print(changes_table(result, limit=limit))
        if out is not None:
            console.print(f"report: {report}")
    if fail_on_regression and result.regressed:
        Console(stderr=True, soft_wrap=True, highlight=False).print(
            f"[red]regressed[/red]: {second.id} is significantly worse than {first.id} "
            f"({result.decided_by} p={result.p_value:.3g} < {alpha:g})"
        )
        raise typer.Exit(1)


def _json_text(value: object) -> str:
    import json

    return json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n"
