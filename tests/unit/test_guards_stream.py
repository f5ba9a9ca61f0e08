from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tether.config.guards import GuardsConfig
from tether.errors import GuardBlocked
from tether.guards.base import GuardContext
from tether.guards.runner import GuardRunner
from tether.telemetry.trace import Trace


def runner(output: list[Any], **stream: int) -> GuardRunner:
    cfg = {"output": output, "stream": stream} if stream else {"output": output}
    return GuardRunner(GuardsConfig.model_validate(cfg))


def pieces(text: str, rng: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 7)
        out.append(text[i : i + n])
        i += n
    return out


ANSWER = (
    "Thanks for waiting. I looked at the account and the card 4111 1111 1111 1111 is linked "
    "to it. Our records also show the phone +44 20 7946 0958 and the address jane@acme.io. "
) * 3


@pytest.mark.parametrize("seed", range(8))
def test_redaction_mid_stream_matches_whole_text_redaction(seed: int) -> None:
    r = runner(["pii"], holdback_chars=40, min_step_chars=8)
    stream = r.stream(GuardContext())
    shown = [stream.feed(p) for p in pieces(ANSWER, random.Random(seed))]
    shown.append(stream.finish())
    text = "".join(shown)
    whole = r.check_output(ANSWER, GuardContext()).text
    assert text == whole == stream.text
    assert "4111" not in text and "7946" not in text and "jane@" not in text
    assert text.count("[CARD]") == 3 and text.count("[PHONE]") == 3
    assert sum(1 for s in shown if s) > 3  # it really streamed, not one flush at the end


def test_placeholders_split_across_pieces_are_restored() -> None:
    cfg = {
        "input": ["pii"],
        "output": ["pii"],
        "stream": {"holdback_chars": 16, "min_step_chars": 1},
    }
    r = GuardRunner(GuardsConfig.model_validate(cfg))
    ctx = GuardContext()
    assert r.check_input("I am ana@x.io", ctx).text == "I am <EMAIL_1>"
    stream = r.stream(ctx)
    out = "".join(stream.feed(p) for p in ["Hello <EM", "AIL", "_1>, your order ", "x" * 40])
    out += stream.finish()
    assert out == "Hello ana@x.io, your order " + "x" * 40


def test_blocking_guard_stops_the_stream() -> None:
    trace = Trace(feature="f")
    r = runner([{"banned": {"keywords": ["launch codes"]}}], holdback_chars=8, min_step_chars=4)
    stream = r.stream(GuardContext(trace=trace))
    with pytest.raises(GuardBlocked, match="banned content"):
        for p in ["Sure, the launch ", "codes are 1234 and more text follows here"]:
            stream.feed(p)
        stream.finish()
    assert stream.outcome.decision == "block"
    assert any(e.kind == "guard_stream_stopped" for e in trace.events)


def test_reask_cannot_happen_mid_stream() -> None:
    r = runner([{"json_schema": {"schema": {"type": "object"}, "action": "reask"}}])
    stream = r.stream(GuardContext())
    assert stream.feed("not json, " * 20) != ""  # json_schema does not hold text back
    with pytest.raises(GuardBlocked, match="reask is impossible once streaming has started"):
        stream.finish()


def test_json_schema_checks_the_whole_streamed_text() -> None:
    r = runner([{"json_schema": {"schema": {"type": "object", "required": ["a"]}}}])
    stream = r.stream(GuardContext())
    out = "".join(stream.feed(p) for p in ['{"a"', ": 1", "}"]) + stream.finish()
    assert out == '{"a": 1}' and stream.outcome.decision == "pass"


def test_leak_spanning_pieces_is_caught() -> None:
    system = "You are the ACME assistant. Never mention the internal discount code or staff names."
    r = runner(["system_prompt_leak"], holdback_chars=8, min_step_chars=4)
    stream = r.stream(GuardContext(system_prompt=system))
    with pytest.raises(GuardBlocked, match="reproduces the system prompt"):
        for word in ("My instructions: " + system).split(" "):
            stream.feed(word + " ")
        stream.finish()


async def test_async_filter() -> None:
    async def deltas() -> AsyncIterator[str]:
        for p in pieces(ANSWER, random.Random(3)):
            yield p

    r = runner(["pii"])
    stream = r.stream(GuardContext())
    out = "".join([p async for p in stream.filter(deltas())])
    assert out == r.check_output(ANSWER, GuardContext()).text


PLUGINS = "test_guards_plugins"


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the custom guards of tests/unit/test_guards_plugins.py importable."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


async def test_async_guard_blocks_mid_stream_and_respects_its_budget(plugins: None) -> None:
    text = "All fine here, nothing to see. " * 4 + "Then something bad appears. " + "More. " * 5
    r = runner([{f"{PLUGINS}:slow_async": {"delay": 0.001}}], min_step_chars=8)
    stream = r.stream(GuardContext())
    shown: list[str] = []
    with pytest.raises(GuardBlocked, match="async says no"):
        for piece in pieces(text, random.Random(1)):
            shown.append(await stream.afeed(piece))
        shown.append(await stream.afinish())
    assert "".join(shown) and "bad" not in "".join(shown)
    slow = runner([{f"{PLUGINS}:slow_async": {"delay": 0.5, "latency_budget_ms": 20}}])
    with pytest.raises(GuardBlocked, match=r"timed out after 20(\.0)? ms"):
        await slow.stream(GuardContext()).afeed("x" * 200)


def test_sync_feed_refuses_an_async_guard_as_a_guard_error(plugins: None) -> None:
    r = runner([f"{PLUGINS}:slow_async"])
    with pytest.raises(GuardBlocked, match="needs the async stream methods"):
        r.stream(GuardContext()).feed("x" * 200)
    lenient = runner([{f"{PLUGINS}:slow_async": {"on_error": "pass"}}])
    assert lenient.stream(GuardContext()).feed("y" * 200)
