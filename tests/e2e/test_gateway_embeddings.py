"""``POST /v1/embeddings`` with the unmodified ``openai`` SDK against a live ``tether serve``:
an upstream feature (the loopback FaultyUpstream), a fallback after an upstream 503, the failure
path, base64 (the SDK's default, which it decodes), ``dimensions``, the errors a client gets,
and the embedded SmolLM2 through llama.cpp (real vectors, measured)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tether.testing.upstream import Fault, FaultyUpstream, refused_base_url

from .gateway_server import GatewayProcess, tether_cli

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: upstream-key}}
  spare: {{kind: openai, base_url: "{spare}", api_key: spare-key}}
  gone: {{kind: openai, base_url: "{gone}", api_key: x, connect_timeout_s: 0.5}}
features:
  vectors:
    kind: embedding
    model: up:text-embedding-3-small
    timeout_s: 5
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
  resilient:
    kind: embedding
    model: up:text-embedding-3-small
    fallbacks: [spare:text-embedding-3-large]
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
  flaky:
    kind: embedding
    model: gone:text-embedding-3-small
    retry: {{max_attempts: 1}}
    on_failure: {{feature: vectors}}
  strict:
    kind: embedding
    model: gone:text-embedding-3-small
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
  local-vectors:
    kind: embedding
    model: local:smollm2
    timeout_s: 60
    on_failure: {{raise: true}}
  chat:
    model: up:gpt-4o-mini
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "chat is unavailable"}}
store:
  url: "sqlite:///traces.db"
"""
ADMIN = {"authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def spare() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream, spare: FaultyUpstream
) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("embeddings") / "tether.yaml"
    config.write_text(
        CONFIG.format(up=upstream.base_url, spare=spare.base_url, gone=refused_base_url())
    )
    with GatewayProcess(config, env={"TETHER_ADMIN_TOKEN": "admin-secret"}) as gw:
        yield gw


@pytest.fixture
def client(
    gateway: GatewayProcess, upstream: FaultyUpstream, spare: FaultyUpstream
) -> Iterator[openai.OpenAI]:
    upstream.reset()
    spare.reset()
    with openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0) as c:
        yield c


def tether_facts(response: Any) -> dict[str, Any]:
    facts = response.model_extra["tether"]
    assert isinstance(facts, dict)
    return facts


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# ---------------------------------------------------------------- an upstream feature


def test_upstream_vectors_reach_the_sdk_in_order(
    client: openai.OpenAI, upstream: FaultyUpstream, gateway: GatewayProcess
) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="vectors", input=["the first text", "second"], encoding_format="float"
    )
    response = raw.parse()
    assert [d.index for d in response.data] == [0, 1]
    assert all(len(d.embedding) == 16 for d in response.data)
    assert response.data[0].embedding != response.data[1].embedding
    assert response.model == "text-embedding-3-small"
    assert response.usage.prompt_tokens == 4 and response.usage.total_tokens == 4
    facts = tether_facts(response)
    assert facts["upstream"] == "up:text-embedding-3-small" and not facts["degraded"]
    assert facts["cost_usd"] == pytest.approx(4 * 0.02 / 1_000_000)
    sent = upstream.last_request
    assert sent is not None and sent.path == "/v1/embeddings"
    assert sent.json()["input"] == ["the first text", "second"]
    trace = gateway.stored_trace(raw.headers["x-tether-trace-id"])
    assert trace["feature"] == "vectors" and trace["status"] == "ok"
    assert trace["output"] == "2 vectors of 16 dims"


def test_base64_is_the_sdk_default_and_decodes_to_the_same_vectors(
    client: openai.OpenAI, upstream: FaultyUpstream
) -> None:
    as_floats = client.embeddings.create(model="vectors", input="a text", encoding_format="float")
    default = client.embeddings.create(model="vectors", input="a text")  # the SDK asks base64
    assert upstream.last_request is not None
    assert upstream.last_request.json()["encoding_format"] == "float"  # tether asks floats
    decoded, floats = default.data[0].embedding, as_floats.data[0].embedding
    assert len(decoded) == len(floats) == 16
    assert decoded == pytest.approx(floats, abs=1e-6)
    raw = httpx.post(
        f"{client.base_url}embeddings",
        json={"model": "vectors", "input": "a text", "encoding_format": "base64"},
        timeout=10,
    )
    assert isinstance(raw.json()["data"][0]["embedding"], str)


def test_dimensions_reach_the_upstream(client: openai.OpenAI, upstream: FaultyUpstream) -> None:
    response = client.embeddings.create(model="vectors", input=["a", "b", "c"], dimensions=5)
    assert [len(d.embedding) for d in response.data] == [5, 5, 5]
    assert upstream.last_request is not None
    assert upstream.last_request.json()["dimensions"] == 5


