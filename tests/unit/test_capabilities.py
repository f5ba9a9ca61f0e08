"""Model capabilities (the packaged table, config overrides), what a request needs, and chains
that skip a model which cannot honour the request instead of letting it answer badly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether import Tether
from tether.config import parse_config
from tether.errors import (
    CapabilityUnavailable,
    ConfigError,
    FeatureFailed,
    StructuredOutputUnavailable,
    UpstreamError,
)
from tether.providers.base import CallContext
from tether.providers.capabilities import EVERYTHING, Capabilities, CapabilityTable, needs
from tether.providers.scripted import Fail, Reply, ScriptedProvider
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def asking(**fields: Any) -> ModelRequest:
    return ModelRequest([Message("user", "Where is my order?")], **fields)


# ---------------------------------------------------------------------- the table


@pytest.fixture(scope="module")
def table() -> CapabilityTable:
    return CapabilityTable.load()


def test_table_names_its_source(table: CapabilityTable) -> None:
    assert table.version and "platform.openai.com" in table.source


def test_dated_snapshots_resolve_to_their_base_model(table: CapabilityTable) -> None:
    mini = table.lookup("openai", "gpt-4o-mini-2024-07-18")
    assert mini == Capabilities(audio=False)
    # an explicitly listed snapshot wins over its base model
    assert not table.lookup("openai", "gpt-4o-2024-05-13").json_schema
    assert table.lookup("openai", "gpt-4o-2024-08-06").json_schema
    # "gpt-4" is not a prefix of "gpt-4o": only whole name segments match
    assert table.lookup("openai", "gpt-4o").vision
    assert not table.lookup("openai", "gpt-4-0613").vision


def test_known_limits(table: CapabilityTable) -> None:
    assert table.lookup("openai", "gpt-3.5-turbo").missing({"json_schema", "vision"}) == [
        "json_schema",
        "vision",
    ]
    assert not table.lookup("openai", "o1-mini").tools
    assert not table.lookup("openai", "o3-mini").logprobs
    sonnet = table.lookup("anthropic", "claude-sonnet-4-5-20250929")
    assert sonnet.tools and sonnet.vision and not sonnet.json_schema and not sonnet.audio
    assert not sonnet.files and not sonnet.json_object  # the provider sends neither


def test_local_model_has_a_grammar_and_nothing_else(table: CapabilityTable) -> None:
    assert table.lookup("local", "smollm2") == Capabilities(
        tools=False, json_schema=True, vision=False, audio=False, files=False, logprobs=False
    )


def test_unknown_models_are_not_second_guessed(table: CapabilityTable) -> None:
    assert table.lookup("openai", "llama3.1:8b") == EVERYTHING  # e.g. Ollama behind kind openai
    assert table.lookup("scripted", "anything") == EVERYTHING
    assert table.lookup("some-new-kind", "m") == EVERYTHING


def test_a_malformed_table_is_refused_naming_the_entry() -> None:
    with pytest.raises(ValueError, match=r"kinds\.openai\.models\.m: unknown capability 'video'"):
        CapabilityTable.from_dict({"kinds": {"openai": {"models": {"m": {"video": True}}}}})
    with pytest.raises(ValueError, match=r"default\.tools: expected true or false"):
        CapabilityTable.from_dict({"kinds": {"local": {"default": {"tools": "no"}}}})


def test_config_overrides_the_table_for_one_model() -> None:
    config = parse_config(
        "providers:\n"
        "  ollama: {kind: openai, base_url: 'http://127.0.0.1:9/v1',\n"
        "           capabilities: {llava: {tools: false}, 'gpt-4o': {audio: true}}}\n",
        "t.yaml",
        {},
    )
    tether = Tether(config)
    assert tether.capabilities("ollama:llava") == Capabilities(tools=False)
    assert tether.capabilities("ollama:gpt-4o") == EVERYTHING  # audio: false, overridden
    assert tether.capabilities("ollama:other") == EVERYTHING
    assert tether.capabilities("local:smollm2").json_schema


def test_config_refuses_an_unknown_capability() -> None:
    with pytest.raises(ConfigError, match="video"):
        parse_config(
            "providers:\n  s: {kind: scripted, capabilities: {m: {video: true}}}\n", "t.yaml", {}
        )


# ---------------------------------------------------------------------- needs


def test_what_requests_need() -> None:
    assert needs(asking()) == frozenset()
    assert needs(asking(tools=[TOOL])) == {"tools"}
    assert needs(asking(tools=[TOOL], tool_choice="none")) == frozenset()
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert needs(asking(response_format=schema)) == {"json_schema"}
    assert needs(asking(response_format={"type": "json_object"})) == {"json_object"}
    assert needs(asking(extra={"logprobs": True})) == {"logprobs"}
    assert needs(asking(extra={"logprobs": False})) == frozenset()
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}}
    text = {"type": "text", "text": "what is this?"}
    parts = ModelRequest([Message("user", "what is this?", parts=[text, IMAGE, audio])])
    assert needs(parts) == {"vision", "audio"}
    assert needs(ModelRequest([Message("user", "x", parts=[text, pdf])])) == {"files"}


# ---------------------------------------------------------------------- chains that skip


def make(
    primary: ScriptedProvider,
    *,
    fallback: str = "b:m2",
    b_caps: str = "{m2: {tools: false}}",
    on_failure: str = '{respond: "Désolé, réessayez plus tard."}',
    backup: ScriptedProvider | None = None,
    a_caps: str = "{}",
) -> Tether:
    text = (
        f"providers:\n  a: {{kind: scripted, capabilities: {a_caps}}}\n"
        f"  b: {{kind: scripted, capabilities: {b_caps}}}\n"
        "features:\n  f:\n    model: a:m1\n"
        f"    fallbacks: [{fallback}]\n"
        "    retry: {max_attempts: 1}\n"
        f"    on_failure: {on_failure}\n"
    )
    providers = {"a": primary, "b": backup or ScriptedProvider([Reply("from b")], name="b")}
    return Tether(parse_config(text, "t.yaml", {}), providers=providers)


def down() -> ScriptedProvider:
    return ScriptedProvider([Fail(UpstreamError("upstream down", status_code=503))], name="a")


def both_down(on_failure: str) -> Tether:
    backup = ScriptedProvider([Fail(UpstreamError("down too", status_code=503))], name="b")
    return make(down(), backup=backup, on_failure=on_failure)


def skipped(trace: Trace | None) -> list[dict[str, Any]]:
    assert trace is not None
    return [e.data for e in trace.events if e.kind == "fallback_skipped"]


def failure_path(trace: Trace | None) -> list[dict[str, Any]]:
    assert trace is not None
    return [e.data for e in trace.events if e.kind == "failure_path"]


async def test_a_fallback_without_tools_is_skipped_and_the_skip_recorded() -> None:
    backup = ScriptedProvider([Reply("I can't call tools")], name="b")
    tether = make(down(), backup=backup)
    request = asking(tools=[TOOL])  # tool_choice auto: a text answer is a valid reply
    result = await tether.run("f", request=request)
    assert not backup.calls  # never asked
    assert result.degraded and result.reason == "upstream_error"
    assert result.output == "Désolé, réessayez plus tard."
    assert skipped(result.trace) == [{"model": "b:m2", "position": 1, "missing": ["tools"]}]
    assert result.trace is not None and [a.model for a in result.trace.attempts] == ["a:m1"]


async def test_a_plain_request_still_uses_that_fallback() -> None:
    result = await make(down()).run("f", request=asking())
    assert result.output == "from b" and not result.degraded
    assert skipped(result.trace) == []


async def test_a_primary_that_cannot_honour_the_request_is_skipped_too() -> None:
    primary = ScriptedProvider([Reply("no eyes")], name="a")
    tether = make(primary, a_caps="{m1: {vision: false}}", b_caps="{}")
    request = ModelRequest([Message("user", "what is this?", parts=[IMAGE])])
    result = await tether.run("f", request=request)
    assert not primary.calls
    assert result.output == "from b" and result.model == "b:m2" and not result.degraded
    assert skipped(result.trace) == [{"model": "a:m1", "position": 0, "missing": ["vision"]}]
    assert result.trace is not None
    assert [a.chain_position for a in result.trace.attempts] == [1]


async def test_no_model_left_takes_the_failure_path_with_capability_unavailable() -> None:
    primary = ScriptedProvider([Reply("no eyes")], name="a")
    tether = make(primary, a_caps="{m1: {vision: false}}", b_caps="{m2: {vision: false}}")
    request = ModelRequest([Message("user", "what is this?", parts=[IMAGE])])
    result = await tether.run("f", request=request)
    assert result.degraded and result.reason == "capability_unavailable"
    assert result.trace is not None and result.trace.attempts == []
    assert len(skipped(result.trace)) == 2


async def test_no_model_left_raises_capability_unavailable_when_the_feature_raises() -> None:
    tether = make(
        ScriptedProvider(name="a"),
        a_caps="{m1: {logprobs: false}}",
        b_caps="{m2: {logprobs: false}}",
        on_failure="{raise: true}",
    )
    with pytest.raises(FeatureFailed) as info:
        await tether.run("f", request=asking(extra={"logprobs": True}))
    assert isinstance(info.value.cause, CapabilityUnavailable)
    assert info.value.cause.missing == ["logprobs"]


async def test_streams_skip_the_same_way() -> None:
    backup = ScriptedProvider([Reply("text")], name="b")
    tether = make(down(), backup=backup, on_failure='{respond: "sorry", respond_json: {}}')
    request = asking(tools=[TOOL])
    chunks = [c async for c in tether.stream("f", request=request)]
    assert not backup.calls
    final = chunks[-1].result
    assert final is not None and final.degraded and final.output == "sorry"
    assert skipped(final.trace) == [{"model": "b:m2", "position": 1, "missing": ["tools"]}]


async def test_the_local_model_is_skipped_for_a_required_tool_call() -> None:
    """The issue's case: a fallback to local:smollm2 on tool_choice required answered in
    French prose with degraded false. Now it is skipped (never loaded) and the failure path
    answers with what the request can parse, or says it cannot."""
    text = (
        "providers:\n  a: {kind: scripted}\n"
        "features:\n  f:\n    model: a:gpt-4o-mini\n    fallbacks: [local:smollm2]\n"
        "    retry: {max_attempts: 1}\n"
        '    on_failure: {respond: "Le service est indisponible."}\n'
    )
    tether = Tether(parse_config(text, "t.yaml", {}), providers={"a": down()})
    request = asking(tools=[TOOL], tool_choice="required")
    with pytest.raises(StructuredOutputUnavailable) as info:
        await tether.run("f", request=request)
    assert info.value.reason == "structured_output_unavailable"
    assert isinstance(info.value.cause, UpstreamError)
    trace = tether.traces.traces[-1]
    assert skipped(trace) == [{"model": "local:smollm2", "position": 1, "missing": ["tools"]}]
    assert [a.model for a in trace.attempts] == ["a:gpt-4o-mini"]
    assert trace.status == "error" and trace.degraded
    assert failure_path(trace)[0]["via"] == "structured_unavailable"


# ---------------------------------------------------------------------- the failure answer

RESPOND_JSON = '{respond: "sorry", respond_json: {order_id: "unknown"}}'


async def test_a_named_tool_choice_gets_respond_json_as_the_tool_call() -> None:
    tether = make(down(), on_failure=RESPOND_JSON)
    choice = {"type": "function", "function": {"name": "lookup_order"}}
    result = await tether.run("f", request=asking(tools=[TOOL], tool_choice=choice))
    assert result.degraded and result.finish_reason == "tool_calls" and result.output == ""
    assert result.tool_calls is not None and len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == "lookup_order" and json.loads(call.arguments) == {"order_id": "unknown"}
    assert call.id.startswith("call_")
    assert failure_path(result.trace)[0]["via"] == "respond_json"


async def test_required_picks_the_first_tool_respond_json_fits() -> None:
    other = {
        "type": "function",
        "function": {
            "name": "refund",
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "number"}},
                "required": ["amount"],
            },
        },
    }
    tether = make(down(), on_failure=RESPOND_JSON)
    result = await tether.run("f", request=asking(tools=[other, TOOL], tool_choice="required"))
    assert result.tool_calls is not None and result.tool_calls[0].name == "lookup_order"


async def test_a_streamed_tool_call_failure_answer_comes_as_a_tool_call_delta() -> None:
    tether = make(down(), on_failure=RESPOND_JSON)
    request = asking(tools=[TOOL], tool_choice="required")
    chunks = [c async for c in tether.stream("f", request=request)]
    deltas = [d for c in chunks for d in c.tool_calls or []]
    assert [d.name for d in deltas] == ["lookup_order"]
    assert json.loads(deltas[0].arguments) == {"order_id": "unknown"}
    assert all(c.degraded for c in chunks) and "".join(c.text for c in chunks) == ""
    final = chunks[-1].result
    assert final is not None and final.finish_reason == "tool_calls"


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "Order",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "eta_days": {"type": "integer"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
}


async def test_a_json_schema_request_gets_respond_json_as_content() -> None:
    tether = both_down(RESPOND_JSON)
    result = await tether.run("f", request=asking(response_format=SCHEMA))
    assert result.degraded and result.finish_reason == "stop"
    assert json.loads(result.output) == {"order_id": "unknown"}


async def test_a_respond_json_that_does_not_fit_the_schema_is_the_error() -> None:
    tether = both_down('{respond: "sorry", respond_json: {order_id: 7}}')
    with pytest.raises(StructuredOutputUnavailable, match=r"at \$\.order_id: 7 is not of type"):
        await tether.run("f", request=asking(response_format=SCHEMA))


async def test_json_object_needs_an_object() -> None:
    tether = both_down('{respond: "sorry", respond_json: [1, 2]}')
    with pytest.raises(StructuredOutputUnavailable, match="make it an object"):
        await tether.run("f", request=asking(response_format={"type": "json_object"}))


async def test_without_respond_json_a_structured_request_never_gets_the_text() -> None:
    tether = both_down('{respond: "Désolé, réessayez plus tard."}')
    with pytest.raises(StructuredOutputUnavailable, match=r"declares no on_failure\.respond_json"):
        await tether.run("f", request=asking(response_format=SCHEMA))
    chunks = tether.stream("f", request=asking(response_format=SCHEMA))
    with pytest.raises(StructuredOutputUnavailable):
        async for _ in chunks:
            pass


async def test_a_plain_request_to_a_feature_with_only_respond_json_gets_it_as_text() -> None:
    tether = both_down('{respond_json: {status: "unavailable"}}')
    result = await tether.run("f", request=asking())
    assert result.degraded and json.loads(result.output) == {"status": "unavailable"}


# ---------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("on_failure", "ok"),
    [
        ('{respond: "x", respond_json: {a: 1}}', True),
        ("{respond_json: {a: 1}}", True),
        ("{respond_json: {a: 1}, raise: true}", False),
        ("{respond_json: {a: 1}, feature: g}", False),
    ],
)
def test_respond_json_goes_with_respond(on_failure: str, ok: bool) -> None:
    text = (
        "features:\n"
        f"  f: {{model: local:smollm2, on_failure: {on_failure}}}\n"
        "  g: {model: local:smollm2, on_failure: {raise: true}}\n"
    )
    if ok:
        parse_config(text, "t.yaml", {})
    else:
        with pytest.raises(ConfigError, match="exactly one of"):
            parse_config(text, "t.yaml", {})


def test_an_embedding_feature_cannot_declare_respond_json() -> None:
    text = (
        "features:\n  e: {kind: embedding, model: local:smollm2, "
        "on_failure: {respond_json: [0.0]}}\n"
    )
    with pytest.raises(ConfigError, match="embedding feature"):
        parse_config(text, "t.yaml", {})


def test_the_gateway_maps_the_error_to_a_424_clients_do_not_retry() -> None:
    from tether.gateway.errors import advice_headers, envelope

    error = StructuredOutputUnavailable("no answer fits", cause=UpstreamError("down"))
    status, body = envelope(error)
    assert status == 424  # never a 5xx: a designed answer, not tether broken
    assert body["error"]["type"] == "upstream_failed"
    assert body["error"]["code"] == "structured_output_unavailable"
    assert advice_headers(error) == {"x-should-retry": "false"}
    assert advice_headers(FeatureFailed("x", cause=UpstreamError("down"))) == {}


def with_failure_feature(g_provider: ScriptedProvider, g_on_failure: str) -> Tether:
    text = (
        "providers:\n  a: {kind: scripted}\n  g: {kind: scripted}\n"
        "features:\n"
        "  f:\n    model: a:m1\n    retry: {max_attempts: 1}\n    on_failure: {feature: g}\n"
        "  g:\n    prompt: {template: 'Help with: {{ message }}'}\n    model: g:m\n"
        f"    retry: {{max_attempts: 1}}\n    on_failure: {g_on_failure}\n"
    )
    providers = {"a": down(), "g": g_provider}
    return Tether(parse_config(text, "t.yaml", {}), providers=providers)


async def test_the_failure_feature_is_asked_in_the_shape_the_caller_asked_for() -> None:
    g = ScriptedProvider([Reply("from g")], name="g")
    tether = with_failure_feature(g, '{respond: "sorry"}')
    choice = {"type": "function", "function": {"name": "lookup_order"}}
    request = asking(tools=[TOOL], tool_choice=choice, response_format={"type": "json_object"})
    result = await tether.run("f", {"message": "where?"}, request=request)
    assert result.degraded and result.output == "from g"
    (asked,) = g.calls
    assert asked.tools == [TOOL] and asked.tool_choice == choice
    assert asked.response_format == {"type": "json_object"}
    assert asked.messages[-1].content == "Help with: where?"


async def test_the_failure_feature_answers_a_tool_call_with_its_own_respond_json() -> None:
    g = ScriptedProvider([Fail(UpstreamError("g down", status_code=503))], name="g")
    tether = with_failure_feature(g, RESPOND_JSON)
    request = asking(tools=[TOOL], tool_choice="required")
    result = await tether.run("f", {"message": "where?"}, request=request)
    assert result.degraded and result.tool_calls is not None
    assert json.loads(result.tool_calls[0].arguments) == {"order_id": "unknown"}


async def test_a_chain_from_a_later_position_still_skips() -> None:
    """A guard's fallback asks ``chain.from_position(i)``: the models from there on keep their
    capabilities."""
    c = ScriptedProvider([Reply("from c")], name="c")
    text = (
        "providers:\n  a: {kind: scripted}\n"
        "  b: {kind: scripted, capabilities: {m2: {tools: false}}}\n  c: {kind: scripted}\n"
        "features:\n  f: {model: a:m1, fallbacks: [b:m2, c:m3], on_failure: {raise: true}}\n"
    )
    b = ScriptedProvider([Reply("from b")], name="b")
    providers = {"a": ScriptedProvider(name="a"), "b": b, "c": c}
    tether = Tether(parse_config(text, "t.yaml", {}), providers=providers)
    chain = tether.pipeline.feature("f").model.from_position(1)
    trace = Trace(feature="f")
    response = await chain.complete(asking(tools=[TOOL]), CallContext(trace))
    assert response.text == "from c" and response.position == 2 and not b.calls
    assert skipped(trace) == [{"model": "b:m2", "position": 1, "missing": ["tools"]}]


@pytest.mark.parametrize("value", ["{day: 2024-01-01}", "{score: .nan}"])
def test_respond_json_must_be_a_json_value(value: str) -> None:
    text = f"features:\n  f: {{model: local:smollm2, on_failure: {{respond_json: {value}}}}}\n"
    with pytest.raises(ConfigError, match="respond_json must be a JSON value"):
        parse_config(text, "t.yaml", {})
