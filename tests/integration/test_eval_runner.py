"""The eval runner on real parts: the scripted provider behind the full feature pipeline, real
datasets on disk (the dataset loader), a real SQLite store, the real scorers and judge, and the
``tether eval`` CLI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from tether import Tether
from tether.cli.main import build_app
from tether.config import parse_config
from tether.errors import RateLimited, UpstreamError
from tether.evals.datasets import load_dataset
from tether.evals.modelcache import ModelCache
from tether.evals.runner import EvalRunner, RunSettings, Tally, scoring_context
from tether.evals.types import Assertion, CaseResult, Dataset, EvalRun
from tether.providers.base import CallContext, Model
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.store import Store
from tether.store.evals import EvalStore
from tether.types import ModelRequest, ModelResponse, ToolCall

FEATURE = """
providers:
  s: {kind: scripted, prices: {m: {input_per_mtok: 1000, output_per_mtok: 1000}}}
  judge: {kind: scripted}
features:
  geo:
    prompt: {system: "Answer briefly.", template: "Q: {{ q }}"}
    model: s:m
    on_failure: {respond: "sorry"}
    evals: {judge: {model: "judge:j"}}
"""


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rows_of(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"vars": {"q": f"question {i}"}, **extra} for i in range(n)]


def tether_for(text: str = FEATURE, **kwargs: Any) -> Tether:
    return Tether(parse_config(text, "t.yaml", {}), **kwargs)


def scripted(tether: Tether, name: str = "s") -> ScriptedProvider:
    provider = tether.provider(name)
    assert isinstance(provider, ScriptedProvider)
    return provider


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.from_url(f"sqlite:///{tmp_path / 'evals.db'}") as opened:
        yield opened


async def run_eval(
    tether: Tether,
    dataset: Dataset,
    store: Store | None = None,
    cache_dir: Path | None = None,
    **settings: Any,
) -> EvalRun:
    context = scoring_context(tether, "geo", dataset, cache_dir)
    runner = EvalRunner(
        tether,
        "geo",
        dataset,
        store=None if store is None else store.evals,
        settings=RunSettings(**settings),
        context=context,
    )
    return await runner.run()


# ------------------------------------------------------------------ concurrency and streaming


@dataclass
class InFlight:
    """A model wrapper that measures how many calls are in flight at once."""

    now: int = 0
    most: int = 0

    def wrap(self, model: Model) -> Model:
        meter = self

        class Metered:
            name = model.name

            async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
                meter.now += 1
                meter.most = max(meter.most, meter.now)
                try:
                    return await model.complete(request, ctx)
                finally:
                    meter.now -= 1

            def stream(self, request: ModelRequest, ctx: CallContext) -> Any:
                return model.stream(request, ctx)

        return Metered()


@dataclass
class RecordingStore:
    """The real EvalStore, recording the size of every batch written."""

    inner: EvalStore
    batches: list[int] = field(default_factory=list)

    def create_run(self, run: EvalRun) -> None:
        self.inner.create_run(run)

    def add_results(self, results: Iterable[CaseResult]) -> int:
        batch = list(results)
        self.batches.append(len(batch))
        time.sleep(0.02)  # a slow database: results queue up meanwhile
        return self.inner.add_results(batch)

    def finish_run(self, run: EvalRun) -> None:
        self.inner.finish_run(run)


async def test_concurrency_is_bounded_and_results_stream_to_the_store_in_batches(
    tmp_path: Path, store: Store
) -> None:
    meter = InFlight()
    tether = tether_for(wrappers=[meter.wrap])
    scripted(tether).script = [Reply("Paris", delay_s=0.002)]
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows_of(30)))
    recording = RecordingStore(store.evals)
    runner = EvalRunner(
        tether, "geo", dataset, store=recording,  # type: ignore[arg-type]
        settings=RunSettings(concurrency=4, batch=5),
    )  # fmt: skip
    run = await runner.run()
    await tether.aclose()

    assert meter.most == 4  # never more than --concurrency calls in flight, and it was used
    assert sum(recording.batches) == 30 and max(recording.batches) <= 5
    assert len(recording.batches) >= 6  # streamed while running, not written once at the end
    stored = list(store.evals.results(run.id))
    assert [r.index for r in stored] == list(range(30))
    assert store.evals.get_run(run.id).status == "done"
    assert run.summary["total"] == 30 and run.summary["cost_usd"] > 0
    # every call's trace links back to the run, its row and its repeat
    traces = list(tether.traces.traces)
    assert {t.metadata.get("eval_run") for t in traces} == {run.id}
    assert sorted(t.metadata["eval_case"] for t in traces) == list(range(30))


def test_each_distinct_assert_is_built_once_not_once_per_row(tmp_path: Path) -> None:
    rows = rows_of(50, **{"assert": [{"type": "icontains", "value": "paris"}]})
    rows[7]["assert"] = [{"type": "icontains", "value": "lyon"}]
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    tether = tether_for()
    extra = RunSettings(scorers=[Assertion("contains", "Paris")])
    runner = EvalRunner(tether, "geo", dataset, settings=extra)
    runner.build_scorers()
    built = {id(s) for case in dataset.cases for s in runner.scorers_for(case)}
    assert len(built) == 3  # icontains:paris, icontains:lyon, the run's contains:Paris
    assert runner.scorers_for(dataset.cases[0])[0] is runner.scorers_for(dataset.cases[49])[0]
    assert len(runner.scorers_for(dataset.cases[7])) == 2


async def test_a_row_with_messages_sends_that_conversation(tmp_path: Path) -> None:
    tether = tether_for()
    scripted(tether).script = ["Paris"]
    call = {"id": "c1", "name": "atlas", "arguments": "{}"}  # as tether's traces capture it
    conversation = [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "Paris", "tool_call_id": "c1"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    rows = [{"messages": conversation, "vars": {"q": "unused"}}]
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    run = await run_eval(tether, dataset)
    await tether.aclose()

    assert run.summary["passed"] == 1
    (request,) = scripted(tether).calls
    sent = [(m.role, m.content) for m in request.messages]
    assert sent == [
        ("system", "Answer briefly."),
        *[(m["role"], m["content"]) for m in conversation],
    ]
    assert request.messages[2].tool_calls == [ToolCall("c1", "atlas", "{}")]
    assert request.messages[3].tool_call_id == "c1"


# ------------------------------------------------------------------ repeat, errors, rate limits


async def test_repeat_names_the_flaky_rows(tmp_path: Path, store: Store) -> None:
    tether = tether_for()
    seen: dict[str, int] = {}

    def answer(request: ModelRequest) -> str:
        question = str(request.messages[-1].content)
        seen[question] = seen.get(question, 0) + 1
        if question.endswith("question 1"):  # row 1 alternates: flaky
            return "Paris" if seen[question] % 2 else "Lyon"
        return "Lyon" if question.endswith("question 2") else "Paris"  # row 2 always fails

    scripted(tether).script = answer
    rows = rows_of(3, **{"assert": [{"type": "icontains", "value": "paris"}]})
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    run = await run_eval(tether, dataset, store, repeat=4, concurrency=3)
    await tether.aclose()

    assert run.summary["flaky"] == [1]
    assert run.summary["total"] == 12 and run.summary["passed"] == 4 + 2
    stored = list(store.evals.results(run.id))
    assert [(r.index, r.repeat) for r in stored] == [(i, r) for i in range(3) for r in range(4)]
    assert run.summary["scorers"]["icontains"]["pass_rate"] == pytest.approx(6 / 12)


async def test_a_call_that_raises_is_an_error_output_not_a_crash(
    tmp_path: Path, store: Store
) -> None:
    tether = tether_for(FEATURE.replace('{respond: "sorry"}', "{raise: true}"))
    outage = Fail(UpstreamError("scripted outage", status_code=400, retryable=False))
    scripted(tether).script = lambda r: (
        outage if "question 0" in str(r.messages[-1].content) else "Paris"
    )
    rows = [*rows_of(2), {"vars": {"other": 1}}]  # row 2 lacks the prompt's variable
    rows = [{**row, "assert": [{"type": "icontains", "value": "paris"}]} for row in rows]
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    run = await run_eval(tether, dataset, store, concurrency=2)
    await tether.aclose()

    assert run.status == "done" and run.summary["total"] == 3
    assert run.summary["errors"] == 2 and run.summary["passed"] == 1
    first, _, third = store.evals.results(run.id)
    assert first.output.error is not None and first.output.error.startswith("FeatureFailed")
    assert third.output.error is not None and "MissingVariable" in third.output.error
    assert "q" in third.output.error and first.output.text == "" and not first.passed


@dataclass
class Notes:
    """A Progress that records what the runner reported."""

    notes: list[str] = field(default_factory=list)
    updates: int = 0

    def update(self, tally: Tally) -> None:
        self.updates += 1

    def note(self, text: str) -> None:
        if text:
            self.notes.append(text)


async def test_a_transient_rate_limit_is_waited_out_and_no_case_fails(tmp_path: Path) -> None:
    text = FEATURE.replace("    evals:", "    rate_limits: {feature: {rpm: 120}}\n    evals:")
    tether = tether_for(text)
    scripted(tether).script = ["Paris"]
    rows = rows_of(124, **{"assert": [{"type": "icontains", "value": "paris"}]})
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    notes = Notes()
    runner = EvalRunner(tether, "geo", dataset, settings=RunSettings(concurrency=8), progress=notes)
    run = await runner.run()
    await tether.aclose()

    assert run.summary["passed"] == run.summary["total"] == 124  # the bucket held 120
    assert run.summary["errors"] == 0
    assert any(n.startswith("rate_limit_exceeded: waiting") for n in notes.notes)
    assert notes.updates == 124


async def test_a_degraded_rate_limited_answer_is_retried_before_it_is_scored(
    tmp_path: Path,
) -> None:
    text = FEATURE.replace("    evals:", "    retry: {max_attempts: 1}\n    evals:")
    tether = tether_for(text)
    scripted(tether).script = [Fail(RateLimited("slow down", retry_after_s=0.01)), Reply("Paris")]
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows_of(1)))
    run = await run_eval(tether, dataset)
    await tether.aclose()

    assert run.summary["degraded"] == 0 and run.summary["passed"] == 1
    reasons = [t.reason for t in tether.traces.traces]
    assert reasons == ["rate_limited", None]  # the degraded answer was not the one scored


# ------------------------------------------------------------------ caches


async def test_a_model_cache_rerun_makes_no_model_calls_and_costs_nothing(tmp_path: Path) -> None:
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows_of(5)))
    runs = []
    for _ in range(2):
        cache = ModelCache.in_dir(tmp_path / ".tether")
        tether = tether_for(wrappers=[cache.wrap])
        scripted(tether).script = ["Paris is the capital"]
        runner = EvalRunner(
            tether, "geo", dataset, settings=RunSettings(repeat=2), model_cache=cache
        )
        runs.append((await runner.run(), len(scripted(tether).calls)))
        await tether.aclose()
        cache.close()
    (first, first_calls), (second, second_calls) = runs

    assert first_calls == 10 and first.summary["model_cache"] == {"hits": 0, "misses": 10}
    assert first.summary["cost_usd"] > 0
    assert second_calls == 0  # every (row, repeat) answered from the cache
    assert second.summary["model_cache"] == {"hits": 10, "misses": 0}
    assert second.summary["cost_usd"] == 0 and second.summary["passed"] == 10
    assert (tmp_path / ".tether" / "model-cache.sqlite").stat().st_mode & 0o777 == 0o600


async def test_the_judge_cache_is_hit_on_a_rerun(tmp_path: Path) -> None:
    verdict = '{"reason": "It names Paris.", "pass": true, "score": 1.0}'
    rows = rows_of(4, **{"assert": [{"type": "llm-rubric", "value": "Names the capital"}]})
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows))
    judged = []
    for _ in range(2):
        tether = tether_for()
        scripted(tether).script = lambda r: f"Paris, to {r.messages[-1].content}"  # 4 outputs
        scripted(tether, "judge").script = [verdict]
        run = await run_eval(tether, dataset, cache_dir=tmp_path / ".tether")
        judged.append((run.summary["judge"], len(scripted(tether, "judge").calls)))
        assert run.summary["passed"] == 4
        await tether.aclose()
    (first, first_calls), (second, second_calls) = judged

    assert first_calls == 4 and first["calls"] == 4 and first["cached"] == 0
    assert second_calls == 0 and second["calls"] == 0 and second["cached"] == 4
    assert first["input_tokens"] > 0 and second["input_tokens"] == 0


# ------------------------------------------------------------------ the CLI


CLI_CONFIG = """
providers:
  s: {kind: scripted, replies: [{text: "Paris is the capital"}]}
  worse: {kind: scripted, replies: [{text: "I think it is Lyon"}]}
