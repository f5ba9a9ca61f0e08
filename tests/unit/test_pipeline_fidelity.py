"""A feature's ``aliases``: other names the SDK and the gateway accept for it (config checks
that each names one feature); what ``forward`` lets go upstream of a caller's request; input
guards on the text parts of a message with an image."""

from __future__ import annotations

import pytest

from tether import Tether
from tether.config import ConfigProblems, parse_config
from tether.providers.scripted import Reply, ScriptedProvider
from tether.types import Message, ModelRequest

CONFIG = """\
providers:
  up: {kind: scripted}
features:
  assistant:
    model: up:big
    aliases: [gpt-4o-mini, helper]
    on_failure: {respond: "Sorry."}
  other:
    model: up:big
    forward: {user: false, metadata: true}
    on_failure: {respond: "Sorry."}
"""


async def test_an_alias_runs_its_feature_and_the_trace_names_the_feature() -> None:
    up = ScriptedProvider([Reply("hi")], name="up")
    tether = Tether(parse_config(CONFIG, "t.yaml", {}), providers={"up": up})
    result = await tether.run("gpt-4o-mini", {"message": "hello"})
    assert result.output == "hi" and result.feature == "assistant"
    assert tether.pipeline.canonical("helper") == "assistant"
    assert tether.pipeline.canonical("nothing") == "nothing"


@pytest.mark.parametrize(
    ("aliases", "taken"),
    [
        ("[assistant]", "the name of feature 'assistant'"),
        ("[helper]", "an alias of feature 'assistant'"),
    ],
)
def test_an_alias_names_one_feature(aliases: str, taken: str) -> None:
    text = CONFIG.replace(
        "    forward: {user: false, metadata: true}\n", f"    aliases: {aliases}\n"
    )
    with pytest.raises(ConfigProblems) as info:
        parse_config(text, "t.yaml", {})
    assert taken in str(info.value)


def test_an_alias_cannot_hold_a_colon() -> None:
    with pytest.raises(ConfigProblems) as info:
        parse_config(CONFIG.replace("[gpt-4o-mini, helper]", "['a:b']"), "t.yaml", {})
    assert "features.assistant.aliases" in str(info.value)


async def test_forward_decides_whether_user_and_metadata_go_upstream() -> None:
    up = ScriptedProvider([Reply("hi"), Reply("hi")], name="up")
    tether = Tether(parse_config(CONFIG, "t.yaml", {}), providers={"up": up})
    asked = ModelRequest([Message("user", "hello")])
    for feature in ("assistant", "other"):
        await tether.run(feature, request=asked, user="u-1", metadata={"team": "a"})
    default, other = up.calls
    assert default.extra == {"user": "u-1"}  # user on, metadata off by default
    assert other.extra == {"metadata": {"team": "a"}}
    assert asked.extra == {}  # the caller's request is left as it was


async def test_input_guards_redact_text_parts_next_to_an_image() -> None:
    config = CONFIG.replace("    aliases: [gpt-4o-mini, helper]\n", "    guards: {input: [pii]}\n")
    up = ScriptedProvider([Reply("ok")], name="up")
    tether = Tether(parse_config(config, "t.yaml", {}), providers={"up": up})
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    parts = [image, {"type": "text", "text": "Mail ana.lopez@example.com about it."}]
    asked = ModelRequest([Message("user", parts[1]["text"], parts=parts)])
    result = await tether.run("assistant", request=asked)
    (sent,) = up.calls
    message = sent.messages[-1]
    assert message.parts == [image, {"type": "text", "text": "Mail <EMAIL_1> about it."}]
    assert message.content == "Mail <EMAIL_1> about it."
    assert parts[1]["text"] == "Mail ana.lopez@example.com about it."  # the caller's, as it was
    assert result.trace is not None
    verdicts = [e.data for e in result.trace.events if e.kind == "guard"]
    assert any(v.get("part") == "parts.1.text" and v.get("action") == "redact" for v in verdicts)
