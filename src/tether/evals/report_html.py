"""The HTML report of a run (and of a comparison): one self-contained file.

Charts are drawn by matplotlib (imported here only, no pyplot state) as SVG inlined in the page;
CSS and the one small script are inlined too: the file references no URL and opens offline.
Every text that comes from a dataset or a model is HTML-escaped.

Sections: the run's summary and gate, per-scorer results, charts of score distributions, a
per-tag breakdown, with a comparison its statistics and side-by-side word diffs of the changed
items' answers, then the cases (failed first, capped).
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from tether.evals.report_text import assert_lines, p_text, percent, summary_rows
from tether.evals.types import CaseResult, EvalRun

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tether.evals.compare import Comparison, ItemChange

MAX_FAILED_ROWS = 500
MAX_PASSED_ROWS = 200
MAX_CHANGED_ITEMS = 200
MAX_TEXT = 4000  # characters of an answer shown (and diffed)
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")
_SVG_START = re.compile(r"<svg\b")
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SVG_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')  # HTML's parser knows SVG's namespaces

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:#5b6475;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}.card span{color:#5b6475;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%;margin:6px 0}
th,td{border:1px solid #dde1e8;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pass{color:#17803d}.fail{color:#c0262d}.warn{color:#a46200}
.verdict{font-size:18px;font-weight:700;padding:10px 14px;border-radius:8px;margin:8px 0;
display:inline-block}
.v-regressed{background:#fde8e8;color:#a11c22}.v-improved{background:#e3f6e9;color:#17803d}
.v-none{background:#eef1f5;color:#1d2330}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:6px}
.chart svg{display:block;max-width:100%;height:auto}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12.5px/1.4 ui-monospace,Menlo,
Consolas,monospace}
.diff{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.diff pre{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:8px}
del{background:#fbd3d3;text-decoration:line-through}ins{background:#c9efd5;text-decoration:none}
.item{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:10px;margin:10px 0}
.muted{color:#5b6475}
ul.asserts{margin:0;padding-left:16px}
"""

SCRIPT = """
document.getElementById('failed-only').addEventListener('change', function (e) {
  document.querySelectorAll('tr.case-pass').forEach(function (row) {
    row.style.display = e.target.checked ? 'none' : '';
  });
});
"""


@dataclass(slots=True)
class _Tally:
    n: int = 0
    passed: int = 0
    score_sum: float = 0.0

    def add(self, passed: bool, score: float) -> None:
        self.n += 1
        self.passed += int(passed)
        self.score_sum += score

    @property
    def pass_rate(self) -> float:
        return self.passed / self.n if self.n else 0.0

    @property
    def mean(self) -> float:
        return self.score_sum / self.n if self.n else 0.0


@dataclass(slots=True)
class _Collected:
    """What the page needs from the results, gathered in one pass."""

    scores: list[float] = field(default_factory=list)
    overall: _Tally = field(default_factory=_Tally)
    tags: dict[str, _Tally] = field(default_factory=dict)
    scorers: dict[str, _Tally] = field(default_factory=dict)
    failed: list[CaseResult] = field(default_factory=list)
    passed: list[CaseResult] = field(default_factory=list)

    def add(self, result: CaseResult) -> None:
        self.scores.append(result.score)
        self.overall.add(result.passed, result.score)
        for tag in result.tags or ("(untagged)",):
            self.tags.setdefault(tag, _Tally()).add(result.passed, result.score)
        for score in result.scores:
            self.scorers.setdefault(score.name, _Tally()).add(score.passed, score.value)
        rows, cap = (
            (self.passed, MAX_PASSED_ROWS) if result.passed else (self.failed, MAX_FAILED_ROWS)
        )
        if len(rows) < cap:
            rows.append(result)


def write_html(
    path: str | Path,
    run: EvalRun,
    results: Iterable[CaseResult],
    comparison: Comparison | None = None,
) -> Path:
    """Write the report of ``run`` (reading ``results`` once) and of ``comparison``."""
    collected = _Collected()
    for result in results:
        collected.add(result)
    parts = [
        _header(run, collected),
        _summary(run),
        _scorers(collected),
        _charts(collected, comparison),
        _tags(collected),
    ]
    if comparison is not None:
        parts.append(_comparison(comparison))
    parts.append(_cases(collected))
    title = f"tether eval {run.feature} [{run.variant}] {run.id}"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(parts)
        + f"\n</main><script>{SCRIPT}</script></body></html>\n"
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


