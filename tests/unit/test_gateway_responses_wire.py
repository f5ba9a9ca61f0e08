"""The Responses API translation, both ways: a Responses request ⇄ the chat request tether runs,
and a Result → the ``response`` object."""

from __future__ import annotations

from typing import Any

import pytest

from tether.errors import InvalidRequest
from tether.gateway import responses_wire as rw
from tether.gateway.wire import parse_body
from tether.pipeline.result import Result
from tether.types import Message, ModelRequest, ToolCall, Usage

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
IMAGE = {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"}


def parse(body: dict[str, Any]) -> rw.ResponsesRequest:
    import json

    return parse_body(rw.ResponsesRequest, json.dumps(body).encode())


def full_body() -> dict[str, Any]:
    """A Responses request in the normal form :func:`rw.request_body` writes."""
    return {
        "model": "assistant",
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "system", "content": "Context."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "What is this? "}, IMAGE],
            },
            {"type": "message", "role": "assistant", "content": "Let me look."},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "18"},
            {"type": "function_call_output", "call_id": "c2", "output": "19"},
            {"type": "message", "role": "developer", "content": "Use Celsius."},
        ],
        "max_output_tokens": 40,
        "temperature": 0.5,
        "top_p": 0.9,
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "W", "schema": {"type": "object"}}},
    }


def test_a_responses_request_is_the_chat_request_and_back() -> None:
    body = full_body()
    asked = rw.to_model_request(parse(body))
    assert [m.role for m in asked.messages] == [
        "developer",
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "developer",
    ]
    user = asked.messages[2]
    assert user.content == "What is this? "
    assert user.parts == [
        {"type": "text", "text": "What is this? "},
        {"type": "image_url", "image_url": {"url": IMAGE["image_url"], "detail": "low"}},
    ]
    # one assistant turn: its text and both tool calls
    assert asked.messages[3] == Message(
        "assistant",
        "Let me look.",
        [ToolCall("c1", "get_weather", "{}"), ToolCall("c2", "get_weather", "{}")],
    )
    assert asked.messages[4] == Message("tool", "18", tool_call_id="c1")
    assert asked.tools == [
        {
            "type": "function",
            "function": {k: v for k, v in TOOL.items() if k != "type"},
        }
    ]
    assert asked.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert asked.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "W", "schema": {"type": "object"}},
    }
    assert (asked.max_tokens, asked.max_tokens_field) == (40, "max_completion_tokens")
    back = rw.request_body("assistant", asked)
    assert back == body
    assert rw.to_model_request(parse(back)) == asked


def test_a_chat_request_is_a_responses_request_and_back() -> None:
    asked = ModelRequest(
        messages=[
            Message("user", "Hi"),
            Message("assistant", None, [ToolCall("c1", "lookup", '{"q": 1}')]),
            Message("tool", "found", tool_call_id="c1"),
            Message("assistant", "Done."),
        ],
        max_tokens=10,
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        tool_choice="required",
        response_format={"type": "json_object"},
        max_tokens_field="max_completion_tokens",
    )
    body = rw.request_body("assistant", asked)
    assert body["input"][1] == {
        "type": "function_call",
        "call_id": "c1",
        "name": "lookup",
        "arguments": '{"q": 1}',
    }
    assert body["text"] == {"format": {"type": "json_object"}}
    assert rw.to_model_request(parse(body)) == asked


def test_history_comes_back_from_stored_output_items() -> None:
    result = Result(
        output="Let me check.",
        feature="assistant",
        trace_id="t1",
        tool_calls=[ToolCall("c1", "lookup", "{}")],
        finish_reason="tool_calls",
    )
    items = rw.output_items(result)
    assert [i["type"] for i in items] == ["message", "function_call"]
    assert rw.history_messages(items) == [
        Message("assistant", "Let me check.", [ToolCall("c1", "lookup", "{}")])
    ]


def test_a_result_is_a_response_object() -> None:
    result = Result(
        output="Hello.",
        feature="assistant",
        trace_id="abc",
        usage=Usage(10, 5, cached_input_tokens=4, reasoning_tokens=2),
        model="up:gpt-4o-mini",
        finish_reason="length",
        refusal="I can't help with the rest.",
    )
    req = parse({"model": "assistant", "input": "Hi", "store": False, "metadata": {"k": "v"}})
    body = rw.response_object(
        req,
        response_id="resp_abc",
        created_at=1,
        model="gpt-4o-mini",
        result=result,
        output=rw.output_items(result),
        stored=False,
    )
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    (message,) = body["output"]
    assert message["id"] == "msg_abc" and message["status"] == "incomplete"
    assert [p["type"] for p in message["content"]] == ["output_text", "refusal"]
    assert body["tether"]["upstream"] == "up:gpt-4o-mini"
    assert (body["store"], body["metadata"], body["text"]) == (
        False,
        {"k": "v"},
        {"format": {"type": "text"}},
    )


def test_the_sdk_parses_the_response_object() -> None:
    from openai.types.responses import Response

    result = Result(
        output="",
        feature="assistant",
        trace_id="abc",
        tool_calls=[ToolCall("call_1", "get_weather", '{"city": "Paris"}')],
    )
    req = parse({"model": "assistant", "input": "Hi", "tools": [TOOL]})
    body = rw.response_object(
        req,
        response_id="resp_abc",
        created_at=1,
        model="gpt-4o-mini",
        result=result,
        output=rw.output_items(result),
        stored=True,
    )
    parsed = Response.model_validate(body)
    (call,) = parsed.output
    assert call.type == "function_call" and call.call_id == "call_1"
    assert parsed.usage is not None and parsed.usage.input_tokens_details.cached_tokens == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        ({"input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        ({"input": "x", "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format"),
        ({}, "input"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        rw.to_model_request(parse({"model": "assistant", **body}))
    assert caught.value.param == param


@pytest.mark.parametrize("field", ["prompt", "conversation", "messages", "background"])
def test_fields_that_replace_the_prompt_are_refused(field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        rw.passed_extra(parse({"model": "assistant", "input": "x", field: True}))
    assert caught.value.param == field


def test_options_pass_and_unknown_fields_are_dropped() -> None:
    req = parse(
        {
            "model": "assistant",
            "input": "x",
            "seed": 3,
            "top_logprobs": 2,
            "parallel_tool_calls": False,
            "reasoning": {"effort": "low"},
            "text": {"verbosity": "low"},
            "include": ["reasoning.encrypted_content"],
            "truncation": "auto",
        }
    )
    passed, dropped = rw.passed_extra(req)
    assert passed == {
        "seed": 3,
        "logprobs": True,
        "top_logprobs": 2,
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "verbosity": "low",
    }
    assert dropped == ["include", "truncation"]
