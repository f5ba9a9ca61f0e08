"""The unmodified ``openai`` SDK (sync and async, streaming and not) against a live
``tether serve`` on loopback, on the local model and on the fault-injecting upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tether.testing.otlp import OtlpReceiver, ReceivedSpan
from tether.testing.upstream import Fault, FaultyUpstream, refused_base_url

from .gateway_server import GatewayProcess

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: upstream-key}}
  gone: {{kind: openai, base_url: "{gone}", api_key: x, connect_timeout_s: 0.5}}
features:
  chat:
    prompt: {{system: "You are the ACME helper."}}
    model: up:gpt-4o-mini
    timeout_s: 5
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "chat is unavailable"}}
  local:
    model: local:smollm2
    max_tokens: 12
    temperature: 0
    timeout_s: 60
    on_failure: {{respond: "local is unavailable"}}
  down:
    model: gone:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "We are on it; a person will follow up."}}
  strict:
    model: gone:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
  limited:
    model: up:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
  mixed:
    model: gone:gpt-4o-mini
    fallbacks: [up:gpt-4o-mini]
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "mixed is unavailable"}}
store:
  url: "sqlite:///traces.db"
telemetry:
  otlp_endpoint: "{otlp}"
  metrics_export_interval_s: 0.5
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(text="Hello from upstream.") as up:
        yield up


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream, receiver: OtlpReceiver
) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("gateway")
    config = folder / "tether.yaml"
    config.write_text(
        CONFIG.format(up=upstream.base_url, gone=refused_base_url(), otlp=receiver.endpoint)
    )
    with GatewayProcess(config, env={"TETHER_ADMIN_TOKEN": "admin-secret"}) as gw:
        yield gw


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0) as c:
        yield c


@pytest.fixture(autouse=True)
def healthy_upstream(upstream: FaultyUpstream) -> None:
    upstream.reset()
    upstream.text = "Hello from upstream."
    upstream.tool_calls = []


def test_sync_completion_through_upstream(client: openai.OpenAI, upstream: FaultyUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "Hi"}], temperature=0.3
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from upstream."
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert len(raw.headers["x-tether-trace-id"]) == 32
    assert float(raw.headers["x-tether-overhead-ms"]) >= 0
    assert "x-tether-degraded" not in raw.headers
    sent = upstream.last_request
    assert sent is not None
    body = sent.json()
    assert body["messages"][0] == {"role": "system", "content": "You are the ACME helper."}
    assert body["temperature"] == 0.3


async def test_async_streaming_with_usage(gateway: GatewayProcess) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="x", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        texts, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                texts.append(chunk.choices[0].delta.content or "")
            if chunk.usage is not None:
                usage = chunk.usage
    assert "".join(texts) == "Hello from upstream."
    assert usage is not None and usage.completion_tokens > 0


def test_local_model_through_the_gateway(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert completion.choices[0].message.content
    stream = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "Say hello."}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) >= 2


async def test_async_non_streaming(gateway: GatewayProcess) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="x", max_retries=0) as c:
        completion = await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Hi"}]
        )
    assert completion.choices[0].message.content == "Hello from upstream."


def test_degraded_answer_is_a_200_that_says_so(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="down", messages=[{"role": "user", "content": "Hi"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "We are on it; a person will follow up."
    assert raw.headers["x-tether-degraded"] == "upstream_error"
    facts = (completion.model_extra or {})["tether"]
    assert facts["degraded"] is True and facts["reason"] == "upstream_error"


def test_tool_calls_pass_through(client: openai.OpenAI, upstream: FaultyUpstream) -> None:
    upstream.tool_calls = [("get_weather", {"city": "Paris"})]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    completion = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Weather?"}], tools=tools
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert completion.choices[0].finish_reason == "tool_calls"
    sent = upstream.last_request
    assert sent is not None and sent.json()["tools"] == tools
    stream = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=tools,
        stream=True,
    )
    args = "".join(
        (c.choices[0].delta.tool_calls or [])[0].function.arguments or ""  # type: ignore[union-attr]
        for c in stream
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert json.loads(args) == {"city": "Paris"}


def test_errors_arrive_as_sdk_exceptions_with_tethers_messages(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "no feature named 'nope'" in not_found.value.message
    assert not_found.value.code == "feature_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="chat", messages=[])
    assert "messages" in bad.value.message
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="strict", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 424
    assert failed.value.code == "upstream_error"


def test_rate_limited_upstream_is_a_429_for_a_feature_that_raises(
    client: openai.OpenAI, upstream: FaultyUpstream
) -> None:
    upstream.set_fault(Fault.RATE_LIMITED)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "x"}])
    assert limited.value.status_code == 429
    assert limited.value.body["type"] == "rate_limit_exceeded"  # type: ignore[index]
    assert "rate-limited" in limited.value.message
    assert len(limited.value.response.headers["x-tether-trace-id"]) == 32


def test_stream_cut_mid_answer_raises_in_the_sdk(
    client: openai.OpenAI, upstream: FaultyUpstream
) -> None:
    upstream.set_fault(Fault.STREAM_CUT)
    upstream.text = "one two three four five six"
    stream = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="stream broke"):
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received).startswith("one")


def test_http_level_errors(gateway: GatewayProcess) -> None:
    url = f"{gateway.base_url}/chat/completions"
    too_big = httpx.post(
        url, content=b"x" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    not_json = httpx.post(url, content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    missing = httpx.get(f"{gateway.base_url}/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = httpx.get(url)
    assert wrong_method.status_code == 405
    for response in (too_big, not_json, missing):
        assert len(response.headers["x-tether-trace-id"]) == 32
        assert float(response.headers["x-tether-overhead-ms"]) >= 0
    run = httpx.post(f"{gateway.base_url}/features/chat/run", json={"variables": {}})
    assert run.status_code == 422 and run.json()["error"]["code"] == "missing_variable"


def test_native_run_and_models(gateway: GatewayProcess) -> None:
    run = httpx.post(f"{gateway.base_url}/features/down/run", json={"variables": {"message": "hi"}})
    assert run.status_code == 200
    data = run.json()
    assert data["degraded"] is True and data["reason"] == "upstream_error"
    assert run.headers["x-tether-trace-id"] == data["trace_id"]
    models = httpx.get(f"{gateway.base_url}/models").json()
    assert {m["id"] for m in models["data"]} == {
        "chat",
        "local",
        "down",
        "strict",
        "limited",
        "mixed",
    }


def test_health_admin_and_metrics_auth(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.root}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.root}/readyz").json()
    assert ready["checks"]["store"] == "ok"
    assert httpx.get(f"{gateway.root}/admin/traces").status_code == 401
    wrong = {"authorization": "Bearer nope"}
    assert httpx.get(f"{gateway.root}/admin/traces", headers=wrong).status_code == 403
    admin = {"authorization": "Bearer admin-secret"}
    traces = httpx.get(f"{gateway.root}/admin/traces?feature=down", headers=admin)
    assert traces.status_code == 200
    assert httpx.get(f"{gateway.root}/metrics").status_code == 401
    assert httpx.get(f"{gateway.root}/metrics", headers=admin).status_code == 200


def test_spans_and_metrics_reach_an_otlp_receiver(
    client: openai.OpenAI, receiver: OtlpReceiver
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mixed", messages=[{"role": "user", "content": "Hi"}]
    )
    trace_id = raw.headers["x-tether-trace-id"]
    deadline = time.monotonic() + 10
    spans: list[ReceivedSpan] = []
    while len(spans) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        spans = [s for s in receiver.spans if s.trace_id == trace_id]
    assert len(spans) == 3, f"spans of trace {trace_id} did not arrive"
    root = next(s for s in spans if s.parent_span_id is None)
    assert root.name == "chat gone:gpt-4o-mini" or root.name.startswith("chat ")
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["tether.feature"] == "mixed"
    assert root.attributes["tether.degraded"] is False
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    assert "tether.fallback" in [e.name for e in root.events]
    attempts = [s for s in spans if s.parent_span_id == root.span_id]
    assert [a.attributes["gen_ai.provider.name"] for a in attempts] == ["openai", "openai"]
    assert attempts[0].status == "ERROR" and attempts[0].attributes["error.type"]
    assert attempts[1].attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attempts[1].kind == "CLIENT"
    duration = receiver.wait_for_metric("gen_ai.client.operation.duration", timeout=10)
    assert duration.unit == "s"
    tokens = receiver.wait_for_metric("gen_ai.client.token.usage", timeout=10)
    types = {p.attributes["gen_ai.token.type"] for p in tokens.points}
    assert types == {"input", "output"}


def test_prometheus_metrics_count_calls(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    client.chat.completions.create(model="mixed", messages=[{"role": "user", "content": "x"}])
    text = httpx.get(
        f"{gateway.root}/metrics", headers={"authorization": "Bearer admin-secret"}
    ).text
    assert 'tether_requests_total{feature="mixed"' in text
    assert "tether_fallbacks_total{" in text
    assert "tether_trace_queue_depth" in text
    assert 'tether_breaker_state{upstream="gone:gpt-4o-mini"}' in text


def test_keys_scope_features(tmp_path: Path, upstream: FaultyUpstream) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(
        CONFIG.format(up=upstream.base_url, gone=refused_base_url(), otlp="").replace(
            'otlp_endpoint: ""', "otlp_endpoint: null"
        )
    )
    from .gateway_server import tether_cli

    created = tether_cli(
        "keys", "create", "--config", str(config), "--scope", "chat", "--name", "svc"
    )
    assert created.returncode == 0, created.stderr
    key = next(w for w in created.stdout.split() if w.startswith("tth_"))
    with GatewayProcess(config) as gw:
        no_key = httpx.post(f"{gw.base_url}/chat/completions", json={"model": "chat"})
        assert no_key.status_code == 401
        assert "no API key" in no_key.json()["error"]["message"]
        bad_key = "tth_" + "0" * 43
        with (
            openai.OpenAI(base_url=gw.base_url, api_key=bad_key, max_retries=0) as bad,
            pytest.raises(openai.AuthenticationError, match="unknown or revoked"),
        ):
            bad.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
        with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as scoped:
            ok = scoped.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}]
            )
            assert ok.choices[0].message.content == "Hello from upstream."
            with pytest.raises(openai.PermissionDeniedError, match="may not call feature"):
                scoped.chat.completions.create(
                    model="down", messages=[{"role": "user", "content": "x"}]
                )
            assert [m.id for m in scoped.models.list()] == ["chat"]
            card = scoped.models.retrieve("chat")
            assert (card.id, card.object, card.owned_by) == ("chat", "model", "tether")
            with pytest.raises(openai.PermissionDeniedError, match="may not call feature"):
                scoped.models.retrieve("down")
            with pytest.raises(openai.NotFoundError, match="no feature named 'nope'"):
                scoped.models.retrieve("nope")


def test_several_workers_serve_the_same_features(tmp_path: Path, upstream: FaultyUpstream) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(
        CONFIG.format(up=upstream.base_url, gone=refused_base_url(), otlp="").replace(
            'otlp_endpoint: ""', "otlp_endpoint: null"
        )
    )
    with (
        GatewayProcess(config, args=("--workers", "2")) as gw,
        openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0) as c,
    ):
        assert gw.proc is not None
        children = Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children").read_text().split()
        assert len(children) >= 2, "uvicorn should have started two worker processes"
        answers = {
            c.chat.completions.create(model="chat", messages=[{"role": "user", "content": str(i)}])
            .choices[0]
            .message.content
            for i in range(6)
        }
    assert answers == {"Hello from upstream."}
