"""Plain-text pieces every report shares (terminal, HTML, JUnit): numbers as text, one-line
answers, a run's summary as rows and a case's asserts as lines."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from tether.evals.types import CaseResult, EvalRun

OUTPUT_CHARS = 160  # an answer's length in a terminal table


def percent(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def usd(value: Any) -> str:
    return "-" if value is None else f"${float(value):.4f}"


def p_text(value: float) -> str:
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.2e}"


def short(text: str, limit: int = OUTPUT_CHARS) -> str:
    """One line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def summary_rows(run: EvalRun) -> list[tuple[str, str]]:
    """The run's identity and summary as (label, plain text) rows (terminal and HTML)."""
    s = run.summary
    rows = [
        ("run", run.id),
        ("feature", f"{run.feature} (variant {run.variant}, config {run.config_version})"),
        ("dataset", f"{run.dataset_path} (id {run.dataset_id})"),
        ("status", run.status),
        ("started", run.started_at.isoformat(timespec="seconds")),
        ("cases", f"{run.cases} x {run.repeat} repeat(s)" if run.repeat > 1 else str(run.cases)),
    ]
    if "pass_rate" in s:
        rows.append(
            ("pass rate", f"{percent(s['pass_rate'])} ({s.get('passed')}/{s.get('total')})")
        )
    if "score_mean" in s:
        rows.append(("mean score", f"{float(s['score_mean']):.3f}"))
    if "cost_usd" in s:
        rows.append(("cost (feature)", usd(s["cost_usd"])))
    judge = s.get("judge") or {}
    if judge.get("calls") or judge.get("cached"):
        rows.append(
            (
                "cost (judge)",
                f"{usd(judge.get('cost_usd'))}, {judge.get('calls', 0)} call(s), "
                f"{judge.get('cached', 0)} cached, "
                f"{judge.get('input_tokens', 0)}+{judge.get('output_tokens', 0)} tokens",
            )
        )
    latency = s.get("latency_ms") or {}
    if latency:
        rows.append(
            ("latency", f"p50 {latency.get('p50', 0):.0f} ms, p95 {latency.get('p95', 0):.0f} ms")
        )
    for key in ("errors", "degraded"):
        if s.get(key):
            rows.append((key, str(s[key])))
    if s.get("flaky"):
        rows.append(("flaky rows", ", ".join(str(i) for i in s["flaky"])))
    cache = s.get("model_cache") or {}
    if cache.get("hits") or cache.get("misses"):
        rows.append(
            ("model cache", f"{cache.get('hits', 0)} hit(s), {cache.get('misses', 0)} miss(es)")
        )
    gate = s.get("gate") or {}
    if gate.get("min_pass_rate") is not None or gate.get("min_score") is not None:
        verdict = (
            "passed" if gate.get("passed") else "FAILED: " + "; ".join(gate.get("failures", []))
        )
        rows.append(("gate", verdict))
    return rows


def assert_lines(result: CaseResult, markup: bool = True) -> list[str]:
    """Each score of a case on one line: a mark, the scorer's name and its reason."""
    lines = []
    for score in result.scores:
        mark = "✓" if score.passed else "✗"
        text = f"{score.name} {score.value:.2f}"
        if score.reason:
            text += f": {short(score.reason, 120)}"
        if markup:
            color = "green" if score.passed else "red"
            lines.append(f"[{color}]{mark}[/] {escape(text)}")
        else:
            lines.append(f"{mark} {text}")
    return lines
