"""The pipeline's failure path, results, traces and the sync SDK, on the scripted provider."""

from __future__ import annotations

import json

import pytest

from tether import FeatureFailed, FeatureNotFound, InvalidRequest, SyncTether, Tether
from tether.config import parse_config
from tether.errors import StreamInterrupted, UpstreamError
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.telemetry.sink import MemorySink

CONFIG = """\
providers:
  up: {kind: scripted}
  spare: {kind: scripted}
features:
  answer:
    prompt: {system: "Be brief about {{ topic }}.", template: "Q: {{ message }}"}
    model: up:big
    retry: {max_attempts: 1}
    on_failure: {feature: backup}
  backup:
    prompt: {template: "{{ message }}"}
    model: spare:small
    retry: {max_attempts: 1}
    on_failure: {respond: "Sorry, later."}
  strict:
    prompt: {template: "hello"}
    model: up:big
    retry: {max_attempts: 1}
    on_failure: {raise: true}
"""


def make(up: ScriptedProvider, spare: ScriptedProvider | None = None) -> Tether:
    providers = {"up": up, "spare": spare or ScriptedProvider([Reply("spare answer")])}
    return Tether(parse_config(CONFIG, "t.yaml", {}), providers=providers)


async def test_prompt_rendered_and_result_complete() -> None:
    up = ScriptedProvider([Reply("42", usage=None)], name="up")
    result = await make(up).run(
        "answer", {"message": "meaning?", "topic": "life"}, user="u1", metadata={"k": "v"}
    )
    (request,) = up.calls
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be brief about life."),
        ("user", "Q: meaning?"),
    ]
    assert result.output == "42" and result.model == "up:big" and not result.degraded
    assert result.usage.input_tokens == 6 and result.usage.output_tokens == 1
    assert result.latency_ms > 0 and len(result.trace_id) == 32
    assert result.trace is not None
    assert result.trace.user == "u1" and result.trace.metadata == {"k": "v"}
    data = result.to_dict()
    assert set(data) >= {
        "output",
        "degraded",
        "reason",
        "trace_id",
        "usage",
        "cost_usd",
        "latency_ms",
        "variant",
    }
    json.dumps(result.trace.to_dict())


async def test_failure_path_to_another_feature_is_degraded() -> None:
    up = ScriptedProvider([Fail(UpstreamError("down", status_code=502))], name="up")
    result = await make(up).run("answer", {"message": "x", "topic": "y"})
    assert result.output == "spare answer"
    assert result.degraded and result.reason == "upstream_error"
    assert result.model == "spare:small"
    assert result.trace is not None
    (event,) = [e for e in result.trace.events if e.kind == "failure_path"]
    assert event.data["via"] == "feature" and event.data["feature"] == "backup"


async def test_a_provider_bug_is_a_failed_attempt_not_an_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bug(request: object) -> str:
        raise KeyError("choices")

    tether = make(ScriptedProvider(bug, name="up"))
    result = await tether.run("answer", {"message": "x", "topic": "y"})
    assert result.output == "spare answer" and result.reason == "provider_bug"
    assert result.trace is not None
    assert result.trace.attempts[0].error_class == "UpstreamError"
    assert "KeyError" in (result.trace.attempts[0].error or "")
    with pytest.raises(FeatureFailed) as info:
        await tether.run("strict")
    assert info.value.reason == "provider_bug"
    chunks = [c async for c in tether.stream("answer", {"message": "x", "topic": "y"})]
    assert chunks[-1].result is not None and chunks[-1].result.reason == "provider_bug"
    assert "up:big raised KeyError" in caplog.text


async def test_failure_path_chains_to_static_response() -> None:
    up = ScriptedProvider([Fail(UpstreamError("down"))], name="up")
    spare = ScriptedProvider([Fail(UpstreamError("also down"))], name="spare")
    result = await make(up, spare).run("answer", {"message": "x", "topic": "y"})
    assert result.output == "Sorry, later."
    assert result.degraded and result.model is None
    assert result.trace is not None and result.trace.status == "degraded"
    assert [e.data["via"] for e in result.trace.events if e.kind == "failure_path"] == [
        "feature",
        "respond",
    ]


async def test_failure_path_raise() -> None:
    up = ScriptedProvider([Fail(UpstreamError("down", status_code=503))], name="up")
    tether = make(up)
    with pytest.raises(FeatureFailed) as info:
        await tether.run("strict")
    assert isinstance(info.value.cause, UpstreamError)
    assert info.value.reason == "upstream_error"
    (trace,) = tether.traces.traces
    assert trace.status == "error" and trace.reason == "upstream_error"


async def test_caller_mistakes_raise_instead_of_failure_path() -> None:
    tether = make(ScriptedProvider())
    with pytest.raises(InvalidRequest, match="'message' is undefined"):
        await tether.run("answer", {"topic": "y"})
    with pytest.raises(FeatureNotFound, match="declared: answer, backup, strict"):
        await tether.run("nope")


async def test_stream_failure_path_respond_and_feature() -> None:
    up = ScriptedProvider([Fail(UpstreamError("down"))], name="up")
    chunks = [c async for c in make(up).stream("answer", {"message": "x", "topic": "y"})]
    assert "".join(c.text for c in chunks) == "spare answer"
    final = chunks[-1].result
    assert final is not None and final.degraded and final.reason == "upstream_error"
    spare = ScriptedProvider([Fail(UpstreamError("down"))], name="spare")
    chunks = [c async for c in make(up, spare).stream("answer", {"message": "x", "topic": "y"})]
    assert [c.text for c in chunks] == ["Sorry, later.", ""]
    assert chunks[-1].done and chunks[-1].result is not None and chunks[-1].result.degraded


async def test_stream_raise_before_and_error_event_after_commit() -> None:
    up = ScriptedProvider([Fail(UpstreamError("down"))], name="up")
    with pytest.raises(FeatureFailed):
        _ = [c async for c in make(up).stream("strict")]
    up = ScriptedProvider([Reply("a b c d", cut_after_chunks=1)], name="up")
    chunks = [c async for c in make(up).stream("strict")]
    assert chunks[0].text == "a"
    assert chunks[-1].done and chunks[-1].error is not None
    trace = chunks[-1].result.trace if chunks[-1].result else None
    assert trace is not None
    assert trace.attempts[0].error_class == "UpstreamError"
    assert [e.kind for e in trace.events] == ["stream_interrupted"]
    assert chunks[-1].result is not None
    assert chunks[-1].result.reason == StreamInterrupted.reason


async def test_every_call_reaches_the_sink() -> None:
    sink = MemorySink()
    up = ScriptedProvider([Reply("ok")], name="up")
    tether = Tether(parse_config(CONFIG, "t.yaml", {}), providers={"up": up}, sink=sink)
    await tether.run("strict")
    _ = [c async for c in tether.stream("strict")]
    assert [t.status for t in sink.traces] == ["ok", "ok"]
    assert tether.traces.get(sink.traces[0].id) is sink.traces[0]


def test_sync_wrapper_same_names() -> None:
    up = ScriptedProvider([Reply("sync answer")], name="up")
    with SyncTether(make(up)) as tether:
        assert tether.run("strict").output == "sync answer"
        chunks = list(tether.stream("strict"))
        assert "".join(c.text for c in chunks) == "sync answer"
        assert chunks[-1].done