# ---------------------------------------------------------------- resilience and failure


def test_a_503_falls_back_to_the_next_model(
    client: openai.OpenAI, upstream: FaultyUpstream, spare: FaultyUpstream, gateway: GatewayProcess
) -> None:
    upstream.script([Fault.SERVER_503])
    raw = client.embeddings.with_raw_response.create(
        model="resilient", input="hello", encoding_format="float"
    )
    response = raw.parse()
    assert response.model == "text-embedding-3-large"
    assert tether_facts(response)["upstream"] == "spare:text-embedding-3-large"
    assert "x-tether-degraded" not in raw.headers
    assert (upstream.requests, spare.requests) == (1, 1)
    trace = gateway.stored_trace(raw.headers["x-tether-trace-id"])
    attempts = [(a["model"], a["status"], a["status_code"]) for a in trace["attempts"]]
    assert attempts == [
        ("up:text-embedding-3-small", "error", 503),
        ("spare:text-embedding-3-large", "ok", None),
    ]


def test_the_failure_feature_answers_degraded(client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model="flaky", input="hello")
    response = raw.parse()
    assert raw.headers["x-tether-degraded"] == "upstream_error"
    facts = tether_facts(response)
    assert facts["degraded"] and facts["reason"] == "upstream_error"
    assert facts["upstream"] == "up:text-embedding-3-small"
    assert len(response.data[0].embedding) == 16


def test_raise_is_a_424_the_sdk_raises(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(model="strict", input="hello")
    assert info.value.status_code == 424
    assert info.value.code == "upstream_error"


# ---------------------------------------------------------------- what a client gets wrong


def test_a_chat_feature_is_a_400_naming_its_kind(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="is a chat feature") as info:
        client.embeddings.create(model="chat", input="hello")
    assert info.value.param == "model" and info.value.code == "wrong_feature_kind"
    with pytest.raises(openai.BadRequestError, match="is an embedding feature"):
        client.chat.completions.create(
            model="vectors", messages=[{"role": "user", "content": "hello"}]
        )


def test_token_ids_and_empty_texts_are_400s(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="token-id arrays are not supported"):
        client.embeddings.create(model="vectors", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError, match="token-id arrays are not supported"):
        client.embeddings.create(model="vectors", input=[1, 2, 3])
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="vectors", input=["fine", ""])
    assert info.value.param is not None and info.value.param.startswith("input")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-feature", input="hello")


# ---------------------------------------------------------------- the embedded model


@pytest.mark.local_model
def test_the_local_model_embeds_with_llama_cpp(client: openai.OpenAI) -> None:
    texts = [
        "The cat sat on the mat.",
        "A kitten is sleeping on the rug.",
        "Quarterly revenue grew by twelve percent.",
    ]
    response = client.embeddings.create(model="local-vectors", input=texts)
    vectors = [d.embedding for d in response.data]
    assert [len(v) for v in vectors] == [576, 576, 576]  # SmolLM2-135M's hidden width
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vectors)
    assert response.model == "smollm2" and response.usage.prompt_tokens > len(texts)
    again = client.embeddings.create(model="local-vectors", input=texts[0])
    assert again.data[0].embedding == pytest.approx(vectors[0], abs=1e-5)
    related, unrelated = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    assert related > unrelated, (related, unrelated)
    short = client.embeddings.create(model="local-vectors", input=texts[0], dimensions=64)
    shortened = short.data[0].embedding
    assert len(shortened) == 64
    assert math.isclose(math.sqrt(sum(x * x for x in shortened)), 1.0, rel_tol=1e-5)
    assert cosine(shortened, vectors[0][:64]) == pytest.approx(1.0)


# ---------------------------------------------------------------- tether check


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        (
            "    model: claude:claude-3-5-haiku\n    on_failure: {raise: true}\n",
            "tether.yaml:4: features.emb: model 'claude:claude-3-5-haiku' cannot embed",
        ),
        (
            "    model: local:smollm2\n    on_failure: {respond: sorry}\n",
            "features.emb: on_failure.respond: an embedding feature cannot answer with a text",
        ),
    ],
)
def test_tether_check_names_what_an_embedding_feature_cannot_have(
    tmp_path: Path, feature: str, expected: str
) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(
        "providers:\n  claude: {kind: anthropic, api_key: x}\n"
        f"features:\n  emb:\n    kind: embedding\n{feature}"
    )
    checked = tether_cli("check", "--config", str(config))
    assert checked.returncode == 1 and expected in checked.stdout + checked.stderr
