"""The response cache (``cache:``) through the SDK on the scripted provider, with the in-process
state backend: a second identical call is a hit (the provider is asked once), entries are kept
apart per variant, config version, scope identity and request, sampled requests are not cached
unless the feature opts in, ``cache=False`` neither reads nor fills, entries expire, a cached
answer still passes the output guards, streams replay a hit, embeddings are cached, and only
normal answers of the model the call started on are stored."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether import Tether
from tether.config.models import TetherConfig
from tether.errors import UpstreamError
from tether.pipeline.feature import CompiledFeature
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.state import MemoryState
from tether.telemetry.trace import Trace
from tether.types import ToolCall

EMAIL = "ana.lopez@example.com"


def config(
    cache: dict[str, Any] | None = None,
    *,
    temperature: float | None = 0,
    system: str = "You help.",
    fallbacks: list[str] | None = None,
    guards: dict[str, Any] | None = None,
    kind: str = "chat",
) -> TetherConfig:
    feature: dict[str, Any] = {
        "model": "up:big",
        "fallbacks": fallbacks or [],
        "retry": {"max_attempts": 1},
        "cache": {"ttl_s": 60} if cache is None else cache,
    }
    if kind == "chat":
        feature |= {
            "prompt": {"system": system, "template": "{{ message }}"},
            "temperature": temperature,
            "on_failure": {"respond": "Sorry, not now."},
            "guards": guards or {},
        }
    else:
        feature |= {"kind": "embedding", "on_failure": {"raise": True}}
    return TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted"}, "spare": {"kind": "scripted"}},
            "features": {"f": feature},
        }
    )


def make(
    cfg: TetherConfig,
    up: ScriptedProvider | None = None,
    *,
    state: MemoryState | None = None,
    spare: ScriptedProvider | None = None,
    **kwargs: Any,
) -> tuple[Tether, ScriptedProvider]:
    up = up or ScriptedProvider([Reply("the answer")], name="up")
    spare = spare or ScriptedProvider([Reply("spare answer")], name="spare")
    tether = Tether(cfg, providers={"up": up, "spare": spare}, state=state, **kwargs)
    return tether, up


def events(trace: Trace | None, kind: str) -> list[dict[str, Any]]:
    assert trace is not None
    return [e.data for e in trace.events if e.kind == kind]


async def ask(tether: Tether, message: str = "hi", **kwargs: Any) -> Any:
    return await tether.run("f", {"message": message}, **kwargs)


async def test_second_identical_call_is_a_free_hit() -> None:
    up = ScriptedProvider([Reply("the answer", usage=None)], name="up")
    tether, _ = make(config(), up)
    first = await ask(tether)
    second = await ask(tether)
    assert len(up.calls) == 1  # the model was asked once
    assert first.trace is not None and first.trace.cache == "miss"
    assert events(first.trace, "cache_stored")
    assert second.output == "the answer" and not second.degraded
    assert second.trace is not None and second.trace.cache == "hit"
    assert second.usage.total_tokens == 0 and second.cost_usd == 0.0
    assert second.trace.attempts == []
    (hit,) = events(second.trace, "cache_hit")
    assert hit["usage"]["total_tokens"] == first.usage.total_tokens > 0  # kept for the record
    assert hit["key"] == events(first.trace, "cache_miss")[0]["key"]
    assert len(hit["key"]) == 12


async def test_entries_are_apart_per_request_scope_variant_and_version() -> None:
    state = MemoryState()
    tether, up = make(config({"ttl_s": 60, "scope": "user"}), state=state)
    await ask(tether, user="ana")
    await ask(tether, user="ana")
    assert len(up.calls) == 1
    await ask(tether, user="bob")  # another user: another entry
    await ask(tether, "something else", user="ana")  # another request
    assert len(up.calls) == 3

    class Candidate:
        def pick(self, feature: CompiledFeature, trace: Trace) -> str:
            return "candidate"

    other_variant, up2 = make(
        config({"ttl_s": 60, "scope": "user"}), state=state, variant_picker=Candidate()
    )
    result = await ask(other_variant, user="ana")
    assert result.trace.cache == "miss" and len(up2.calls) == 1

    same, up3 = make(config({"ttl_s": 60, "scope": "user"}), state=state)
    assert (await ask(same, user="ana")).trace.cache == "hit"  # same state, same version
    assert up3.calls == []

    changed, up4 = make(config({"ttl_s": 60, "scope": "user"}, system="Be brief."), state=state)
    assert (await ask(changed, user="ana")).trace.cache == "miss"  # a new config version
    assert len(up4.calls) == 1


async def test_a_scoped_cache_without_identity_is_bypassed() -> None:
    tether, up = make(config({"ttl_s": 60, "scope": "tenant"}))
    for _ in range(2):
        result = await ask(tether, user="ana")
        assert result.trace.cache == "bypass"
        assert events(result.trace, "cache_bypass") == [{"why": "no tenant"}]
    assert len(up.calls) == 2
    await ask(tether, tenant="acme")
    assert (await ask(tether, tenant="acme")).trace.cache == "hit"
    assert (await ask(tether, tenant="other")).trace.cache == "miss"


async def test_sampled_requests_are_cached_only_when_the_feature_opts_in() -> None:
    for temperature in (None, 0.7):  # None: the model's default, which samples
        tether, up = make(config(temperature=temperature))
        first, second = await ask(tether), await ask(tether)
        assert len(up.calls) == 2
        assert first.trace.cache == second.trace.cache == "bypass"
        assert events(second.trace, "cache_bypass") == [{"why": "sampled"}]
    tether, up = make(config({"ttl_s": 60, "sampled": True}, temperature=0.7))
    await ask(tether)
    assert (await ask(tether)).trace.cache == "hit"
    assert len(up.calls) == 1


async def test_cache_false_neither_reads_nor_fills() -> None:
    tether, up = make(config())
    bypassed = await ask(tether, cache=False)
    assert bypassed.trace.cache == "bypass"
    assert events(bypassed.trace, "cache_bypass") == [{"why": "caller"}]
    assert (await ask(tether)).trace.cache == "miss"  # the bypassed answer was not stored
    assert (await ask(tether, cache=False)).trace.cache == "bypass"  # nor read
    assert len(up.calls) == 3
    assert (await ask(tether)).trace.cache == "hit"


async def test_entries_expire_after_ttl() -> None:
    tether, up = make(config({"ttl_s": 0.2}))
    await ask(tether)
    assert (await ask(tether)).trace.cache == "hit"
    await asyncio.sleep(0.3)
    assert (await ask(tether)).trace.cache == "miss"
    assert len(up.calls) == 2


async def test_a_cached_answer_still_passes_the_output_guards() -> None:
    up = ScriptedProvider([Reply(f"Write to {EMAIL} today")], name="up")
    guards = {"output": [{"pii": {"action": "redact"}}]}
    tether, _ = make(config(guards=guards), up)
    first = await ask(tether)
    second = await ask(tether)
    assert len(up.calls) == 1 and second.trace.cache == "hit"
    for result in (first, second):
        assert EMAIL not in result.output
        assert "today" in result.output
    # the guard ran on the hit too: its verdict is on the hit's trace
    assert [e for e in second.trace.events if e.kind == "guard"]


async def test_a_stream_is_replayed_from_the_cache() -> None:
    up = ScriptedProvider([Reply("one two three four", chunks=4)], name="up")
    tether, _ = make(config(), up)
    first = [c async for c in tether.stream("f", {"message": "hi"})]
    second = [c async for c in tether.stream("f", {"message": "hi"})]
    assert len(up.calls) == 1
    text = "".join(c.text for c in first)
    assert text == "one two three four"
    assert "".join(c.text for c in second) == text
    done = second[-1].result
    assert done is not None and done.trace is not None and done.trace.cache == "hit"
    assert first[-1].result is not None and first[-1].result.trace.cache == "miss"
    # a streamed call is also a hit for a call in one piece, and the other way round
    assert (await ask(tether)).trace.cache == "hit"


async def test_a_stream_the_caller_stops_reading_is_not_stored() -> None:
    up = ScriptedProvider([Reply("one two three four", chunks=4, chunk_delay_s=0.01)], name="up")
    tether, _ = make(config(), up)
    chunks = tether.stream("f", {"message": "hi"})
    async for _ in chunks:
        break
    await chunks.aclose()
    assert (await ask(tether)).trace.cache == "miss"


async def test_embeddings_are_cached() -> None:
    tether, up = make(config(kind="embedding"))
    first = await tether.embed("f", ["a text", "another"])
    second = await tether.embed("f", ["a text", "another"])
    assert len(up.embed_calls) == 1
    assert second.vectors == first.vectors and len(second.vectors) == 2
    assert second.trace is not None and second.trace.cache == "hit"
    assert second.usage.total_tokens == 0 and second.cost_usd == 0.0
    await tether.embed("f", ["a text"])  # other inputs: another entry
    await tether.embed("f", ["a text", "another"], dimensions=4)  # other dimensions: too
    assert len(up.embed_calls) == 3


async def test_failure_and_fallback_answers_are_not_stored() -> None:
    up = ScriptedProvider([Fail(UpstreamError("down"))], name="up")
    tether, _ = make(config(fallbacks=["spare:small"]), up)
    fallback = await ask(tether)
    assert fallback.output == "spare answer"
    assert events(fallback.trace, "cache_not_stored") == [
        {"key": events(fallback.trace, "cache_miss")[0]["key"], "why": "fallback"}
    ]
    assert (await ask(tether)).trace.cache == "miss"

    tether, _ = make(config(), ScriptedProvider([Fail(UpstreamError("down"))], name="up"))
    failed = await ask(tether)
    assert failed.degraded and failed.output == "Sorry, not now."
    assert (await ask(tether)).trace.cache == "miss"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_hit_does_not_ask_the_model_at_all(stream: bool) -> None:
    """Many concurrent calls after the first: none reaches the provider."""
    tether, up = make(config())
    await ask(tether)
    if stream:

        async def one() -> str:
            return "".join([c.text async for c in tether.stream("f", {"message": "hi"})])

        texts = await asyncio.gather(*(one() for _ in range(20)))
    else:
        texts = [r.output for r in await asyncio.gather(*(ask(tether) for _ in range(20)))]
    assert set(texts) == {"the answer"}
    assert len(up.calls) == 1


async def test_streamed_tool_calls_are_not_stored_but_whole_ones_are() -> None:
    """A streamed answer is put together from its text: its tool calls came as deltas and
    are not in it, so it is not stored (a hit would lose them); the same answer in one piece
    is stored with them and a hit gives them back."""
    call = ToolCall("call_1", "lookup", '{"q": "x"}')
    up = ScriptedProvider([Reply("", tool_calls=[call])], name="up")
    tether, _ = make(config(), up)
    streamed = [c async for c in tether.stream("f", {"message": "hi"})]
    done = streamed[-1].result
    assert done is not None and done.trace is not None
    assert [e["why"] for e in events(done.trace, "cache_not_stored")] == ["streamed tool calls"]
    await ask(tether)
    hit = await ask(tether)
    assert hit.trace.cache == "hit" and len(up.calls) == 2
    assert hit.tool_calls is not None
    assert [(t.id, t.name, t.arguments) for t in hit.tool_calls] == [
        ("call_1", "lookup", '{"q": "x"}')
    ]
    assert hit.finish_reason == "tool_calls"
