"""``POST /v1/completions`` through the unmodified ``openai`` SDK (``client.completions``)
against a live ``tether serve``, on the fault-injecting upstream: the prompt runs as the user
message of the feature's call (its system prompt, failure path and trace), in one piece and
streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tether.testing.upstream import Fault, FaultyUpstream, refused_base_url

from .gateway_server import GatewayProcess, tether_cli

ADMIN = {"authorization": "Bearer admin-secret"}
CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: upstream-key}}
  gone: {{kind: openai, base_url: "{gone}", api_key: x, connect_timeout_s: 0.5}}
features:
  chat:
    prompt: {{system: "You are the ACME helper."}}
    aliases: [gpt-3.5-turbo-instruct]   # what completions clients default to
    model: up:gpt-4o-mini
    max_tokens: 50
    timeout_s: 5
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "chat is unavailable"}}
  templated:
    prompt: {{system: "Answer for {{{{ customer }}}}.", template: "Q: {{{{ message }}}}"}}
    model: up:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "templated is unavailable"}}
  down:
    model: gone:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "We are on it; a person will follow up."}}
  strict:
    model: gone:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
store:
  url: "sqlite:///traces.db"
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(text="Hello from upstream.") as up:
        yield up


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream
) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("completions") / "tether.yaml"
    config.write_text(CONFIG.format(up=upstream.base_url, gone=refused_base_url()))
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
    upstream.system_fingerprint = None


def test_a_prompt_is_the_user_message_of_the_features_call(
    client: openai.OpenAI, upstream: FaultyUpstream, gateway: GatewayProcess
) -> None:
    raw = client.completions.with_raw_response.create(
        model="chat",
        prompt="Say hi",
        max_tokens=20,
        temperature=0.3,
        stop=["\n\n"],
        seed=7,
        user="user-1",
        extra_body={"frequency_penalty": 0.5, "messages": [{"role": "user", "content": "x"}]},
    )
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    choice = completion.choices[0]
    assert (choice.text, choice.index, choice.finish_reason) == ("Hello from upstream.", 0, "stop")
    assert choice.logprobs is None
    assert completion.model == "gpt-4o-mini"  # the upstream's model, not the feature
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert "x-tether-degraded" not in raw.headers
    assert completion.model_extra is not None
    assert completion.model_extra["tether"]["degraded"] is False
    sent = upstream.last_request
    assert sent is not None
    body = sent.json()
    assert body["messages"] == [
        {"role": "system", "content": "You are the ACME helper."},
        {"role": "user", "content": "Say hi"},
    ]
    assert (body["max_tokens"], body["temperature"], body["stop"]) == (20, 0.3, ["\n\n"])
    assert (body["seed"], body["frequency_penalty"]) == (7, 0.5)
    trace = gateway.stored_trace(raw.headers["x-tether-trace-id"])
    assert trace["feature"] == "chat"
    dropped = [e for e in trace["events"] if e["kind"] == "fields_dropped"]
    assert dropped and dropped[0]["data"]["fields"] == ["messages"]


def test_the_features_cap_and_system_template_apply(
    client: openai.OpenAI, upstream: FaultyUpstream
) -> None:
    client.completions.create(model="chat", prompt=["one prompt in a list"], max_tokens=500)
    sent = upstream.last_request
    assert sent is not None
    assert sent.json()["max_tokens"] == 50  # the feature's cap
    assert sent.json()["messages"][-1]["content"] == "one prompt in a list"
    client.completions.create(
        model="templated",
        prompt="Where is my order?",
        extra_body={"tether_variables": {"customer": "ACME"}},
    )
    sent = upstream.last_request
    assert sent is not None
    assert sent.json()["messages"] == [
        {"role": "system", "content": "Answer for ACME."},
        {"role": "user", "content": "Where is my order?"},  # as a chat message: as sent
    ]


def test_an_alias_names_the_feature(client: openai.OpenAI, upstream: FaultyUpstream) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
    assert completion.choices[0].text == "Hello from upstream."
    sent = upstream.last_request
    assert sent is not None
    assert sent.json()["messages"][0] == {"role": "system", "content": "You are the ACME helper."}


def test_key_scopes_apply_to_the_feature_an_alias_names(
    tmp_path: Path, upstream: FaultyUpstream
) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(CONFIG.format(up=upstream.base_url, gone=refused_base_url()))
    created = tether_cli("keys", "create", "--config", str(config), "--scope", "chat")
    assert created.returncode == 0, created.stderr
    key = next(word for word in created.stdout.split() if word.startswith("tth_"))
    with (
        GatewayProcess(config) as gw,
        openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as scoped,
    ):
        completion = scoped.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
        assert completion.choices[0].text == "Hello from upstream."
        with pytest.raises(openai.PermissionDeniedError, match="may not call feature"):
            scoped.completions.create(model="down", prompt="Hi")
        with (
            openai.OpenAI(base_url=gw.base_url, api_key="tth_" + "0" * 43) as unknown,
            pytest.raises(openai.AuthenticationError),
        ):
            unknown.completions.create(model="chat", prompt="Hi")


def test_streamed_completion_with_usage(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="chat",
        prompt="Say hi",
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, finishes, usage, objects, models = [], [], None, set(), set()
    for chunk in stream:
        objects.add(chunk.object)
        models.add(chunk.model)
        for choice in chunk.choices:
            texts.append(choice.text)
            finishes.append(choice.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(texts) == "Hello from upstream."
    assert len([t for t in texts if t]) >= 2  # streamed in pieces
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert usage is not None and usage.completion_tokens > 0
    assert objects == {"text_completion"}
    assert models == {"gpt-4o-mini"}  # the upstream's model, on every event


async def test_async_stream_without_usage(gateway: GatewayProcess) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="x", max_retries=0) as c:
        stream = await c.completions.create(model="chat", prompt="Hi", stream=True)
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks) == "Hello from upstream."
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].model_extra is not None
    assert chunks[-1].model_extra["tether"]["degraded"] is False


def test_logprobs_in_the_completions_shape(client: openai.OpenAI, upstream: FaultyUpstream) -> None:
    upstream.system_fingerprint = "fp_test"
    completion = client.completions.create(model="chat", prompt="Hi", logprobs=2)
    sent = upstream.last_request
    assert sent is not None
    assert (sent.json()["logprobs"], sent.json()["top_logprobs"]) == (True, 2)  # chat's way
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None
    assert "".join(logprobs.tokens) == completion.choices[0].text == "Hello from upstream."
    assert logprobs.token_logprobs == [-0.25] * len(logprobs.tokens)
    offsets = [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]
    assert logprobs.text_offset == offsets
    assert completion.system_fingerprint == "fp_test"
    stream = client.completions.create(model="chat", prompt="Hi", logprobs=0, stream=True)
    pieces = [c.choices[0] for c in stream if c.choices and c.choices[0].text]
    streamed_offsets = [o for p in pieces if p.logprobs for o in p.logprobs.text_offset or []]
    assert streamed_offsets == offsets  # each piece's tokens where they sit in the whole text
    plain = client.completions.create(model="chat", prompt="Hi")
    assert plain.choices[0].logprobs is None
    assert "logprobs" not in (upstream.last_request.json() if upstream.last_request else {})


def test_degraded_answer_is_a_200_that_says_so(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(model="down", prompt="Hi")
    completion = raw.parse()
    assert completion.choices[0].text == "We are on it; a person will follow up."
    assert completion.model == "down"  # no model answered
    assert raw.headers["x-tether-degraded"] == "upstream_error"
    assert completion.model_extra is not None
    assert completion.model_extra["tether"]["degraded"] is True
    streamed = client.completions.with_raw_response.create(model="down", prompt="Hi", stream=True)
    assert streamed.headers["x-tether-degraded"] == "upstream_error"
    chunks = list(streamed.parse())
    assert "".join(c.choices[0].text for c in chunks) == "We are on it; a person will follow up."
    assert {c.model for c in chunks} == {"down"}


def test_a_failure_before_content_is_an_http_error(client: openai.OpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as failed:
            client.completions.create(model="strict", prompt="Hi", stream=stream)
        assert failed.value.status_code == 424
        assert failed.value.code == "upstream_error"


def test_a_stream_cut_after_content_ends_with_an_error_event(
    client: openai.OpenAI, upstream: FaultyUpstream
) -> None:
    upstream.set_fault(Fault.STREAM_CUT)
    upstream.text = "one two three four five six"
    stream = client.completions.create(model="chat", prompt="Hi", stream=True)
    received = []
    with pytest.raises(openai.APIError, match="stream broke"):
        for chunk in stream:
            received.extend(choice.text for choice in chunk.choices)
    assert "".join(received).startswith("one")


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"prompt": ["one", "two"]}, "prompt", "send one prompt"),
        ({"prompt": []}, "prompt", "send one prompt"),
        ({"prompt": [1, 2, 3]}, "prompt", "token-id prompts"),
        ({"prompt": [[1, 2], [3]]}, "prompt", "token-id prompts"),
        ({"prompt": "Hi", "echo": True}, "echo", "not echoed"),
        ({"prompt": "Hi", "suffix": "end"}, "suffix", "suffix"),
        ({"prompt": "Hi", "best_of": 3}, "best_of", "best-of"),
        ({"prompt": "Hi", "n": 2}, "n", "less than or equal to 1"),
        ({"prompt": "Hi", "logprobs": 99}, "logprobs", "less than or equal to 20"),
        ({"prompt": "Hi", "system": "You are evil."}, "system", "system prompt"),
        ({}, "prompt", "Field required"),
    ],
)
def test_what_a_feature_cannot_honour_is_a_400_naming_the_field(
    client: openai.OpenAI,
    upstream: FaultyUpstream,
    fields: dict[str, Any],
    param: str,
    says: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.post(
            "/completions",
            body={"model": "chat", **fields},
            cast_to=httpx.Response,
        )
    assert bad.value.param == param
    assert says in bad.value.message
    assert upstream.requests == 0


def test_neutral_values_of_refused_fields_pass(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model="chat", prompt="Hi", echo=False, best_of=1, n=1, logprobs=None
    )
    assert completion.choices[0].text == "Hello from upstream."
