"""The OpenAI and Anthropic providers against the fault-injecting upstream on loopback.

Every fault, in both modes, must surface as the right error class with provider, model and
status code set; the OK path must give text, usage, cost and tool calls; and the unmodified
openai SDK must be able to talk to the fault server (so its wire format is the real one).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import ssl
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from pydantic import SecretStr

from tether._version import __version__
from tether.config.models import AnthropicProviderConfig, OpenAIProviderConfig
from tether.errors import ProviderError, RateLimited, Timeout, UpstreamError
from tether.providers._http import (
    SSEDecoder,
    SSEEvent,
    Target,
    env_proxy,
    parse_retry_after,
    tls_context,
)
from tether.providers.anthropic import AnthropicProvider
from tether.providers.base import CallContext, Model
from tether.providers.openai import OpenAIProvider
from tether.providers.pricing import PriceTable
from tether.telemetry.trace import Trace
from tether.testing import Blackhole, Fault, FaultyUpstream, refused_base_url
from tether.types import Message, ModelChunk, ModelRequest, ModelResponse, ToolCall

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022"}
DIALECTS = ["openai", "anthropic"]
MODES = ["complete", "stream"]
TRANSPORTS = ["default", "lean"]
MakeModel = Callable[..., Model]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(first_token_delay_s=0.6) as up:
        yield up


@pytest.fixture
def upstream(server: FaultyUpstream) -> FaultyUpstream:
    server.reset()
    server.text = "Hello from the faulty upstream."
    server.chunks = 0
    server.tool_calls = []
    server.usage = None
    server.retry_after = 1
    server.latency_ms = 0.0
    server.chunk_delay_s = 0.0
    return server


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Every provider test runs on each transport (``providers.NAME.transport``)."""
    return str(request.param)


@pytest.fixture
async def make_model(upstream: FaultyUpstream, transport: str) -> AsyncIterator[MakeModel]:
    """Builds a provider of a kind against the fault server (or ``base_url``) and one model."""
    prices = PriceTable.load()
    providers: list[OpenAIProvider | AnthropicProvider] = []

    def make(kind: str, model: str | None = None, **config: Any) -> Model:
        config.setdefault("transport", transport)
        config.setdefault("base_url", upstream.base_url)
        config.setdefault("api_key", "sk-test")
        config.setdefault("connect_timeout_s", 1.0)
        provider: OpenAIProvider | AnthropicProvider
        if kind == "openai":
            provider = OpenAIProvider(OpenAIProviderConfig(kind="openai", **config), kind, prices)
        else:
            cfg = AnthropicProviderConfig(kind="anthropic", **config)
            provider = AnthropicProvider(cfg, kind, prices)
        providers.append(provider)
        return provider.model(model or MODELS[kind])

    yield make
    for provider in providers:
        await provider.aclose()


def ctx(deadline_s: float | None = None) -> CallContext:
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    return CallContext(Trace("test"), deadline=deadline)


def simple_request(**kw: Any) -> ModelRequest:
    return ModelRequest([Message("system", "Be brief."), Message("user", "Say hello")], **kw)


async def collect(model: Model, request: ModelRequest, call: CallContext) -> list[ModelChunk]:
    return [chunk async for chunk in model.stream(request, call)]


async def call(model: Model, mode: str, call_ctx: CallContext | None = None) -> Any:
    """Run the model once in ``mode``; returns the response or the list of chunks."""
    request = simple_request()
    if mode == "complete":
        return await model.complete(request, call_ctx or ctx())
    return await collect(model, request, call_ctx or ctx())