# ------------------------------------------------------------------ sections


def _header(run: EvalRun, c: _Collected) -> str:
    rate = run.summary.get("pass_rate", c.overall.pass_rate if c.overall.n else None)
    cards = [
        ("pass rate", percent(rate)),
        ("cases", f"{c.overall.passed}/{c.overall.n} passed"),
        ("mean score", f"{c.overall.mean:.3f}"),
    ]
    if "cost_usd" in run.summary:
        cards.append(("cost", f"${float(run.summary['cost_usd']):.4f}"))
    latency = run.summary.get("latency_ms") or {}
    if latency:
        cards.append(
            ("latency p50 / p95", f"{latency.get('p50', 0):.0f} / {latency.get('p95', 0):.0f} ms")
        )
    gate = run.summary.get("gate") or {}
    if gate.get("min_pass_rate") is not None or gate.get("min_score") is not None:
        cards.append(("gate", "passed" if gate.get("passed") else "FAILED"))
    html = "".join(
        f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in cards
    )
    started = run.started_at.isoformat(timespec="seconds")
    return (
        f"<h1>tether eval: {escape(run.feature)} "
        f"<span class='muted'>[{escape(run.variant)}]</span></h1>"
        f"<div class='sub'>run {escape(run.id)} · dataset {escape(run.dataset_path)} · "
        f"{escape(started)}</div><div class='cards'>{html}</div>"
    )


def _summary(run: EvalRun) -> str:
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in summary_rows(run)
    )
    return f"<h2>Summary</h2><table>{rows}</table>"


def _tally_table(title: str, what: str, items: Sequence[tuple[str, _Tally]]) -> str:
    if not items:
        return ""
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td class='num'>{t.n}</td>"
        f"<td class='num'>{percent(t.pass_rate)}</td><td class='num'>{t.mean:.3f}</td></tr>"
        for name, t in items
    )
    return (
        f"<h2>{title}</h2><table><tr><th>{what}</th><th>cases</th><th>pass rate</th>"
        f"<th>mean score</th></tr>{rows}</table>"
    )


def _scorers(c: _Collected) -> str:
    return _tally_table("Scorers", "scorer", sorted(c.scorers.items()))


def _tags(c: _Collected) -> str:
    """Per-tag pass rate and mean score, worst first."""
    items = sorted(c.tags.items(), key=lambda kv: (kv[1].pass_rate, kv[0]))
    return _tally_table("By tag", "tag", items)


