"""Online evaluation (``evals.online``): scorers on a sample of live calls, after the caller has
its answer; results on the trace (memory and store), per feature and variant in
``Tether.online_scores``, in Prometheus, and in ``tether eval online`` over a SQLite store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tether import Tether
from tether.cli.evals import app as eval_app
from tether.config import parse_config
from tether.config.store import StoreConfig
from tether.errors import ConfigError
from tether.evals.online import OnlineEvaluator, OnlineFeature, sampled, stored_scores
from tether.evals.types import Assertion, Case, Output, Score
from tether.gateway.runtime import GatewayRuntime, GatewaySettings
from tether.providers.scripted import ScriptedProvider
from tether.store.sink import StoreSink
from tether.store.store import Store
from tether.telemetry.metrics import PrometheusMetrics
from tether.telemetry.sink import MemorySink
from tether.telemetry.trace import Trace
from tether.types import ModelRequest

ME = "tests.unit.test_eval_online"


async def slow_scorer(case: Case, output: Output) -> Score:
    """A custom scorer that takes its time (a judge would): it must never delay the caller."""
    await asyncio.sleep(0.5)
    return Score(1.0, True, f"slow: {case.vars.get('q')}")


def boom_scorer(case: Case, output: Output) -> Score:
    raise ValueError("the scorer broke")


class Raising:
    """A scorer (the protocol itself, not a custom function the registry guards) that raises."""

    name = "raising"

    async def score(self, case: Case, output: Output) -> Score:
        raise ValueError("the scorer broke")


def add_raising(tether: Tether) -> None:
    """Give feature ``f`` the raising scorer before its configured ones."""
    assert tether.online is not None
    feature = tether.online.features["f"]
    feature.scorers.insert(0, (Assertion("raising"), Raising()))


def paris_scorer(case: Case, output: Output) -> Score:
    found = "paris" in output.text.lower()
    return Score(1.0 if found else 0.0, found, "mentions Paris" if found else "no Paris")


def config_for(scorers: list[Any], sample: float = 1.0, capture: str = "full") -> str:
    return f"""
providers:
  s: {{kind: scripted}}
features:
  f:
    prompt: {{template: "Q: {{{{ q }}}}"}}
    model: s:m
    on_failure: {{respond: sorry}}
    trace: {{capture: {capture}}}
    variants:
      worse: {{prompt: {{system: "Be wrong."}}}}
    evals:
      online: {{sample: {sample}, scorers: {json.dumps(scorers)}}}
  plain:
    prompt: {{template: "{{{{ q }}}}"}}
    model: s:m
    on_failure: {{respond: sorry}}
"""


def answer(request: ModelRequest) -> str:
    """Paris, unless the variant's system prompt asks for a wrong answer."""
    wrong = request.messages[0].role == "system" and "wrong" in (request.messages[0].content or "")
    return "It is London." if wrong else "It is Paris."


def make(text: str, **kwargs: Any) -> Tether:
    provider = ScriptedProvider(answer, name="s")
    return Tether(parse_config(text, "t.yaml", {}), providers={"s": provider}, **kwargs)


def evaluations(trace: Trace | None) -> list[dict[str, Any]]:
    assert trace is not None
    return [e.data for e in trace.events if e.kind == "evaluation"]


def test_sampling_is_deterministic_from_the_trace_id_and_near_the_rate() -> None:
    ids = [f"{i:032x}" for i in range(4000)]
    picked = [i for i in ids if sampled(i, 0.25)]
    assert 850 < len(picked) < 1150  # ~1000 expected; a hash, not a coin flip per reader
    assert picked == [i for i in ids if sampled(i, 0.25)]  # another replica decides the same
    assert all(sampled(i, 1.0) for i in ids) and not any(sampled(i, 0.0) for i in ids)
    assert set(i for i in ids if sampled(i, 0.1)) <= set(picked)  # a smaller sample is nested


async def test_every_call_is_scored_at_sample_1_and_results_add_up_per_variant() -> None:
    tether = make(config_for([f"{ME}:paris_scorer"]))
    for _ in range(3):
        await tether.run("f", {"q": "capital of France?"})
    for _ in range(2):
        await tether.run("f", {"q": "capital of France?"}, variant="worse")
    await tether.run("plain", {"q": "not evaluated"})
    await tether.aclose()
    scores = tether.online_scores
    default, worse = scores.stats("f", "default"), scores.stats("f", "worse")
    assert (default.count, default.passed, default.mean) == (3, 3, 1.0)
    assert (worse.count, worse.passed, worse.mean) == (2, 0, 0.0)
    assert scores.stats("f").count == 5 and scores.stats("plain").count == 0
    plain = [t for t in tether.traces.traces if t.feature == "plain"]
    assert evaluations(plain[0]) == []  # a feature without evals.online is never scored
    event = evaluations(tether.traces.traces[0])[0]
    assert event["passed"] is True and event["score"] == 1.0 and event["reason"] == "mentions Paris"