features:
  geo:
    prompt: {template: "Q: {{ q }}"}
    model: s:m
    on_failure: {respond: "sorry"}
    variants:
      candidate: {model: "worse:m"}
      same: {description: identical to the feature}
    evals:
      dataset: data/geo.jsonl
      scorers: [{type: icontains, value: paris}]
      gate: {min_pass_rate: GATE}
store: {url: "sqlite:///evals.db"}
"""


def project(tmp_path: Path, rows: list[dict[str, Any]], gate: float = 0.5) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    write_rows(tmp_path / "data" / "geo.jsonl", rows)
    config = tmp_path / "tether.yaml"
    config.write_text(CLI_CONFIG.replace("GATE", str(gate)), encoding="utf-8")
    return config


def tether_cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(build_app(), [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


CONTRACT_KEYS = {
    "run_id", "pass_rate", "passed", "total", "score_mean", "scorers", "cost_usd", "judge",
    "latency_ms", "flaky", "errors", "degraded", "gate", "model_cache", "feature", "variant",
    "config_version", "dataset_id", "status",
}  # fmt: skip


def test_json_prints_the_summary_and_show_lists_every_case(tmp_path: Path) -> None:
    config = project(tmp_path, rows_of(3))
    reports = tmp_path / "reports"
    args = ("eval", "run", "geo", "-c", config, "--repeat", "2", "--json", "--out", reports)
    code, out, err = tether_cli(*args)
    assert code == 0, err
    summary = json.loads(out)  # nothing but the JSON on stdout
    assert set(summary) >= CONTRACT_KEYS
    assert summary["total"] == 6 and summary["pass_rate"] == 1.0
    assert set(summary["latency_ms"]) == {"p50", "p95"}
    assert summary["scorers"]["icontains"] == {"mean": 1.0, "pass_rate": 1.0}

    code, out, err = tether_cli("eval", "show", summary["run_id"][:8], "-c", config, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["run_id"] == summary["run_id"]
    cases = [(r["index"], r["repeat"]) for r in shown["results"]]
    assert cases == [(i, r) for i in range(3) for r in range(2)]
    first = shown["results"][0]
    assert first["passed"] is True and first["score"] == 1.0
    assert first["scores"][0]["name"] == "icontains" and first["scores"][0]["reason"]
    assert first["output"]["text"] == "Paris is the capital"
    assert {"cost_usd", "latency_ms"} <= set(first["output"])

    written = json.loads((reports / "results.json").read_text(encoding="utf-8"))
    assert written["run_id"] == summary["run_id"] and len(written["results"]) == 6
    suite = ElementTree.parse(reports / "junit.xml").getroot()
    assert len(suite.findall(".//testcase")) == 6 and not suite.findall(".//failure")
    assert "<html" in (reports / "report.html").read_text(encoding="utf-8")

    code, out, _ = tether_cli("eval", "show", summary["run_id"], "-c", config)
    assert code == 0 and "Paris is the capital" in out and "icontains" in out
    code, out, _ = tether_cli("eval", "list", "-c", config, "--json")
    assert code == 0 and [r["run_id"] for r in json.loads(out)] == [summary["run_id"]]


def test_a_gate_that_must_fail_does(tmp_path: Path) -> None:
    impossible = [{"type": "equals", "value": "an answer no model gives"}]
    config = project(tmp_path, rows_of(4, **{"assert": impossible}))
    code, out, err = tether_cli("eval", "run", "geo", "-c", config, "--min-pass-rate", "0.5")
    assert code == 1
    assert "gate failed: pass rate 0.000 < min_pass_rate 0.5" in err
    code, out, err = tether_cli("eval", "run", "geo", "-c", config, "--json")  # evals.gate
    assert code == 1 and json.loads(out)["gate"]["passed"] is False
    config = project(tmp_path, rows_of(4), gate=1.0)
    assert tether_cli("eval", "run", "geo", "-c", config)[0] == 0


def test_a_planted_regression_fails_the_baseline_comparison(tmp_path: Path) -> None:
    config = project(tmp_path, rows_of(30), gate=0.0)  # only the comparison can fail the run
    args = ["eval", "run", "geo", "-c", config, "--baseline", "default", "--json"]
    code, out, err = tether_cli(*args, "--variant", "candidate")
    assert code == 0, err  # regressed, but not asked to fail on it
    code, out, err = tether_cli(*args, "--variant", "candidate", "--fail-on-regression")
    assert code == 1 and "regression against" in err
    data = json.loads(out)
    assert data["comparison"]["verdict"] == "regressed"
    assert data["baseline"]["variant"] == "default" and data["variant"] == "candidate"

    code, out, err = tether_cli(*args, "--variant", "same", "--fail-on-regression")
    assert code == 0, err
    assert json.loads(out)["comparison"]["verdict"] == "no significant change"
    baseline_id = json.loads(out)["baseline"]["run_id"]
    code, out, err = tether_cli(
        "eval", "run", "geo", "-c", config, "--baseline", baseline_id, "--json"
    )
    assert code == 0 and json.loads(out)["comparison"]["verdict"] == "no significant change"


def test_usage_errors_exit_2_and_say_what_to_fix(tmp_path: Path) -> None:
    config = project(tmp_path, [{"vars": {"q": "x"}, "assert": [{"type": "no-such-assert"}]}])
    code, _, err = tether_cli("eval", "run", "geo", "-c", config)
    assert code == 2 and "no-such-assert" in err and "geo.jsonl" in err
    config = project(tmp_path, rows_of(2))
    code, _, err = tether_cli("eval", "run", "geo", "-c", config, "--variant", "nope")
    assert code == 2 and "no variant 'nope'" in err
    code, _, err = tether_cli("eval", "run", "geo", "-c", config, "--baseline", "nothing")
    assert code == 2 and "neither a variant" in err
    code, _, err = tether_cli("eval", "show", "ev_ffffffff", "-c", config)
    assert code == 2 and "no eval run matches" in err


def test_the_progress_bar_shows_rows_per_second_pass_rate_and_cost() -> None:
    from io import StringIO

    from rich.console import Console

    from tether.cli.evals import BarProgress
    from tether.evals.types import Output

    screen = StringIO()
    console = Console(file=screen, force_terminal=True, width=150)
    tally = Tally(expected=2)
    with BarProgress(console, 2, "geo/default") as bar:
        bar.note("rate_limit_exceeded: waiting 1.0s")
        result = CaseResult("ev_x", 0, 0, "c", True, 1.0, [], Output("Paris", cost_usd=0.25))
        tally.add(result, track_flaky=False)
        bar.update(tally)
    shown = screen.getvalue()
    assert "geo/default" in shown and "1/2" in shown and "rows/s" in shown
    assert "pass 100.0%" in shown and "$0.2500" in shown
    assert "rate_limit_exceeded: waiting 1.0s" in shown


async def test_a_store_that_fails_mid_run_fails_the_run_and_records_it(
    tmp_path: Path, store: Store
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    class DropTable(Notes):
        def update(self, tally: Tally) -> None:
            if tally.total == 1:  # the database loses the results table after the first row
                with store.engine.begin() as connection:
                    connection.execute(text("DROP TABLE eval_results"))

    tether = tether_for()
    scripted(tether).script = ["Paris"]
    dataset = load_dataset(write_rows(tmp_path / "d.jsonl", rows_of(20)))
    runner = EvalRunner(
        tether, "geo", dataset, store=store.evals, settings=RunSettings(concurrency=2),
        progress=DropTable(),
    )  # fmt: skip
    with pytest.raises(OperationalError, match="eval_results"):
        await runner.run()
    await tether.aclose()
    stored = store.evals.get_run(runner.run_record.id)
    assert stored.status == "failed" and stored.summary["total"] >= 1
