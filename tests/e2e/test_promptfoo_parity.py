"""promptfoo and tether agree: one promptfoo config, run by promptfoo itself (pinned in
``tools/promptfoo``) against a live ``tether serve``, and by ``tether eval run`` as a dataset,
gives the same pass/fail and score on every test and on every assert of every test: each
deterministic assert of promptfoo's, and ``similar`` and the model-graded ones made deterministic
here.

The feature's upstream is the loopback :class:`FaultyUpstream` answering what follows "Say: " in
the last user message, so both sides see the same answer for a test whatever order they call in;
its embeddings (a vector from a hash of each text) serve ``similar`` on both sides, promptfoo's
through the gateway's ``/v1/embeddings`` (the ``vectors`` feature), tether's through that feature.
It also judges by a rule (:func:`grade`) when asked to grade, so ``llm-rubric``,
``model-graded-closedqa`` and ``factuality`` are deterministic here: promptfoo's grader asks
through the gateway, tether's judge (the feature's model) asks the upstream directly, each with
its own prompt, and both must read the verdicts alike.
promptfoo runs offline: no telemetry, no update check, no sharing, no cache, its database and
logs in a temporary folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.testing.promptfoo import offline_env
from tether.testing.upstream import FaultyUpstream

from .gateway_server import GatewayProcess, tether_cli

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "promptfoo"
PROMPTFOO = ROOT / "tools" / "promptfoo" / "node_modules" / ".bin" / "promptfoo"
INSTALL = "npm ci --prefix tools/promptfoo --no-audit --no-fund"
TESTS = 48  # 15 CSV rows + 33 inline tests in promptfooconfig.yaml
PROMPTFOO_FAILED = 100  # promptfoo's exit code when some test failed (and nothing errored)
# What the grading prompts (promptfoo's defaults and tether's) hold: llm-rubric's last message,
# model-graded-closedqa's data block, factuality's answers.
RUBRIC = re.compile(
    r"<Output>\n(?P<output>.*?)\n</Output>\n<Rubric>\n(?P<rubric>.*?)\n</Rubric>", re.S
)
CLOSEDQA = re.compile(
    r"\[Submission\]:?\s*(?P<output>.*?)\s*(?:\*\*\*|\n\n)\s*"
    r"\[Criterion\]:?\s*(?P<criterion>.*?)\s*(?:\*\*\*|\n\n)",
    re.S,
)
FACTUALITY = re.compile(
    r"<(?:expert|reference)_answer>\s*(?P<ideal>.*?)\s*</(?:expert|reference)_answer>\s*"
    r"<submitted_answer>\s*(?P<output>.*?)\s*</submitted_answer>",
    re.S,
)

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: upstream-key}}
features:
  parity:
    prompt: {{template: "Say: {{{{ reply }}}}"}}
    model: up:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "internal error: parity is unavailable"}}
  vectors:
    kind: embedding
    model: up:text-embedding-3-small
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
store:
  url: "sqlite:///{db}"
"""


def say(body: dict[str, Any]) -> str:
    """The upstream's answer: a judge's verdict when the request asks to grade (see
    :func:`grade`), else what follows "Say: " in the last user message."""
    messages = body.get("messages") or []
    verdict = grade("\n".join(str(m.get("content") or "") for m in messages))
    if verdict is not None:
        return verdict
    users = [m for m in messages if m.get("role") == "user"]
    return str((users[-1].get("content") if users else "") or "").split("Say: ", 1)[-1]


def grade(prompt: str) -> str | None:
    """A judge as a rule, for promptfoo's grading prompts and tether's alike (None: not a
    grading prompt). llm-rubric and model-graded-closedqa: a rubric or criterion "... mentions
    WORD" holds when WORD is in the output (rubric score 0.8, so a threshold of 0.9 fails it;
    0.1 when it does not hold). factuality: the same text is C, a superset of the reference B,
    a subset A, anything else D."""
    if found := RUBRIC.search(prompt):
        word = found["rubric"].rsplit(" ", 1)[-1]
        held = word.lower() in found["output"].lower()
        reason = f"the output {'mentions' if held else 'does not mention'} {word}"
        return json.dumps({"reason": reason, "pass": held, "score": 0.8 if held else 0.1})
    if found := CLOSEDQA.search(prompt):
        word = found["criterion"].rsplit(" ", 1)[-1]
        held = word.lower() in found["output"].lower()
        letter = "Y" if held else "N"
        return f"The submission {'mentions' if held else 'does not mention'} {word}.\n{letter}"
    if found := FACTUALITY.search(prompt):
        ideal, output = (found[k].lower().rstrip(".") for k in ("ideal", "output"))
        category = "C" if output == ideal else "B" if ideal in output else "A"
        category = category if ideal in output or output in ideal else "D"
        return json.dumps({"category": category, "reason": f"category {category} by rule"})
    return None