async def test_a_half_sample_scores_exactly_the_calls_its_hash_picks() -> None:
    tether = make(config_for([f"{ME}:paris_scorer"], sample=0.5))
    results = [await tether.run("f", {"q": str(i)}) for i in range(30)]
    await tether.aclose()
    for result in results:
        scored = bool(evaluations(tether.traces.get(result.trace_id)))
        assert scored == sampled(result.trace_id, 0.5)
    assert 0 < tether.online_scores.stats("f").count < 30


async def test_a_slow_scorer_never_delays_the_caller_and_lands_on_the_trace_after(
    tmp_path: Path,
) -> None:
    store = StoreSink(StoreConfig(url=f"sqlite:///{tmp_path / 'traces.db'}"))
    tether = make(config_for([f"{ME}:slow_scorer"]), store=store)
    await tether.run("plain", {"q": "warm up"})  # the store and the pipeline are open
    started = time.perf_counter()
    result = await tether.run("f", {"q": "capital?"})
    took = time.perf_counter() - started
    chunks = [c async for c in tether.stream("f", {"q": "streamed"})]
    streamed = time.perf_counter() - started - took
    assert took < 0.2 and streamed < 0.2, (took, streamed)  # the scorer sleeps 0.5 s
    trace = tether.traces.get(result.trace_id)
    assert evaluations(trace) == []  # in memory at once; not scored yet
    assert tether.online is not None and tether.online.pending == 2
    await tether.aclose()  # drains the scoring, then the store writes every trace
    assert evaluations(trace)[0]["reason"] == "slow: capital?"
    stream_result = chunks[-1].result
    assert stream_result is not None
    with Store.open(store.config) as opened:
        for trace_id in (result.trace_id, stream_result.trace_id):
            stored = opened.traces.get(trace_id)
            assert stored is not None
            found = [e["data"] for e in stored["events"] if e["kind"] == "evaluation"]
            assert found and found[0]["name"] == f"{ME}:slow_scorer"
            assert found[0]["passed"] is True


async def test_a_raising_scorer_is_an_error_event_and_the_trace_is_still_written() -> None:
    written = MemorySink()
    tether = make(config_for([f"{ME}:boom_scorer", f"{ME}:paris_scorer"]), sink=written)
    add_raising(tether)
    result = await tether.run("f", {"q": "x"})
    await tether.aclose()
    assert [t.id for t in written.traces] == [result.trace_id]
    raised, boom, fine = evaluations(written.traces[0])
    assert raised["name"] == "raising" and raised["label"] == "error"
    assert raised["error"] == "ValueError: the scorer broke" and "score" not in raised
    assert boom["passed"] is False and "the scorer broke" in boom["reason"]  # a custom fn: fails
    assert fine["passed"] is True  # the other scorers still ran
    stats = tether.online_scores.stats("f", scorer="raising")
    assert (stats.count, stats.errors) == (0, 1)
    assert tether.online_scores.stats("f", scorer=f"{ME}:boom_scorer").failed == 1


async def test_a_sample_of_zero_scores_nothing_and_holds_nothing_back() -> None:
    tether = make(config_for([f"{ME}:slow_scorer"]))
    built = OnlineEvaluator.build(tether.config, tether, now=MemorySink(), then=None)
    assert built is not None
    downstream = MemorySink()
    evaluator = OnlineEvaluator(
        {"f": OnlineFeature(0.0, built.features["f"].scorers)}, now=MemorySink(), then=downstream
    )
    for _ in range(20):
        await evaluator.write(Trace(feature="f", output="Paris", status="ok"))
    assert evaluator.pending == 0 and len(downstream.traces) == 20
    assert all(not t.events for t in downstream.traces)
    await tether.aclose()


async def test_an_overloaded_evaluator_drops_counts_and_passes_the_trace_on() -> None:
    tether = make(config_for([f"{ME}:slow_scorer"]))
    memory, downstream = MemorySink(), MemorySink()
    evaluator = OnlineEvaluator.build(
        tether.config, tether, now=memory, then=downstream, queue_size=1
    )
    assert evaluator is not None
    traces = [Trace(feature="f", output="Paris", status="ok") for _ in range(3)]
    for trace in traces:
        await evaluator.write(trace)
    assert len(memory.traces) == 3 and evaluator.pending == 1
    assert [t.id for t in downstream.traces] == [traces[1].id, traces[2].id]  # not held back
    assert [e.kind for e in traces[2].events] == ["evaluation_dropped"]
    assert evaluator.scores.dropped == {"f": 2}
    await evaluator.aclose(timeout_s=0.05)  # too short for the 0.5 s scorer: cancelled
    assert [t.id for t in downstream.traces][-1] == traces[0].id  # still written
    assert [e.kind for e in traces[0].events] == ["evaluation_cancelled"]
    await tether.aclose()