async def failure(awaitable: Awaitable[Any]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await asyncio.wait_for(awaitable, 5)
    return info.value


def assert_names(error: ProviderError, kind: str) -> None:
    assert error.provider == kind
    assert error.model == MODELS[kind]
    assert kind in str(error)


# ---------------------------------------------------------------- the OK path


@pytest.mark.parametrize("kind", DIALECTS)
async def test_complete_gives_text_usage_and_cost(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.usage = (1000, 500)
    response = await make_model(kind).complete(simple_request(), ctx())
    assert isinstance(response, ModelResponse)
    assert response.text == "Hello from the faulty upstream."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1000, 500)
    expected = {"openai": 0.15 * 1000 + 0.6 * 500, "anthropic": 0.8 * 1000 + 4.0 * 500}[kind]
    assert response.cost_usd == pytest.approx(expected / 1_000_000)
    assert (response.finish_reason, response.tool_calls) == ("stop", None)
    assert (response.provider, response.model) == (kind, MODELS[kind])


@pytest.mark.parametrize("kind", DIALECTS)
async def test_stream_gives_deltas_then_usage_and_cost(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.usage = (1000, 500)
    chunks = await collect(make_model(kind), simple_request(), ctx())
    assert [c.text for c in chunks[:-1]] == ["Hello", " from", " the", " faulty", " upstream."]
    last = chunks[-1]
    assert last.finish_reason == "stop" and not last.has_content
    assert last.usage is not None and last.usage.as_dict()["total_tokens"] == 1500
    assert last.cost_usd > 0
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    assert {(c.provider, c.model) for c in chunks} == {(kind, MODELS[kind])}


@pytest.mark.parametrize("kind", DIALECTS)
async def test_unknown_model_costs_nothing(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    response = await make_model(kind, "some-local-llama").complete(simple_request(), ctx())
    assert response.usage.total_tokens > 0
    assert response.cost_usd == 0.0


@pytest.mark.parametrize("kind", DIALECTS)
async def test_tool_calls_complete(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.text = ""
    upstream.tool_calls = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    response = await make_model(kind).complete(simple_request(tools=[WEATHER_TOOL]), ctx())
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls is not None
    assert [(c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]
    assert all(c.id for c in response.tool_calls)


@pytest.mark.parametrize("kind", DIALECTS)
async def test_tool_calls_stream_as_deltas(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.text = "Let me check."
    upstream.tool_calls = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    chunks = await collect(make_model(kind), simple_request(tools=[WEATHER_TOOL]), ctx())
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.name or ""
            call["arguments"] += delta.arguments
    assert sorted(calls) == [0, 1]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[1]["arguments"]) == {"tz": "CET"}
    assert "".join(c.text for c in chunks) == "Let me check."
    assert chunks[-1].finish_reason == "tool_calls"


async def test_keep_alive_reuses_one_pooled_connection(
    upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    model = make_model("openai")
    for mode in MODES * 2:
        await call(model, mode)
    assert upstream.requests == 4
    assert upstream.connections == 1


async def test_script_then_sticky_fault_and_counts(
    upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    model = make_model("openai")
    upstream.script([Fault.SERVER_503, Fault.OK])
    upstream.set_fault(Fault.BAD_REQUEST)
    assert (await failure(call(model, "complete"))).status_code == 503
    assert (await call(model, "complete")).text
    assert (await failure(call(model, "stream"))).status_code == 400
    assert upstream.requests == 3


async def test_fixed_latency_mode(upstream: FaultyUpstream, make_model: MakeModel) -> None:
    upstream.latency_ms = 150
    started = time.perf_counter()
    await call(make_model("openai"), "complete")
    assert time.perf_counter() - started >= 0.14


# ---------------------------------------------------------------- wire mapping


def conversation() -> list[Message]:
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    return [
        Message("system", "You are terse."),
        Message("user", "Weather in Paris?"),
        Message("assistant", None, tool_calls=[call]),
        Message("tool", "18C and sunny", tool_call_id="call_1"),
        Message("user", "Thanks, and tomorrow?"),
    ]


async def test_openai_wire_format(upstream: FaultyUpstream, make_model: MakeModel) -> None:
    request = ModelRequest(
        conversation(),
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=["END"],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        response_format={"type": "json_object"},
        extra={"seed": 7, "user": "u-1"},
    )
    await collect(make_model("openai"), request, ctx())
    sent = upstream.last_request
    assert sent is not None and sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"] == f"tether/{__version__}"  # on either transport
    body = sent.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (50, 0.2, 0.9)
    assert body["stop"] == ["END"] and body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == "auto" and body["response_format"] == {"type": "json_object"}
    assert (body["seed"], body["user"]) == (7, "u-1")
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assistant = body["messages"][2]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert body["messages"][3] == {
        "role": "tool",
        "content": "18C and sunny",
        "tool_call_id": "call_1",
    }


async def test_openai_omits_unset_options_and_prefers_max_completion_tokens(
    upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    """``max_completion_tokens`` in extra asks for that name; the value is tether's."""
    request = simple_request(max_tokens=10, extra={"max_completion_tokens": 99})
    await make_model("openai", api_key=None).complete(request, ctx())
    sent = upstream.last_request
    assert sent is not None and "authorization" not in sent.headers
    body = sent.json()
    assert "stream" not in body and "temperature" not in body and "tools" not in body
    assert "max_tokens" not in body and body["max_completion_tokens"] == 10
    await make_model("openai").complete(simple_request(extra={"max_completion_tokens": 99}), ctx())
    sent = upstream.last_request
    assert sent is not None and sent.json()["max_completion_tokens"] == 99


async def test_anthropic_wire_format(upstream: FaultyUpstream, make_model: MakeModel) -> None:
    request = ModelRequest(
        conversation(),
        temperature=0.3,
        stop=["END"],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        response_format={"type": "json_object"},
        extra={"metadata": {"user_id": "u-1"}},
    )
    model = make_model("anthropic", base_url=upstream.url, default_max_tokens=321)
    await collect(model, request, ctx())
    sent = upstream.last_request
    assert sent is not None and sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    body = sent.json()
    assert body["system"] == "You are terse."
    assert body["max_tokens"] == 321 and body["stream"] is True
    assert body["stop_sequences"] == ["END"] and body["temperature"] == 0.3
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            "description": "Weather for a city",
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert "response_format" not in body and body["metadata"] == {"user_id": "u-1"}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C and sunny"}
    ]


async def test_anthropic_accepts_base_url_with_v1(
    upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    response = await make_model("anthropic", base_url=upstream.base_url).complete(
        simple_request(max_tokens=5), ctx()
    )
    assert response.text
    sent = upstream.last_request
    assert sent is not None and sent.path == "/v1/messages" and sent.json()["max_tokens"] == 5


# ---------------------------------------------------------------- faults -> the error tree

STATUS_CASES = [
    (Fault.SERVER_500, 500, True),
    (Fault.SERVER_502, 502, True),
    (Fault.SERVER_503, 503, True),
    (Fault.OVERLOADED, 529, True),
    (Fault.BAD_REQUEST, 400, False),
    (Fault.UNAUTHORIZED, 401, False),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
@pytest.mark.parametrize(("fault", "status", "retryable"), STATUS_CASES)
async def test_status_faults(
    kind: str,
    mode: str,
    fault: Fault,
    status: int,
    retryable: bool,
    upstream: FaultyUpstream,
    make_model: MakeModel,
) -> None:
    upstream.set_fault(fault)
    error = await failure(call(make_model(kind), mode))
    assert type(error) is UpstreamError
    assert (error.status_code, error.retryable) == (status, retryable)
    assert_names(error, kind)
    assert "fault injected" in str(error)  # the upstream's own message is kept
    if status == 401:
        assert "api_key" in str(error)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_rate_limited_carries_retry_after(
    kind: str, mode: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.RATE_LIMITED)
    upstream.retry_after = 7
    error = await failure(call(make_model(kind), mode))
    assert isinstance(error, RateLimited)
    assert (error.status_code, error.retry_after_s, error.retryable) == (429, 7.0, True)
    assert_names(error, kind)


async def test_retry_after_as_http_date(upstream: FaultyUpstream, make_model: MakeModel) -> None:
    upstream.set_fault(Fault.RATE_LIMITED)
    upstream.retry_after = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = await failure(call(make_model("openai"), "complete"))
    assert isinstance(error, RateLimited)
    assert error.retry_after_s is not None and 28 <= error.retry_after_s <= 30


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("soon", None), ("", None)],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers({"retry-after": value})) == expected


def test_parse_retry_after_prefers_milliseconds_and_reads_dates() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    now = email.utils.parsedate_to_datetime(date).timestamp() - 12
    assert parse_retry_after(httpx.Headers({"retry-after": date}), now=now) == pytest.approx(12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_connection_reset(
    kind: str, mode: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.RESET)
    error = await failure(call(make_model(kind), mode))
    assert type(error) is UpstreamError and error.retryable
    assert "connection" in str(error)
    assert_names(error, kind)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_read_timeout_uses_the_call_deadline(
    kind: str, mode: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.READ_TIMEOUT)
    started = time.perf_counter()
    error = await failure(call(make_model(kind), mode, ctx(deadline_s=0.3)))
    assert isinstance(error, Timeout) and error.retryable
    assert 0.25 <= time.perf_counter() - started < 2
    assert_names(error, kind)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_slow_first_token(
    kind: str, mode: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.SLOW_FIRST_TOKEN)
    model = make_model(kind)
    error = await failure(call(model, mode, ctx(deadline_s=0.2)))
    assert isinstance(error, Timeout)
    assert_names(error, kind)
    upstream.first_token_delay_s = 0.05
    try:
        assert await call(model, mode, ctx(deadline_s=2))  # slow is fine within the deadline
    finally:
        upstream.first_token_delay_s = 0.6


@pytest.mark.parametrize("kind", DIALECTS)
async def test_stream_cut_mid_answer(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.STREAM_CUT)
    received: list[ModelChunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in make_model(kind).stream(simple_request(), ctx()):
            received.append(chunk)
    assert received and received[0].text == "Hello"  # content arrived before the cut
    assert info.value.retryable and "broke" in str(info.value)
    assert_names(info.value, kind)


@pytest.mark.parametrize("kind", DIALECTS)
async def test_body_cut_mid_answer(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.STREAM_CUT)
    error = await failure(call(make_model(kind), "complete"))
    assert type(error) is UpstreamError and error.retryable
    assert_names(error, kind)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_truncated_answer_is_incomplete(
    kind: str, mode: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.TRUNCATED)
    error = await failure(call(make_model(kind), mode))
    assert type(error) is UpstreamError and error.retryable
    expected = "ended before the answer was complete" if mode == "stream" else "response"
    assert expected in str(error)
    assert_names(error, kind)


@pytest.mark.parametrize("fault", [Fault.MALFORMED_JSON, Fault.MALFORMED_SSE])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_malformed_answers(
    kind: str, mode: str, fault: Fault, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(fault)
    error = await failure(call(make_model(kind), mode))
    assert type(error) is UpstreamError and error.retryable
    assert error.status_code == 200
    expected = "malformed stream chunk" if mode == "stream" else "not valid JSON"
    assert expected in str(error)
    assert_names(error, kind)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_wrong_content_type(
    kind: str, mode: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.WRONG_CONTENT_TYPE)
    error = await failure(call(make_model(kind), mode))
    assert type(error) is UpstreamError and not error.retryable
    assert "text/html" in str(error) and "base_url" in str(error)
    assert_names(error, kind)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_error_event_in_a_200(
    kind: str, mode: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.set_fault(Fault.ERROR_EVENT)
    error = await failure(call(make_model(kind), mode))
    assert type(error) is UpstreamError and error.retryable
    assert "fault injected" in str(error)
    if kind == "anthropic":
        assert error.status_code == 529 and "overloaded_error" in str(error)
    assert_names(error, kind)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_connection_refused(kind: str, mode: str, make_model: MakeModel) -> None:
    error = await failure(call(make_model(kind, base_url=refused_base_url()), mode))
    assert type(error) is UpstreamError and error.retryable
    assert error.status_code is None and "could not connect" in str(error)
    assert_names(error, kind)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", DIALECTS)
async def test_connect_timeout(kind: str, mode: str, make_model: MakeModel) -> None:
    with Blackhole() as hole:
        model = make_model(kind, base_url=hole.base_url, connect_timeout_s=0.2)
        started = time.perf_counter()
        error = await failure(call(model, mode))
    assert isinstance(error, Timeout) and "connect" in str(error)
    assert 0.15 <= time.perf_counter() - started < 2
    assert_names(error, kind)


def test_server_closes_cleanly_with_a_request_hanging() -> None:
    up = FaultyUpstream().start()
    up.set_fault(Fault.READ_TIMEOUT)
    errors: list[httpx.HTTPError] = []

    def send() -> None:
        try:
            with httpx.Client(timeout=5) as client:
                client.post(up.base_url + "/chat/completions", json={"model": "m"})
        except httpx.HTTPError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 2
    while up.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    up.close()
    sender.join(timeout=5)
    assert up.requests == 1 and len(errors) == 1  # the hanging request was dropped
    up.close()  # idempotent


async def test_server_survives_garbage_and_routes_unknown_paths(
    upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    with socket.create_connection(
        (upstream.url.split("//")[1].split(":")[0], upstream.port)
    ) as raw:
        raw.sendall(b"NONSENSE\r\n\r\n")
        assert raw.recv(100) == b""  # dropped, not crashed
    async with httpx.AsyncClient() as client:
        missing = await client.post(upstream.base_url + "/audio/speech", json={})
        models = await client.get(upstream.base_url + "/models")
    assert missing.status_code == 404 and models.json()["object"] == "list"
    assert (await call(make_model("openai"), "complete")).text


# ---------------------------------------------------------------- transport: pool, loops, framing


def make_provider(base_url: str, transport: str) -> OpenAIProvider:
    config = OpenAIProviderConfig(
        kind="openai",
        base_url=base_url,
        api_key=SecretStr("sk-test"),
        transport=transport,  # type: ignore[arg-type]
    )
    return OpenAIProvider(config, "openai", PriceTable.load())


async def test_64_concurrent_calls_share_the_pool_without_queueing(
    upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.latency_ms = 20
    model = make_model("openai")
    request = simple_request()

    async def worker() -> None:
        for _ in range(10):
            assert (await model.complete(request, ctx())).text

    await asyncio.gather(*(worker() for _ in range(64)))
    assert upstream.requests == 640
    # 64 calls in flight at once, each on its own connection (none waited for a free one), kept
    # alive and reused; how fast that runs is bench/http_client.py's (RPS at concurrency 64)
    assert upstream.connections == 64


@pytest.mark.parametrize("kind", DIALECTS)
async def test_abandoned_stream_closes_its_connection(
    kind: str, upstream: FaultyUpstream, make_model: MakeModel
) -> None:
    upstream.chunk_delay_s = 0.05
    model = make_model(kind)
    stream = cast(AsyncGenerator[ModelChunk, None], model.stream(simple_request(), ctx()))
    first = await anext(stream)
    while not first.text:
        first = await anext(stream)
    assert first.text == "Hello"
    await stream.aclose()  # what the resilience wrappers do when they give up on a stream
    upstream.chunk_delay_s = 0.0
    assert (await call(model, "stream"))[-1].finish_reason == "stop"
    # the half-read connection was closed (never handed to the next call), the full one kept
    assert (upstream.requests, upstream.connections) == (2, 2)


def test_provider_built_outside_a_loop_serves_successive_loops(
    upstream: FaultyUpstream, transport: str
) -> None:
    provider = make_provider(upstream.base_url, transport)  # no event loop is running here
    model = provider.model("gpt-4o-mini")

    async def once() -> str:
        try:
            return (await model.complete(simple_request(), ctx())).text
        finally:
            await provider.aclose()

    assert asyncio.run(once()) == asyncio.run(once()) == upstream.text
    asyncio.run(provider.aclose())  # closed already: a no-op
    assert upstream.connections == 2


def test_pool_of_a_closed_loop_is_replaced(upstream: FaultyUpstream, transport: str) -> None:
    provider = make_provider(upstream.base_url, transport)
    model = provider.model("gpt-4o-mini")
    # the first loop ends without aclose(); RESET leaves no pooled connection behind (sockets
    # pooled on a loop that closes leak: await aclose() before a loop ends)
    upstream.set_fault(Fault.RESET)
    with pytest.raises(UpstreamError):
        asyncio.run(model.complete(simple_request(), ctx()))
    upstream.set_fault(Fault.OK)

    async def on_a_new_loop() -> str:
        try:
            return (await model.complete(simple_request(), ctx())).text
        finally:
            await provider.aclose()

    assert asyncio.run(on_a_new_loop()) == upstream.text


async def test_pool_in_use_on_another_running_loop_is_refused_then_closed_there(
    upstream: FaultyUpstream, transport: str
) -> None:
    provider = make_provider(upstream.base_url, transport)
    model = provider.model("gpt-4o-mini")
    other = asyncio.new_event_loop()  # like the sync wrapper's loop in its own thread
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        there = asyncio.run_coroutine_threadsafe(model.complete(simple_request(), ctx()), other)
        assert (await asyncio.wrap_future(there)).text
        with pytest.raises(ProviderError, match="another event loop") as info:
            await model.complete(simple_request(), ctx())
        assert type(info.value) is ProviderError and not info.value.retryable
        await provider.aclose()  # runs the close on the loop that owns the pool
        assert (await model.complete(simple_request(), ctx())).text  # a new pool, this loop
        await provider.aclose()
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(timeout=5)
        other.close()
    assert upstream.connections == 2


def test_pool_of_an_idle_loop_must_be_closed_there(
    upstream: FaultyUpstream, transport: str
) -> None:
    provider = make_provider(upstream.base_url, transport)
    model = provider.model("gpt-4o-mini")
    idle = asyncio.new_event_loop()  # run_until_complete style: neither running nor closed
    try:
        assert idle.run_until_complete(model.complete(simple_request(), ctx())).text
        with pytest.raises(ProviderError, match="another event loop"):
            asyncio.run(model.complete(simple_request(), ctx()))
        with pytest.raises(ProviderError, match="neither running nor closed"):
            asyncio.run(provider.aclose())
        idle.run_until_complete(provider.aclose())
    finally:
        idle.close()


SSE_TEXT = (
    ": a comment\n"
    'event: message_start\ndata: {"a": 1}\n\n'
    "data: first line\ndata:second line\n\n"
    "id: 7\nretry: 10\ndata: é ünïcode ✓\n\n"
    "data: [DONE]\n\n"
    "data: cut off by the end of the stream"
)
SSE_EVENTS = [
    SSEEvent("message_start", '{"a": 1}'),
    SSEEvent("message", "first line\nsecond line"),
    SSEEvent("message", "é ünïcode ✓"),
    SSEEvent("message", "[DONE]"),
]
TARGET = Target("openai", "gpt-4o-mini", "http://127.0.0.1/v1/chat/completions")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_sse_decoder_splits_anywhere(newline: str) -> None:
    raw = SSE_TEXT.replace("\n", newline).encode()
    for cut in range(len(raw) + 1):  # every split in two, through \r\n and UTF-8 sequences
        decoder = SSEDecoder(TARGET)
        assert decoder.feed(raw[:cut]) + decoder.feed(raw[cut:]) == SSE_EVENTS, cut
    decoder = SSEDecoder(TARGET)
    assert [e for i in range(len(raw)) for e in decoder.feed(raw[i : i + 1])] == SSE_EVENTS


def test_sse_decoder_refuses_an_oversized_line_or_event() -> None:
    decoder = SSEDecoder(TARGET, max_bytes=64)
    assert decoder.feed(b"data: " + b"x" * 50) == []
    with pytest.raises(UpstreamError, match="stream line is longer than 64 bytes") as info:
        decoder.feed(b"x" * 50)  # still no line end: refused instead of buffered further
    assert info.value.provider == "openai" and info.value.status_code == 200
    with pytest.raises(UpstreamError, match="stream event is longer than 64 bytes"):
        SSEDecoder(TARGET, max_bytes=64).feed(b"data: 0123456789\n" * 8)


def test_tls_context_finds_certificates_like_httpx(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 100  # certifi's bundle, as httpx used
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(FileNotFoundError):  # the variable is honoured, not ignored
        tls_context()


def test_env_proxy_is_read_like_httpx_trust_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert env_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert env_proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert env_proxy("http://api.openai.com/v1") is None
    assert env_proxy("https://127.0.0.1:8080/v1") is None


# ---------------------------------------------------------------- the real SDK


async def test_openai_sdk_talks_to_faulty_upstream(upstream: FaultyUpstream) -> None:
    upstream.usage = (12, 5)
    async with openai.AsyncOpenAI(
        base_url=upstream.base_url, api_key="sk-test", max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "Hello from the faulty upstream."
        assert completion.usage is not None and completion.usage.total_tokens == 17

        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        texts, usage = [], None
        async for chunk in stream:
            texts += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
        assert "".join(texts) == "Hello from the faulty upstream."
        assert usage is not None and usage.completion_tokens == 5

        upstream.tool_calls = [("get_weather", {"city": "Paris"})]
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "weather?"}]
        )
        calls = completion.choices[0].message.tool_calls or []
        assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
        assert completion.choices[0].finish_reason == "tool_calls"

        upstream.set_fault(Fault.RATE_LIMITED)
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