def _comparison(c: Comparison) -> str:
    css = {"regressed": "v-regressed", "improved": "v-improved"}.get(c.verdict, "v-none")
    m, s = c.mcnemar, c.score
    ci = "-" if s.ci is None else f"[{s.ci[0]:+.3f}, {s.ci[1]:+.3f}]"
    rows = [
        (
            "baseline (A)",
            f"{c.run_a.id}: {c.run_a.feature} [{c.run_a.variant}] config {c.run_a.config_version}",
        ),
        (
            "candidate (B)",
            f"{c.run_b.id}: {c.run_b.feature} [{c.run_b.variant}] config {c.run_b.config_version}",
        ),
        ("pairs", str(c.pairs)),
        ("pass rate", f"{percent(c.pass_rate_a)} → {percent(c.pass_rate_b)}"),
        (
            "pass/fail",
            f"{m.regressions} regression(s), {m.improvements} improvement(s); "
            f"McNemar exact p = {p_text(m.p_value)}",
        ),
        (
            "score",
            f"{s.mean_a:.3f} → {s.mean_b:.3f}, delta {s.mean_delta:+.3f} "
            f"({1 - c.alpha:.0%} bootstrap CI {ci}); Wilcoxon p = {p_text(s.p_value)}",
        ),
        ("rule", c.rule),
        ("excluded (flaky)", ", ".join(str(i) for i in c.excluded) or "none"),
        *(("note", note) for note in c.notes),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    order = {"regression": 0, "improvement": 1, "score": 2}
    items = sorted(c.items, key=lambda item: (order[item.kind], item.delta, item.index))
    shown = "".join(_item(item) for item in items[:MAX_CHANGED_ITEMS])  # regressions first
    more = ""
    if c.changed > MAX_CHANGED_ITEMS:
        more = f"<p class='muted'>{MAX_CHANGED_ITEMS} of {c.changed} changed items shown.</p>"
    return (
        f"<h2>Comparison</h2><div class='verdict {css}'>{escape(c.verdict)} "
        f"<span class='muted'>({escape(c.decided_by)} p = {p_text(c.p_value)})</span></div>"
        f"<table>{table}</table>{_tag_deltas(c)}<h2>Changed items ({c.changed})</h2>"
        f"<p class='muted'>left: A {escape(c.run_a.id)} [{escape(c.run_a.variant)}], right: "
        f"B {escape(c.run_b.id)} [{escape(c.run_b.variant)}]; regressions first</p>"
        f"{shown or '<p>none</p>'}{more}"
    )


def _tag_deltas(c: Comparison) -> str:
    """Per tag, A's and B's pass rate and mean score on the paired items, worst change first."""
    if not c.tags:
        return ""
    rows = []
    for tag, t in sorted(c.tags.items(), key=lambda kv: (kv[1].passed_b - kv[1].passed_a, kv[0])):
        d = t.to_dict()
        change = d["pass_rate_b"] - d["pass_rate_a"]
        mark = "fail" if change < 0 else "pass" if change > 0 else "muted"
        rows.append(
            f"<tr><td>{escape(tag)}</td><td class='num'>{t.n}</td>"
            f"<td class='num'>{percent(d['pass_rate_a'])} → {percent(d['pass_rate_b'])}</td>"
            f"<td class='num {mark}'>{change * 100:+.1f} pts</td>"
            f"<td class='num'>{d['mean_a']:.3f} → {d['mean_b']:.3f}</td></tr>"
        )
    return (
        "<h2>By tag: A → B</h2><table><tr><th>tag</th><th>pairs</th><th>pass rate</th>"
        f"<th>change</th><th>mean score</th></tr>{''.join(rows)}</table>"
    )


def _item(item: ItemChange) -> str:
    left, right = word_diff(item.error_a or item.output_a, item.error_b or item.output_b)
    mark = {"regression": "fail", "improvement": "pass"}.get(item.kind, "warn")
    vars_text = ", ".join(f"{k}={v}" for k, v in item.vars.items())
    failed = "".join(
        f"<div class='muted'>{label} failed: {escape('; '.join(f))}</div>"
        for label, f in (("A", item.failed_a), ("B", item.failed_b))
        if f
    )
    return (
        f"<div class='item'><b>row {item.index}</b> <span class='{mark}'>{item.kind}</span> "
        f"score {item.score_a:.2f} → {item.score_b:.2f}"
        f"<div class='muted'>{escape(_clip(vars_text, 300))}</div>{failed}"
        f"<div class='diff'><pre>{left}</pre><pre>{right}</pre></div></div>"
    )


def _cases(c: _Collected) -> str:
    rows = [_case_row(r) for r in (*c.failed, *c.passed)]
    shown = len(rows)
    note = ""
    if shown < c.overall.n:
        note = (
            f"<p class='muted'>{shown} of {c.overall.n} cases shown (failed first); "
            "`tether eval show RUN` lists every case.</p>"
        )
    return (
        "<h2>Cases</h2><label><input type='checkbox' id='failed-only'> failed only</label>"
        f"{note}<table><tr><th>#</th><th>rep</th><th>result</th><th>score</th><th>asserts</th>"
        f"<th>output</th><th>cost</th><th>ms</th></tr>{''.join(rows)}</table>"
    )


def _case_row(r: CaseResult) -> str:
    out = r.output
    text = escape(_clip(out.text, MAX_TEXT))
    if out.error:
        text = f"<span class='fail'>error: {escape(_clip(out.error, 500))}</span>"
    elif out.degraded:
        text = f"<span class='warn'>degraded ({escape(str(out.reason))})</span> {text}"
    asserts = "".join(f"<li>{escape(line)}</li>" for line in assert_lines(r, markup=False))
    status = "<span class='pass'>pass</span>" if r.passed else "<span class='fail'>FAIL</span>"
    return (
        f"<tr class='case-{'pass' if r.passed else 'fail'}'><td class='num'>{r.index}</td>"
        f"<td class='num'>{r.repeat}</td><td>{status}</td><td class='num'>{r.score:.2f}</td>"
        f"<td><ul class='asserts'>{asserts}</ul></td><td><pre>{text}</pre></td>"
        f"<td class='num'>${out.cost_usd:.4f}</td><td class='num'>{out.latency_ms:.0f}</td></tr>"
    )


# ------------------------------------------------------------------ diffs


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" … (+{len(text) - limit} chars)"


def word_diff(a: str, b: str) -> tuple[str, str]:
    """Both texts as escaped HTML, words only in A in ``<del>``, only in B in ``<ins>`` (the
    spaces between two changed words belong to the change)."""
    ta = _TOKENS.findall(_clip(a, MAX_TEXT))
    tb = _TOKENS.findall(_clip(b, MAX_TEXT))
    left: list[str] = []
    right: list[str] = []
    gone: list[str] = []
    added: list[str] = []

    def flush() -> None:
        if gone:
            left.append(f"<del>{escape(''.join(gone))}</del>")
        if added:
            right.append(f"<ins>{escape(''.join(added))}</ins>")
        gone.clear()
        added.clear()

    opcodes = difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes()
    for n, (op, i1, i2, j1, j2) in enumerate(opcodes):
        old, new = "".join(ta[i1:i2]), "".join(tb[j1:j2])
        inside = (gone or added) and n + 1 < len(opcodes)
        if op == "equal" and not (inside and old.isspace()):
            flush()
            left.append(escape(old))
            right.append(escape(new))
            continue
        gone.append(old)
        added.append(new)
    flush()
    return "".join(left), "".join(right)


# ------------------------------------------------------------------ charts


def _svg(figure: Figure) -> str:
    """A figure as inline SVG: no XML prolog, DOCTYPE, metadata or namespace declarations
    (they name URLs; HTML's parser does not need them)."""
    from matplotlib import rc_context

    buffer = io.StringIO()
    with rc_context({"svg.hashsalt": "tether-report", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    start = _SVG_START.search(text)
    text = text[start.start() :] if start else text
    return _SVG_XMLNS.sub("", _SVG_METADATA.sub("", text))


def _label(text: str, limit: int = 40) -> str:
    """Text matplotlib draws as given ("$" would start mathtext)."""
    return _clip(text, limit).replace("$", r"\$")


def _histogram(series: Sequence[tuple[str, Sequence[float]]], title: str) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 2.8))
    axes = figure.subplots()
    bins = [i / 10 for i in range(11)]
    colors = ("#5b7bd5", "#e07a3f")
    for (label, values), color in zip(series, colors, strict=False):
        axes.hist(values, bins=bins, alpha=0.55, label=_label(label), color=color, ec="white")
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("case score", fontsize=9)
    axes.set_ylabel("cases", fontsize=9)
    axes.set_xlim(0, 1)
    axes.tick_params(labelsize=8)
    if len(series) > 1:
        axes.legend(fontsize=8)
    return _svg(figure)


def _tag_bars(tags: dict[str, _Tally]) -> str:
    from matplotlib.figure import Figure

    items = sorted(tags.items(), key=lambda kv: (kv[1].pass_rate, kv[0]))[:25]
    figure = Figure(figsize=(5.2, 0.6 + 0.28 * len(items)))
    axes = figure.subplots()
    labels = [_label(tag, 30) for tag, _ in items]
    axes.barh(labels, [t.pass_rate for _, t in items], color="#5b7bd5")
    axes.set_xlim(0, 1)
    axes.set_title("pass rate by tag", fontsize=10)
    axes.tick_params(labelsize=8)
    return _svg(figure)


def _charts(c: _Collected, comparison: Comparison | None) -> str:
    charts = [_histogram([("cases", c.scores)], "score distribution")]
    if comparison is not None and comparison.pairs:
        charts.append(
            _histogram(
                [
                    (f"A {comparison.run_a.variant} ({comparison.run_a.id})", comparison.scores_a),
                    (f"B {comparison.run_b.variant} ({comparison.run_b.id})", comparison.scores_b),
                ],
                "paired items: A vs B",
            )
        )
    if len(c.tags) > 1:
        charts.append(_tag_bars(c.tags))
    inner = "".join(f"<div class='chart'>{svg}</div>" for svg in charts)
    return f"<h2>Charts</h2><div class='charts'>{inner}</div>"