async def test_scores_feed_the_prometheus_metrics() -> None:
    metrics = PrometheusMetrics()
    tether = make(config_for([f"{ME}:paris_scorer"]), sink=metrics)
    add_raising(tether)
    await tether.run("f", {"q": "x"})
    await tether.run("f", {"q": "x"}, variant="worse")
    await tether.aclose()
    text = metrics.render().decode()
    paris, boom = f'scorer="{ME}:paris_scorer"', 'scorer="raising"'
    total = "tether_eval_online_total"
    assert f'{total}{{feature="f",result="pass",{paris},variant="default"}} 1.0' in text
    assert f'{total}{{feature="f",result="fail",{paris},variant="worse"}} 1.0' in text
    assert f'{total}{{feature="f",result="error",{boom},variant="worse"}} 1.0' in text
    assert f'tether_eval_online_score_sum{{feature="f",{paris},variant="default"}} 1.0' in text


def test_an_unknown_online_scorer_fails_at_start_naming_where() -> None:
    with pytest.raises(ConfigError, match=r"features\.f\.evals\.online\.scorers.*nope"):
        make(config_for(["nope"]))


def test_a_sample_of_zero_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match="sample"):
        parse_config(config_for([f"{ME}:paris_scorer"], sample=0), "t.yaml", {})


async def test_metadata_capture_runs_only_the_scorers_that_need_no_text() -> None:
    scorers = [f"{ME}:paris_scorer", {"type": "latency", "threshold": 60000}]
    tether = make(config_for(scorers, capture="metadata"))
    result = await tether.run("f", {"q": "x"})
    await tether.aclose()
    trace = tether.traces.get(result.trace_id)
    assert trace is not None
    (event,) = evaluations(trace)
    assert event["name"] == "latency" and event["passed"] is True
    skipped = [e.data for e in trace.events if e.kind == "evaluation_skipped"]
    assert skipped[0]["scorers"] == [f"{ME}:paris_scorer"]


def test_eval_online_adds_up_the_stored_results(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(config_for([f"{ME}:paris_scorer"]), encoding="utf-8")

    async def serve() -> None:
        tether = make(config.read_text(), store=StoreSink(StoreConfig(), config_dir=tmp_path))
        for variant in ("default", "default", "worse"):
            await tether.run("f", {"q": "x"}, variant=variant)
        await tether.aclose()

    asyncio.run(serve())
    with Store.open(StoreConfig(), config_dir=tmp_path) as store:
        assert stored_scores(store, feature="plain").by_key == {}
    runner = CliRunner()
    out = runner.invoke(eval_app, ["online", "--config", str(config), "--since", "1h", "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["variant"]: r for r in json.loads(out.output)["scores"]}
    assert (rows["default"]["count"], rows["default"]["pass_rate"]) == (2, 1.0)
    assert (rows["worse"]["count"], rows["worse"]["pass_rate"]) == (1, 0.0)
    args = ["online", "--config", str(config), "--feature", "f"]
    table = runner.invoke(eval_app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "paris_scorer" in table.output and "50.0%" not in table.output
    assert "100.0%" in table.output


async def test_the_gateway_scores_counts_and_stores_online_results(tmp_path: Path) -> None:
    config = parse_config(config_for([f"{ME}:slow_scorer"]), "t.yaml", {})
    store = Store.from_url(f"sqlite:///{tmp_path / 'gateway.db'}")
    provider = ScriptedProvider(answer, name="s")
    runtime = GatewayRuntime(GatewaySettings(config), providers={"s": provider}, store=store)
    await runtime.start()
    result = await runtime.tether.run("f", {"q": "x"})
    assert "tether_eval_online_total{" not in runtime.render_metrics().decode()  # not yet
    await runtime.stop()  # scoring drained before the trace writer stops
    text = runtime.render_metrics().decode()
    assert f'result="pass",scorer="{ME}:slow_scorer",variant="default"}} 1.0' in text
    stored = store.traces.get(result.trace_id)
    assert stored is not None and [e["kind"] for e in stored["events"]] == ["evaluation"]
    store.close()


async def test_a_judge_scorer_reports_its_own_usage_on_the_event() -> None:
    text = config_for([{"type": "llm-rubric", "value": "names a capital city"}])
    text = text.replace("  s: {kind: scripted}", "  s: {kind: scripted}\n  j: {kind: scripted}")
    text = text.replace("    evals:\n", "    evals:\n      judge: {model: j:judge}\n")
    verdict = '{"reason": "Paris is a capital", "pass": true, "score": 0.8}'
    judge = ScriptedProvider([verdict], name="j")
    provider = ScriptedProvider(answer, name="s")
    tether = Tether(parse_config(text, "t.yaml", {}), providers={"s": provider, "j": judge})
    result = await tether.run("f", {"q": "capital of France?"})
    await tether.aclose()
    (event,) = evaluations(tether.traces.get(result.trace_id))
    assert event["name"] == "llm-rubric" and event["passed"] is True and event["score"] == 0.8
    assert event["judge"]["calls"] == 1 and event["judge"]["output_tokens"] > 0
    assert result.cost_usd == 0.0 and result.usage.output_tokens == 3  # the feature's own
