"""Failure paths that honour what the request needs, against a live ``tether serve``: the
unmodified ``instructor`` library on a degraded structured request (it parses the feature's
``respond_json``; without one it surfaces ``structured_output_unavailable`` after one request,
no retry storm), and fallbacks that cannot honour a request skipped and recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import instructor
import openai
import pytest
from pydantic import BaseModel

from tether.testing.upstream import Fault, FaultyUpstream

from .gateway_server import GatewayProcess

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: upstream-key}}
features:
  extract:
    model: up:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure:
      respond: "Sorry, extraction is paused."
      respond_json: {{name: "unknown", age: 0}}
  extract-text-only:
    model: up:gpt-4o-mini
    fallbacks: [local:smollm2]
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "Désolé, le service est indisponible."}}
store:
  url: "sqlite:///traces.db"
"""
ADMIN = {"authorization": "Bearer admin-secret"}
IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ"
    "/PchI7wAAAABJRU5ErkJggg=="
)


class User(BaseModel):
    name: str
    age: int


class Seen:
    """What an httpx client sent and got back: every response's status and headers."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    def __call__(self, response: httpx.Response) -> None:
        self.responses.append(response)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream
) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("structured")
    config = folder / "tether.yaml"
    config.write_text(CONFIG.format(up=upstream.base_url))
    with GatewayProcess(config, env={"TETHER_ADMIN_TOKEN": "admin-secret"}) as gw:
        yield gw


@pytest.fixture(autouse=True)
def upstream_down(upstream: FaultyUpstream) -> None:
    upstream.reset()
    upstream.set_fault(Fault.SERVER_503)


@contextmanager
def patched(gateway: GatewayProcess, seen: Seen, mode: instructor.Mode) -> Iterator[Any]:
    """instructor around the unmodified OpenAI client (its default retries: 2), every
    response of the gateway recorded."""
    with httpx.Client(event_hooks={"response": [seen]}) as http:
        client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", http_client=http)
        yield instructor.from_openai(client, mode=mode)


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA])
def test_instructor_parses_the_degraded_respond_json(
    gateway: GatewayProcess, upstream: FaultyUpstream, mode: instructor.Mode
) -> None:
    seen = Seen()
    with patched(gateway, seen, mode) as client:
        user = client.chat.completions.create(
            model="extract",
            response_model=User,
            messages=[{"role": "user", "content": "Ada Lovelace is 36."}],
        )
    assert isinstance(user, User) and user.model_dump() == {"name": "unknown", "age": 0}
    assert upstream.requests == 1  # the upstream was asked, and failed
    assert len(seen.responses) == 1  # no retry: the answer parsed
    headers = seen.responses[0].headers
    assert headers["x-tether-degraded"] == "upstream_error"


def test_without_respond_json_instructor_surfaces_the_error_once(
    gateway: GatewayProcess, upstream: FaultyUpstream
) -> None:
    seen = Seen()
    with (
        patched(gateway, seen, instructor.Mode.TOOLS) as client,
        pytest.raises(Exception) as info,  # instructor may wrap the SDK's error
    ):
        client.chat.completions.create(
            model="extract-text-only",
            response_model=User,
            max_retries=3,
            messages=[{"role": "user", "content": "Ada Lovelace is 36."}],
        )
    cause: BaseException | None = info.value
    while cause is not None and not isinstance(cause, openai.APIStatusError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, openai.APIStatusError), info.value
    assert cause.status_code == 424
    assert cause.code == "structured_output_unavailable"
    assert cause.type == "upstream_failed"
    # no retry storm: one request from the client (x-should-retry: false), and the text
    # answer, which instructor could not parse and would ask again for, never sent
    assert len(seen.responses) == 1
    assert seen.responses[0].headers["x-should-retry"] == "false"
    assert upstream.requests == 1
    trace = gateway.stored_trace(seen.responses[0].headers["x-tether-trace-id"])
    skips = [e["data"] for e in trace["events"] if e["kind"] == "fallback_skipped"]
    assert skips == [{"model": "local:smollm2", "position": 1, "missing": ["tools"]}]
    assert [a["model"] for a in trace["attempts"]] == ["up:gpt-4o-mini"]


def test_an_image_request_skips_the_text_only_fallback(
    gateway: GatewayProcess, upstream: FaultyUpstream
) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="extract-text-only",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": IMAGE}},
                    ],
                }
            ],
        )
    completion = raw.parse()
    # a plain (text) answer is what the request asked for: the degraded text, never SmolLM2
    # describing an image it was not shown
    assert completion.choices[0].message.content == "Désolé, le service est indisponible."
    assert raw.headers["x-tether-degraded"] == "upstream_error"
    trace = gateway.stored_trace(raw.headers["x-tether-trace-id"])
    skips = [e["data"] for e in trace["events"] if e["kind"] == "fallback_skipped"]
    assert skips == [{"model": "local:smollm2", "position": 1, "missing": ["vision"]}]


def test_a_streamed_tool_call_request_gets_respond_json_as_a_streamed_tool_call(
    gateway: GatewayProcess,
) -> None:
    tool = {
        "type": "function",
        "function": {"name": "User", "parameters": User.model_json_schema()},
    }
    with (
        openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0) as client,
        client.chat.completions.stream(
            model="extract",
            messages=[{"role": "user", "content": "Ada Lovelace is 36."}],
            tools=[tool],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "User"}},
        ) as stream,
    ):
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "User"  # type: ignore[union-attr]
    arguments = calls[0].function.arguments  # type: ignore[union-attr]
    assert User.model_validate_json(arguments) == User(name="unknown", age=0)
