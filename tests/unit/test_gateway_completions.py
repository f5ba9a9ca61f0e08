"""The completions request as the one-message chat request it runs as, and the answer's pieces
in the completions shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.errors import InvalidRequest
from tether.gateway import wire
from tether.gateway.completions import (
    CompletionRequest,
    completion_logprobs,
    finish_reason,
    text_completion,
    to_chat,
)
from tether.pipeline.result import Result
from tether.types import Usage


def parse(**fields: Any) -> CompletionRequest:
    body = {"model": "assistant", "prompt": "Hi", **fields}
    return wire.parse_body(CompletionRequest, json.dumps(body).encode())


def test_a_prompt_becomes_one_user_message_with_the_same_options() -> None:
    req = parse(
        prompt=["Say hi"],
        max_tokens=9,
        temperature=0.5,
        top_p=0.9,
        stop="END",
        seed=3,
        user="u",
        stream=True,
        stream_options={"include_usage": True},
        frequency_penalty=0.2,
        tools=[{"type": "function", "function": {"name": "f"}}],
        messages=[{"role": "system", "content": "ignore the feature"}],
    )
    chat, dropped = to_chat(req)
    assert dropped == ["messages", "tools"]  # chat fields the completions API has not
    extra, unknown = wire.passed_extra(chat)
    assert unknown == []
    asked = wire.to_model_request(chat, extra)
    assert [(m.role, m.content) for m in asked.messages] == [("user", "Say hi")]
    assert (asked.max_tokens, asked.temperature, asked.top_p, asked.stop) == (9, 0.5, 0.9, ["END"])
    assert asked.tools is None
    assert asked.extra["frequency_penalty"] == 0.2
    assert chat.user == "u" and chat.stream
    assert chat.stream_options is not None and chat.stream_options.include_usage
    assert wire.last_user_text(chat) == "Say hi"


def test_logprobs_n_asks_for_the_chat_equivalent() -> None:
    chat, _ = to_chat(parse(logprobs=2))
    fields = {**chat.model_dump(), **(chat.model_extra or {})}
    assert (fields["logprobs"], fields["top_logprobs"]) == (True, 2)
    chat, _ = to_chat(parse())
    fields = {**chat.model_dump(), **(chat.model_extra or {})}
    assert fields.get("logprobs") is None and fields.get("top_logprobs") is None


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"prompt": ["a", "b"]}, "prompt", "send one prompt"),
        ({"prompt": [5, 6]}, "prompt", "token-id prompts"),
        ({"prompt": [[5], [6]]}, "prompt", "token-id prompts"),
        ({"prompt": 7}, "prompt", "as a string"),
        ({"prompt": [None]}, "prompt", "send one prompt"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
    ],
)
def test_bad_prompts_and_options_name_the_field(
    fields: dict[str, Any], param: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as bad:
        parse(**fields)
    assert bad.value.param == param
    assert says in bad.value.message


@pytest.mark.parametrize(
    ("field", "value"), [("echo", True), ("suffix", "x"), ("best_of", 2), ("best_of", 0)]
)
def test_echo_suffix_best_of_are_refused_unless_neutral(field: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as bad:
        parse(**{field: value}).check_refused()
    assert bad.value.param == field
    parse(echo=False, suffix="", best_of=1).check_refused()


def test_chat_logprobs_in_the_completions_shape() -> None:
    chat = {
        "content": [
            {"token": "Hel", "logprob": -0.1, "top_logprobs": [{"token": "Hel", "logprob": -0.1}]},
            {
                "token": "lo",
                "logprob": -0.5,
                "top_logprobs": [
                    {"token": "lo", "logprob": -0.5},
                    {"token": "p", "logprob": -1.5},
                ],
            },
        ]
    }
    assert completion_logprobs(chat, offset=4) == {
        "tokens": ["Hel", "lo"],
        "token_logprobs": [-0.1, -0.5],
        "top_logprobs": [{"Hel": -0.1}, {"lo": -0.5, "p": -1.5}],
        "text_offset": [4, 7],
    }
    assert completion_logprobs(None) is None
    assert completion_logprobs({"content": None}) is None


def test_a_result_as_a_text_completion() -> None:
    result = Result(
        output="Hello",
        feature="assistant",
        trace_id="t" * 32,
        usage=Usage(3, 2),
        model="up:gpt-4o-mini",
        finish_reason="tool_calls",
        system_fingerprint="fp_1",
        logprobs={"content": [{"token": "Hello", "logprob": -0.2, "top_logprobs": []}]},
    )
    body = text_completion(result, "gpt-4o-mini", want_logprobs=True)
    assert body["id"] == "cmpl-" + "t" * 32 and body["object"] == "text_completion"
    assert body["choices"] == [
        {
            "text": "Hello",
            "index": 0,
            "logprobs": {
                "tokens": ["Hello"],
                "token_logprobs": [-0.2],
                "top_logprobs": [None],
                "text_offset": [0],
            },
            "finish_reason": "stop",  # the completions API has no tool_calls
        }
    ]
    assert body["usage"]["total_tokens"] == 5 and body["system_fingerprint"] == "fp_1"
    assert text_completion(result, "m", want_logprobs=False)["choices"][0]["logprobs"] is None
    result.finish_reason = "length"
    assert finish_reason(result) == "length"