def require_promptfoo() -> Path:
    if not PROMPTFOO.exists() or shutil.which("node") is None:
        pytest.fail(f"promptfoo is not installed at {PROMPTFOO}: run: {INSTALL}")
    return PROMPTFOO


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(respond=say) as up:
        yield up


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream) -> Path:
    folder = tmp_path_factory.mktemp("parity")
    path = folder / "tether.yaml"
    path.write_text(CONFIG.format(up=upstream.base_url, db=folder / "tether.db"))
    return path


@pytest.fixture(scope="module")
def promptfoo_results(config: Path) -> dict[int, dict[str, Any]]:
    """promptfoo's result per test index, from ``promptfoo eval`` against ``tether serve``."""
    binary = require_promptfoo()
    home = config.parent / "promptfoo-home"
    out = config.parent / "promptfoo.json"
    with GatewayProcess(config) as gateway:
        done = subprocess.run(
            [
                str(binary),
                "eval",
                "--config",
                str(DATA / "promptfooconfig.yaml"),
                "--output",
                str(out),
                "--no-cache",
                "--no-table",
                "--no-progress-bar",
                "--max-concurrency",
                "4",
            ],
            cwd=DATA,
            env=offline_env(home, TETHER_GATEWAY_URL=gateway.base_url),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    said = done.stdout + done.stderr
    assert done.returncode in (0, PROMPTFOO_FAILED), said[-6000:]
    assert "Invalid configuration file" not in said and "Validation Error" not in said, said
    results = json.loads(out.read_text())["results"]
    assert results["stats"]["errors"] == 0, done.stdout[-3000:]
    return {r["testIdx"]: r for r in results["results"]}


@pytest.fixture(scope="module")
def tether_results(config: Path) -> dict[int, dict[str, Any]]:
    """tether's result per dataset row, from ``tether eval run`` then ``tether eval show``."""
    dataset = str(DATA / "promptfooconfig.yaml")
    ran = tether_cli(
        "eval", "run", "parity", "--config", str(config), "--dataset", dataset, "--json"
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    run = json.loads(ran.stdout)
    shown = tether_cli("eval", "show", run["run_id"], "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    return {r["index"]: r for r in json.loads(shown.stdout)["results"]}


def test_promptfoo_ran_every_test_through_the_gateway(
    promptfoo_results: dict[int, dict[str, Any]],
) -> None:
    assert sorted(promptfoo_results) == list(range(TESTS))
    passed = [i for i, r in promptfoo_results.items() if r["success"]]
    assert 0 < len(passed) < TESTS  # some pass and some fail: agreement means something
    for index, result in promptfoo_results.items():
        reply = str(result["vars"]["reply"])
        assert result["response"]["output"] == reply, f"test {index}: the gateway answered"


def verdicts(result: dict[str, Any], promptfoo: bool) -> tuple[bool, float, list[Any]]:
    """A test's pass/fail and score, and each assert's (name, pass/fail, score), in order."""
    if promptfoo:
        graded = result["gradingResult"]
        asserts = [
            (c["assertion"].get("metric") or c["assertion"]["type"], c["pass"], c["score"])
            for c in graded["componentResults"]
        ]
        return result["success"], result["score"], asserts
    asserts = [(s["name"], s["passed"], s["value"]) for s in result["scores"]]
    return result["passed"], result["score"], asserts


def rounded(verdict: tuple[bool, float, list[Any]]) -> tuple[bool, float, list[Any]]:
    passed, score, asserts = verdict
    return passed, round(score, 6), [(n, p, round(float(s), 6)) for n, p, s in asserts]


def test_tether_eval_gives_promptfoo_s_verdict_on_every_test(
    promptfoo_results: dict[int, dict[str, Any]], tether_results: dict[int, dict[str, Any]]
) -> None:
    assert sorted(tether_results) == sorted(promptfoo_results)
    disagree = []
    for index, theirs in sorted(promptfoo_results.items()):
        ours = tether_results[index]
        assert ours["output"]["text"] == theirs["response"]["output"], f"test {index}"
        expected, got = rounded(verdicts(theirs, True)), rounded(verdicts(ours, False))
        if got != expected:
            what = theirs["testCase"].get("description")
            disagree.append(f"test {index} ({what}):\n  promptfoo {expected}\n  tether    {got}")
    assert not disagree, "\n".join(disagree)
