"""`tether eval compare` on real runs: a feature's baseline and two variants run through the full
pipeline (scripted providers whose answers are a function of the request), stored in a real
SQLite store; the CLI compares the stored runs. A candidate that answers worse on 15% of 200
items is `regressed` with p < 0.05 and fails the gate; an identical candidate is not."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tether import Tether
from tether.cli.main import build_app
from tether.config import parse_config
from tether.evals.datasets import load_dataset
from tether.evals.runner import EvalRunner, RunSettings, scoring_context
from tether.evals.types import EvalRun
from tether.providers.scripted import ScriptedProvider
from tether.store import Store
from tether.types import ModelRequest

CONFIG = """
providers:
  good: {kind: scripted}
  bad: {kind: scripted}
features:
  geo:
    prompt: {system: "Answer with the code.", template: "Q: {{ q }}"}
    model: good:m
    on_failure: {respond: "sorry"}
    variants:
      candidate: {model: bad:m}
      twin: {model: good:m, temperature: 0.5}
"""
ITEMS = 200
WORSE = {i for i in range(ITEMS) if i % 20 < 3}  # 30 items: 15%


def item_of(request: ModelRequest) -> int:
    found = re.search(r"question (\d+)", request.messages[-1].content or "")
    assert found is not None
    return int(found.group(1))


def good(request: ModelRequest) -> str:
    return f"The code is answer-{item_of(request)}."


def bad(request: ModelRequest) -> str:
    n = item_of(request)
    return "I am not sure." if n in WORSE else good(request)


@pytest.fixture(scope="module")
def stored_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, EvalRun]]:
    tmp_path = tmp_path_factory.mktemp("compare")
    rows = [
        {"vars": {"q": f"question {i}"}, "assert": [{"type": "icontains", "value": f"ANSWER-{i}"}]}
        for i in range(ITEMS)
    ]
    path = tmp_path / "geo.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'evals.db'}"
    return url, _run_all(url, path)


def _run_all(url: str, dataset_path: Path) -> dict[str, EvalRun]:
    import asyncio

    async def go() -> dict[str, EvalRun]:
        tether = Tether(parse_config(CONFIG, "t.yaml", {}))
        for name, script in (("good", good), ("bad", bad)):
            provider = tether.provider(name)
            assert isinstance(provider, ScriptedProvider)
            provider.script = script
        dataset = load_dataset(dataset_path)
        runs: dict[str, EvalRun] = {}
        with Store.from_url(url) as store:
            async with tether:
                for variant in ("default", "candidate", "twin"):
                    runner = EvalRunner(
                        tether,
                        "geo",
                        dataset,
                        store=store.evals,
                        settings=RunSettings(variant=variant, concurrency=16),
                        context=scoring_context(tether, "geo", dataset, None),
                    )
                    runs[variant] = await runner.run()
        return runs

    return asyncio.run(go())


def invoke(*args: str) -> Any:
    return CliRunner().invoke(build_app(), ["eval", "compare", *args])


def test_a_candidate_worse_on_15_percent_is_regressed_and_fails_the_gate(
    stored_runs: tuple[str, dict[str, EvalRun]], tmp_path: Path
) -> None:
    url, runs = stored_runs
    base, cand = runs["default"], runs["candidate"]
    assert base.summary["pass_rate"] == 1.0 and cand.summary["pass_rate"] == 0.85
    out = tmp_path / "report"
    args = [base.id, cand.id[:8], "--store-url", url, "--fail-on-regression"]
    result = invoke(*args, "--json", "--out", str(out))
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "regressed" and data["p_value"] < 0.05
    assert data["mcnemar"]["regressions"] == 30 and data["mcnemar"]["improvements"] == 0
    assert data["run_b"]["variant"] == "candidate" and data["pairs"] == ITEMS
    assert sorted(item["index"] for item in data["items"]) == sorted(WORSE)
    assert data["items"][0]["output_b"] == "I am not sure."
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "regressed" in page and "<del>The code is answer-0</del>." in page
    assert json.loads((out / "comparison.json").read_text())["verdict"] == "regressed"
    table = invoke(base.id, cand.id, "--store-url", url)
    assert table.exit_code == 0, table.output  # without --fail-on-regression: reported only
    assert "regressed" in table.stdout and "30 regression(s)" in table.stdout


def test_an_identical_candidate_is_no_significant_change(
    stored_runs: tuple[str, dict[str, EvalRun]],
) -> None:
    url, runs = stored_runs
    result = invoke(
        runs["default"].id, runs["twin"].id, "--store-url", url, "--fail-on-regression", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "no significant change" and data["items"] == []
    assert data["run_a"]["config_version"] != data["run_b"]["config_version"]


def test_unknown_run_and_different_datasets_are_clear_errors(
    stored_runs: tuple[str, dict[str, EvalRun]], tmp_path: Path
) -> None:
    url, runs = stored_runs
    missing = invoke("ev_ffffffffffff", runs["twin"].id, "--store-url", url)
    assert missing.exit_code == 2 and "ev_ffffffffffff" in missing.stderr
    with Store.from_url(url) as store:
        store.evals.create_run(replace(runs["twin"], id="ev_0123456789ab", dataset_id="other"))
    mismatch = invoke(runs["default"].id, "ev_0123456789ab", "--store-url", url)
    assert mismatch.exit_code == 2 and "different datasets" in mismatch.stderr
