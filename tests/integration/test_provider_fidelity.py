"""The OpenAI and Anthropic providers keep what a caller sent and what the upstream answered:
content parts, developer messages, the output limit's name, logprobs, refusals, system
fingerprints, cached and reasoning tokens and the model the upstream named (the loopback
upstream, in one piece and streamed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tether.config.models import AnthropicProviderConfig, OpenAIProviderConfig
from tether.errors import InvalidRequest
from tether.providers.anthropic import AnthropicProvider
from tether.providers.base import CallContext
from tether.providers.openai import OpenAIProvider
from tether.providers.pricing import PriceTable
from tether.telemetry.trace import Trace
from tether.testing import FaultyUpstream
from tether.types import Message, ModelChunk, ModelRequest, ModelResponse

IMAGE_DATA = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNgAAIAAAUAAVejxKQAAAAASUVORK5CYII="
)
PARTS: list[dict[str, Any]] = [
    {"type": "text", "text": "What is this?"},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE_DATA}"}},
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
]


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as up:
        yield up


@pytest.fixture
def upstream(server: FaultyUpstream) -> FaultyUpstream:
    server.reset()
    server.text = "A red square."
    server.response_model = None
    server.refusal = server.system_fingerprint = None
    server.cached_tokens = server.reasoning_tokens = 0
    return server


@pytest.fixture
async def openai_provider(upstream: FaultyUpstream) -> AsyncIterator[OpenAIProvider]:
    config = OpenAIProviderConfig(kind="openai", base_url=upstream.base_url, api_key="sk-test")
    provider = OpenAIProvider(config, "up", PriceTable.load())
    yield provider
    await provider.aclose()


@pytest.fixture
async def anthropic_provider(upstream: FaultyUpstream) -> AsyncIterator[AnthropicProvider]:
    config = AnthropicProviderConfig(kind="anthropic", base_url=upstream.url, api_key="sk-test")
    provider = AnthropicProvider(config, "claude", PriceTable.load())
    yield provider
    await provider.aclose()


def ctx() -> CallContext:
    return CallContext(Trace("test"))


def request(**kw: Any) -> ModelRequest:
    messages = [
        Message("system", "Be brief."),
        Message("developer", "One line."),
        Message("user", "What is this? ", parts=PARTS),
    ]
    return ModelRequest(messages, **kw)


async def answer(model: Any, asked: ModelRequest, stream: bool) -> ModelResponse | list[ModelChunk]:
    if stream:
        return [chunk async for chunk in model.stream(asked, ctx())]
    response: ModelResponse = await model.complete(asked, ctx())
    return response


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_sends_parts_developer_and_max_completion_tokens(
    upstream: FaultyUpstream, openai_provider: OpenAIProvider, stream: bool
) -> None:
    asked = request(max_tokens=30, max_tokens_field="max_completion_tokens")
    await answer(openai_provider.model("gpt-4o"), asked, stream)
    sent = upstream.last_request
    assert sent is not None
    body = sent.json()
    assert body["messages"][1] == {"role": "developer", "content": "One line."}
    assert body["messages"][2] == {"role": "user", "content": PARTS}
    assert body["max_completion_tokens"] == 30 and "max_tokens" not in body


async def test_openai_reads_logprobs_refusal_fingerprint_details_and_model(
    upstream: FaultyUpstream, openai_provider: OpenAIProvider
) -> None:
    upstream.response_model = "gpt-4o-2024-08-06"
    upstream.system_fingerprint, upstream.refusal = "fp_1", "No."
    upstream.cached_tokens, upstream.reasoning_tokens = 4, 2
    model = openai_provider.model("gpt-4o")
    response = await model.complete(request(extra={"logprobs": True}), ctx())
    assert response.model == "gpt-4o-2024-08-06" and response.system_fingerprint == "fp_1"
    assert response.refusal == "No."
    assert [t["token"] for t in response.logprobs["content"]] == ["A", " red", " square."]
    assert (response.usage.cached_input_tokens, response.usage.reasoning_tokens) == (4, 2)
    chunks = [c async for c in model.stream(request(extra={"logprobs": True}), ctx())]
    assert {c.model for c in chunks} == {"gpt-4o-2024-08-06"}
    assert {c.system_fingerprint for c in chunks} == {"fp_1"}
    assert "".join(c.refusal or "" for c in chunks) == "No."
    tokens = [t["token"] for c in chunks if c.logprobs for t in c.logprobs["content"]]
    assert "".join(tokens) == "A red square."
    last = chunks[-1].usage
    assert last is not None and (last.cached_input_tokens, last.reasoning_tokens) == (4, 2)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_maps_developer_to_system_and_images_to_blocks(
    upstream: FaultyUpstream, anthropic_provider: AnthropicProvider, stream: bool
) -> None:
    upstream.cached_tokens = 5
    got = await answer(anthropic_provider.model("claude-sonnet-4"), request(), stream)
    sent = upstream.last_request
    assert sent is not None
    body = sent.json()
    assert body["system"] == "Be brief.\n\nOne line."
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": IMAGE_DATA},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            ],
        }
    ]
    usage = got[-1].usage if isinstance(got, list) else got.usage
    assert usage is not None and usage.cached_input_tokens == 5


async def test_anthropic_refuses_parts_it_cannot_send(
    upstream: FaultyUpstream, anthropic_provider: AnthropicProvider
) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
    asked = ModelRequest([Message("user", "", parts=[audio])])
    with pytest.raises(InvalidRequest, match="input_audio"):
        await anthropic_provider.model("claude-sonnet-4").complete(asked, ctx())
    assert upstream.requests == 0


async def test_anthropic_gets_a_forwarded_user_as_metadata_user_id(
    upstream: FaultyUpstream, anthropic_provider: AnthropicProvider
) -> None:
    asked = ModelRequest([Message("user", "Hi")], extra={"user": "u-9", "metadata": {"t": "x"}})
    await anthropic_provider.model("claude-sonnet-4").complete(asked, ctx())
    sent = upstream.last_request
    assert sent is not None
    body = sent.json()
    assert body["metadata"] == {"user_id": "u-9"} and "user" not in body
