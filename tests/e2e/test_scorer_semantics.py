"""tether's deterministic scorers against promptfoo's own: every assert of a matrix (the
promptfoo types tether runs, with ``not-``, thresholds, ``{{var}}`` templates, inline python)
meets every answer of a list (prose, JSON, JSON in prose, Unicode, numbers, empty), and
promptfoo 0.120's ``assertions.runAssertion`` (tools/promptfoo, run by node) and tether's
registry must give the same pass and the same score on each pair.

Where promptfoo raises instead of grading (ROUGE of an empty answer), its test fails; tether
gives a failing score, which is the same verdict."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tether.evals.scorers.registry import assertion_of, build_scorer
from tether.evals.types import Case, Output, ScoringContext
from tether.testing.promptfoo import offline_env

from .test_promptfoo_parity import ROOT, require_promptfoo

ANSWERS = [
    "Paris",
    "It is Paris.",
    "paris is lovely",
    "",
    "  ",
    "42",
    '{"a": 1, "b": [1,2]}',
    'Here: {"a": 2} and {"c": 3}',
    "The quick brown fox jumps over the lazy dog.",
    "Yes, I can help.\nSecond line",
    "abc\n",
    "1,000",
    "NaN",
    "[1, 2]",
    "true",
    "{'a': 1}",
    "café Ünïcode ١٢٣",
    "Sure: {a: [1]}",
    "nbsp\u00a0here",
]
BOTH_WAYS: list[tuple[str, Any]] = [
    ("contains", "Paris"),
    ("contains", 42),
    ("icontains", "PARIS"),
    ("contains", "{{city}}"),
    ("contains-any", ["x", "Paris"]),
    ("contains-any", 'fox, "is, Paris"'),
    ("contains-all", "Paris,It"),
    ("contains-all", ["quick", "dog"]),
    ("icontains-any", "PARIS,LYON"),
    ("icontains-all", ["CAFÉ", "ünïcode"]),
    ("starts-with", "Yes"),
    ("starts-with", "{{city}}"),
    ("regex", r"^P\w+$"),
    ("regex", "c$"),
    ("regex", r"\d+"),
    ("regex", r"\S+\s\S+"),
    ("regex", "(?<w>a)b"),
    ("equals", "Paris"),
    ("equals", 42),
    ("equals", {"a": 1, "b": [1, 2]}),
    ("equals", [1, 2]),
    ("equals", True),
    ("is-json", None),
    ("is-json", {"type": "object", "required": ["a"]}),
    ("is-json", "type: array"),
    ("contains-json", None),
    ("contains-json", {"type": "object", "required": ["c"]}),
    ("rouge-n", "The quick brown fox jumped over a lazy dog"),
    ("rouge-n", "Paris is lovely"),
]
ONE_WAY: list[dict[str, Any]] = [
    {"type": "levenshtein", "value": "Paris"},
    {"type": "levenshtein", "value": "It is Paris", "threshold": 2},
    {"type": "rouge-n", "value": "paris is lovely", "threshold": 0.5},
    {"type": "not-rouge-n", "value": "Paris", "threshold": 0.3},
    {"type": "cost", "threshold": 0.001},
    {"type": "cost", "threshold": 0.01},
    {"type": "latency", "threshold": 100},
    {"type": "latency", "threshold": 1000},
    {"type": "python", "value": "len(output) > 5"},
    {"type": "python", "value": "0.3"},
    {"type": "python", "value": "0.3", "threshold": 0.5},
    {"type": "python", "value": "{'pass': True, 'score': 0.6, 'reason': 'x'}", "threshold": 0.7},
    {"type": "python", "value": "n = len(output)\nreturn n / 100"},
    {"type": "python", "value": "context['vars']['city'] in output"},
]
VARS = {"city": "Paris"}
COST, LATENCY = 0.005, 500

RUN = """
import { pathToFileURL } from "node:url";
import fs from "node:fs";
const [entry, input, output] = process.argv.slice(2);
const promptfoo = (await import(pathToFileURL(entry).href)).default;
const pairs = JSON.parse(fs.readFileSync(input, "utf8"));
const results = [];
for (const p of pairs) {
  try {
    const r = await promptfoo.assertions.runAssertion({
      assertion: p.assert, test: {vars: p.vars, assert: [p.assert]}, vars: p.vars,
      providerResponse: {output: p.output, cost: p.cost}, latencyMs: p.latency,
    });
    results.push({pass: r.pass, score: r.score});
  } catch (e) {
    results.push({error: String(e && e.message)});
  }
}
fs.writeFileSync(output, JSON.stringify(results));
"""


def matrix() -> list[dict[str, Any]]:
    asserts = [
        {"type": prefix + kind, **({} if value is None else {"value": value})}
        for prefix in ("", "not-")
        for kind, value in BOTH_WAYS
    ] + ONE_WAY
    return [
        {"assert": a, "output": text, "vars": VARS, "cost": COST, "latency": LATENCY}
        for a in asserts
        for text in ANSWERS
    ]


def promptfoo_verdicts(pairs: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    require_promptfoo()
    entry = (
        ROOT / "tools" / "promptfoo" / "node_modules" / "promptfoo" / "dist" / "src" / "index.js"
    )
    (tmp / "run.mjs").write_text(RUN)
    (tmp / "pairs.json").write_text(json.dumps(pairs))
    done = subprocess.run(
        ["node", str(tmp / "run.mjs"), str(entry), str(tmp / "pairs.json"), str(tmp / "out.json")],
        env=offline_env(tmp / "home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results: list[dict[str, Any]] = json.loads((tmp / "out.json").read_text())
    return results


async def tether_verdict(pair: dict[str, Any]) -> tuple[bool, float]:
    assertion = assertion_of(pair["assert"])
    scorer = build_scorer(assertion, ScoringContext())
    case = Case(index=0, id="c", vars=pair["vars"], asserts=(assertion,))
    output = Output(text=pair["output"], cost_usd=pair["cost"], latency_ms=pair["latency"])
    score = await scorer.score(case, output)
    return score.passed, score.value


async def test_every_pair_gets_promptfoos_pass_and_score(tmp_path: Path) -> None:
    pairs = matrix()
    theirs = promptfoo_verdicts(pairs, tmp_path)
    assert len(theirs) == len(pairs)
    differences = []
    for pair, verdict in zip(pairs, theirs, strict=True):
        ours = await tether_verdict(pair)
        if "error" in verdict:  # promptfoo could not grade: its test fails
            assert "rouge-n" in pair["assert"]["type"] and not pair["output"].strip(), verdict
            expected: tuple[bool, float] = (False, 0.0)
        else:
            expected = (verdict["pass"], min(1.0, max(0.0, float(verdict["score"]))))
        if ours[0] != expected[0] or abs(ours[1] - expected[1]) > 1e-9:
            differences.append((pair["assert"], pair["output"], ours, verdict))
    assert not differences, f"{len(differences)} of {len(pairs)} differ: {differences[:10]}"
    assert len(pairs) > 1000
