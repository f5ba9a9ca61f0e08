"""Reports of eval runs and comparisons: terminal tables (rich), JSON, JUnit XML for CI, and a
self-contained HTML file (:func:`write_html`, see :mod:`tether.evals.report_html`).

Every function takes results as an iterable and reads it once (``EvalStore.results`` streams
them from the store), so a report of 100,000 cases holds what it prints, not the run.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from tether.evals.report_text import assert_lines, p_text, percent, short, summary_rows, usd
from tether.evals.types import CaseResult, EvalRun

if TYPE_CHECKING:
    from tether.evals.compare import Comparison

_XML_INVALID = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def write_html(
    path: str | Path,
    run: EvalRun,
    results: Iterable[CaseResult],
    comparison: Comparison | None = None,
) -> Path:
    """Write one self-contained HTML report of ``run`` (and of ``comparison``, whose run B is
    usually ``run``) to ``path``; returns the path. See :mod:`tether.evals.report_html`."""
    from tether.evals.report_html import write_html as write

    return write(path, run, results, comparison)


# ------------------------------------------------------------------ terminal


def run_table(run: EvalRun) -> Table:
    """A run's summary: identity, pass rate, scores per scorer, cost, latency, the gate."""
    table = Table(title=f"eval run {run.id}", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for label, value in summary_rows(run):
        text = escape(value)
        if label == "gate":
            text = f"[green]{text}[/]" if value == "passed" else f"[red]{text}[/]"
        table.add_row(label, text)
    scorers: Mapping[str, Mapping[str, Any]] = run.summary.get("scorers") or {}
    for name, stats in scorers.items():
        table.add_row(
            f"  {escape(name)}",
            f"mean {float(stats.get('mean', 0)):.3f}, pass {percent(stats.get('pass_rate'))}",
        )
    return table


def cases_table(results: Iterable[CaseResult], *, limit: int | None = None) -> Table:
    """One row per case and repeat: row index, passed, score, each assert's result and reason,
    the answer (or the error), cost and latency. ``limit`` caps the rows shown."""
    table = Table(title="cases", title_justify="left", show_lines=True)
    for name, justify in (("#", "right"), ("rep", "right"), ("ok", "center")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("score", justify="right")
    table.add_column("asserts")
    table.add_column("output", overflow="fold")
    table.add_column("cost", justify="right")
    table.add_column("ms", justify="right")
    shown = total = 0
    for result in results:
        total += 1
        if limit is not None and shown >= limit:
            continue
        shown += 1
        out = result.output
        text = escape(short(out.text))
        if out.error:
            text = f"[red]error: {escape(short(out.error))}[/]"
        elif out.degraded:
            text = f"[yellow]degraded ({escape(str(out.reason))})[/] {text}"
        table.add_row(
            str(result.index),
            str(result.repeat),
            "[green]pass[/]" if result.passed else "[red]FAIL[/]",
            f"{result.score:.2f}",
            "\n".join(assert_lines(result)) or "-",
            text,
            usd(out.cost_usd),
            f"{out.latency_ms:.0f}",
        )
    if total > shown:
        table.caption = f"{shown} of {total} shown"
    return table


def comparison_table(comparison: Comparison) -> Table:
    """The statistics of a comparison and its verdict."""
    c = comparison
    table = Table(
        title=f"compare {c.run_a.id} (A) -> {c.run_b.id} (B)",
        title_justify="left",
        show_header=False,
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    for label, run in (("A", c.run_a), ("B", c.run_b)):
        table.add_row(
            f"run {label}",
            escape(f"{run.id}: {run.feature} variant {run.variant}, config {run.config_version}"),
        )
    table.add_row("dataset", escape(f"{c.run_a.dataset_path} (id {c.run_a.dataset_id})"))
    table.add_row("pairs", str(c.pairs))
    if c.excluded:
        table.add_row("excluded (flaky)", ", ".join(str(i) for i in c.excluded))
    table.add_row("pass rate", f"{percent(c.pass_rate_a)} -> {percent(c.pass_rate_b)}")
    m = c.mcnemar
    table.add_row(
        "pass/fail",
        f"{m.regressions} regression(s), {m.improvements} improvement(s); "
        f"McNemar exact p={p_text(m.p_value)}",
    )
    s = c.score
    ci = "-" if s.ci is None else f"[{s.ci[0]:+.3f}, {s.ci[1]:+.3f}]"
    table.add_row(
        "score",
        f"{s.mean_a:.3f} -> {s.mean_b:.3f} (delta {s.mean_delta:+.3f}, "
        f"{1 - c.alpha:.0%} CI {ci}); Wilcoxon p={p_text(s.p_value)}",
    )
    color = {"regressed": "red", "improved": "green"}.get(c.verdict, "white")
    table.add_row(
        "verdict",
        f"[bold {color}]{c.verdict}[/] ({c.decided_by} p={p_text(c.p_value)}; {escape(c.rule)})",
    )
    for note in c.notes:
        table.add_row("note", escape(note))
    return table


def changes_table(comparison: Comparison, *, limit: int = 20) -> Table:
    """The changed items: regressions first, then improvements, then score changes."""
    order = {"regression": 0, "improvement": 1, "score": 2}
    items = sorted(comparison.items, key=lambda item: (order[item.kind], item.delta, item.index))
    table = Table(title="changed items", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("change")
    table.add_column("score", justify="right")
    table.add_column("A", overflow="fold")
    table.add_column("B", overflow="fold")
    for item in items[:limit]:
        color = {"regression": "red", "improvement": "green"}.get(item.kind, "yellow")
        table.add_row(
            str(item.index),
            f"[{color}]{item.kind}[/]",
            f"{item.score_a:.2f} -> {item.score_b:.2f}",
            escape(short(item.error_a or item.output_a, 100)),
            escape(short(item.error_b or item.output_b, 100)),
        )
    if comparison.changed > min(limit, len(items)):
        table.caption = (
            f"{min(limit, len(items))} of {comparison.changed} shown (--json lists more)"
        )
    return table


# ------------------------------------------------------------------ JSON


def run_json(run: EvalRun, results: Iterable[CaseResult]) -> dict[str, Any]:
    """``run.to_dict()`` with every result under ``results`` (in memory: prefer
    :func:`write_json` for large runs)."""
    return {**run.to_dict(), "results": [result.to_dict() for result in results]}


def write_json(path: str | Path, run: EvalRun, results: Iterable[CaseResult]) -> Path:
    """Write :func:`run_json`'s document to ``path`` one result at a time."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps(run.to_dict(), ensure_ascii=False, default=str)
    with target.open("w", encoding="utf-8") as out:
        out.write(head[:-1] + ', "results": [')  # the run's object, left open
        for i, result in enumerate(results):
            out.write(",\n" if i else "\n")
            out.write(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
        out.write("\n]}\n")
    return target


# ------------------------------------------------------------------ JUnit


def _xml_text(value: Any) -> str:
    """Text XML 1.0 can carry (control characters from a model's answer are replaced)."""
    return _XML_INVALID.sub("\ufffd", str(value))


def _case_name(result: CaseResult, repeats: bool) -> str:
    name = f"row {result.index}"
    if repeats:
        name += f" repeat {result.repeat}"
    if result.vars:
        first = next(iter(result.vars.items()))
        name += f": {first[0]}={short(str(first[1]), 60)}"
    return _xml_text(name)


def _testcase(result: CaseResult, classname: str, repeats: bool) -> tuple[ET.Element, bool]:
    case = ET.Element(
        "testcase",
        classname=classname,
        name=_case_name(result, repeats),
        time=f"{result.output.latency_ms / 1000:.3f}",
    )
    if not result.passed:
        failed = [s for s in result.scores if not s.passed]
        message = "; ".join(
            f"{s.name}: {short(s.reason, 200)}" if s.reason else s.name for s in failed
        )
        if result.output.error:
            message = f"call failed: {short(result.output.error, 200)}" + (
                f"; {message}" if message else ""
            )
        failure = ET.SubElement(
            case, "failure", message=_xml_text(message or "failed"), type="eval"
        )
        body = [f"score {result.score:.3f}", *assert_lines(result, markup=False)]
        if result.output.error:
            body.append(f"error: {result.output.error}")
        body.append(f"output: {result.output.text}")
        failure.text = _xml_text("\n".join(body))
    out = ET.SubElement(case, "system-out")
    out.text = _xml_text(result.output.text)
    return case, not result.passed


def junit_xml(run: EvalRun, results: Iterable[CaseResult]) -> str:
    """JUnit XML for CI: one testsuite for the run, one testcase per (row, repeat), a
    ``<failure>`` naming the failed asserts and their reasons."""
    classname = _xml_text(f"tether.eval.{run.feature}.{run.variant}")
    suite = ET.Element(
        "testsuite",
        name=_xml_text(f"{run.feature} [{run.variant}] {run.id}"),
        timestamp=run.started_at.isoformat(timespec="seconds"),
    )
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "feature", "variant", "config_version", "dataset_id", "dataset_path"):
        ET.SubElement(props, "property", name=key, value=_xml_text(run.to_dict()[key]))
    tests = failures = 0
    seconds = 0.0
    for result in results:
        case, failed = _testcase(result, classname, run.repeat > 1)
        suite.append(case)
        tests += 1
        failures += failed
        seconds += result.output.latency_ms / 1000
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suite.set("time", f"{seconds:.3f}")
    root = ET.Element(
        "testsuites", name="tether eval", tests=str(tests), failures=str(failures), errors="0"
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, run: EvalRun, results: Iterable[CaseResult]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(junit_xml(run, results), encoding="utf-8")
    return target
