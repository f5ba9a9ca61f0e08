"""Reports of a run: the HTML file is self-contained (no URL in any src/href, charts as inline
SVG, the script inlined), escapes every dataset and model text, breaks scores down by tag and,
with a comparison, shows word diffs of changed answers; the JUnit XML parses (even with control
characters in an answer) and counts failures; the terminal tables and the JSON carry every case."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from tether.evals.compare import compare
from tether.evals.report import (
    cases_table,
    changes_table,
    comparison_table,
    junit_xml,
    run_json,
    run_table,
    write_html,
    write_json,
)
from tether.evals.report_html import word_diff
from tether.evals.types import CaseResult, EvalRun, Output, Score

EVIL = "<script>alert('x')</script>"


def make_run(run_id: str, variant: str = "default") -> EvalRun:
    return EvalRun(
        id=run_id,
        feature="assistant",
        variant=variant,
        config_version="cv1",
        dataset_id="ds1",
        dataset_path="evals/a.jsonl",
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        cases=6,
        status="done",
        summary={
            "pass_rate": 0.5,
            "passed": 3,
            "total": 6,
            "score_mean": 0.6,
            "cost_usd": 0.012,
            "latency_ms": {"p50": 120.0, "p95": 300.0},
            "gate": {
                "min_pass_rate": 0.9,
                "min_score": None,
                "passed": False,
                "failures": ["pass rate 50.0% < 90.0%"],
            },
            "scorers": {"icontains": {"mean": 0.5, "pass_rate": 0.5}},
        },
    )


def make_results(
    run_id: str, bad: set[int], text: str = "Paris is the capital"
) -> list[CaseResult]:
    out = []
    for i in range(6):
        passed = i not in bad
        answer = text if passed else f"{EVIL} I do not know \x1b[31m"
        out.append(
            CaseResult(
                run_id=run_id,
                index=i,
                repeat=0,
                case_id=f"c{i}",
                passed=passed,
                score=1.0 if passed else 0.0,
                scores=[
                    Score(
                        1.0 if passed else 0.0,
                        passed,
                        "" if passed else f"expected 'paris' in {EVIL}",
                        name="icontains",
                    )
                ],
                output=Output(
                    text=answer,
                    cost_usd=0.002,
                    latency_ms=100.0 + i,
                    error="FeatureFailed: upstream down" if i == 5 and not passed else None,
                ),
                tags=("geo", EVIL) if i % 2 else ("geo",),
                vars={"question": f"capital of France? {EVIL}"},
            )
        )
    return out


def src_href_urls(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"'\s>]*""", page, re.I)


def test_html_is_self_contained_escaped_and_has_charts_and_tags(tmp_path: Path) -> None:
    run = make_run("ev_aaaaaaaaaaaa")
    path = write_html(tmp_path / "out" / "report.html", run, make_results(run.id, {1, 3, 5}))
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert src_href_urls(page) == []
    assert "http" not in page  # not even SVG's namespace URLs (HTML does not need them)
    assert "<link" not in page and "@import" not in page
    assert page.count("<svg") == 2  # score distribution + pass rate by tag
    assert "<?xml" not in page and "<metadata>" not in page
    assert page.count("<script>") == 1  # only our own inlined script
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "By tag" in page and "&lt;script&gt;" in page.split("By tag")[1]
    assert "pass rate 50.0% &lt; 90.0%" in page  # the gate's failure, escaped
    assert "error: FeatureFailed: upstream down" in page


def test_html_of_a_comparison_diffs_changed_answers(tmp_path: Path) -> None:
    run_a, run_b = make_run("ev_aaaaaaaaaaaa"), make_run("ev_bbbbbbbbbbbb", "candidate")
    results_b = make_results(run_b.id, {1, 3, 5})
    c = compare(run_a, make_results(run_a.id, {5}), run_b, results_b)
    assert c.verdict == "no significant change"  # 2 discordant pairs: too few to tell
    page = write_html(tmp_path / "r.html", run_b, results_b, c).read_text(encoding="utf-8")
    assert src_href_urls(page) == [] and page.count("<svg") == 3
    assert "Changed items (2)" in page and "regression" in page
    assert c.to_dict()["tags"][EVIL] == {
        "n": 3,
        "pass_rate_a": 2 / 3,
        "pass_rate_b": 0.0,
        "mean_a": 2 / 3,
        "mean_b": 0.0,
    }
    by_tag = page.split("By tag: A → B")[1].split("</table>")[0]
    assert "&lt;script&gt;" in by_tag and "-66.7 pts" in by_tag and "66.7% → 0.0%" in by_tag
    assert "<del>Paris is the capital</del>" in page
    assert "<ins>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; I do not know" in page
    assert page.count("<script>") == 1


def test_word_diff_marks_only_changed_words() -> None:
    left, right = word_diff("The capital is Paris.", "The capital is <b>Lyon</b>.")
    assert left == "The capital is <del>Paris</del>."
    assert right == "The capital is <ins>&lt;b&gt;Lyon&lt;/b&gt;</ins>."


def test_junit_parses_and_counts_failures() -> None:
    run = make_run("ev_aaaaaaaaaaaa")
    text = junit_xml(run, make_results(run.id, {1, 3, 5}))
    root = ET.fromstring(text.encode("utf-8"))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("6", "3")
    cases = suite.findall("testcase")
    assert len(cases) == 6
    failures = [case.find("failure") for case in cases]
    assert [f is not None for f in failures] == [False, True, False, True, False, True]
    failure = failures[1]
    assert failure is not None
    assert failure.get("message") == f"icontains: expected 'paris' in {EVIL}"
    assert "\x1b" not in (failure.text or "") and EVIL in (failure.text or "")
    last = failures[5]
    assert last is not None and (last.get("message") or "").startswith("call failed: FeatureFailed")
    assert cases[0].get("name", "").startswith("row 0: question=capital of France?")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["run_id"] == run.id and props["dataset_id"] == "ds1"


def test_terminal_tables_and_json(tmp_path: Path) -> None:
    run_a, run_b = make_run("ev_aaaaaaaaaaaa"), make_run("ev_bbbbbbbbbbbb", "candidate")
    results = make_results(run_b.id, {1, 3, 5})
    c = compare(run_a, make_results(run_a.id, set()), run_b, results)
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    for table in (
        run_table(run_b),
        cases_table(results, limit=4),
        comparison_table(c),
        changes_table(c, limit=2),
    ):
        console.print(table)
    text = buffer.getvalue()
    assert "FAILED: pass rate 50.0% < 90.0%" in text
    assert "4 of 6 shown" in text and "2 of 3 shown" in text
    assert EVIL in text  # shown literally, not interpreted as markup
    assert "3 regression(s), 0 improvement(s)" in text and "no significant change" in text
    data = run_json(run_b, results)
    assert data["run_id"] == run_b.id and len(data["results"]) == 6
    written = json.loads(write_json(tmp_path / "run.json", run_b, iter(results)).read_text())
    assert written == json.loads(json.dumps(data))
