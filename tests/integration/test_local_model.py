"""The embedded SmolLM2 model, for real: non-streaming, streaming, concurrency, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from tether import Tether
from tether.config import parse_config
from tether.config.models import LocalProviderConfig
from tether.providers.base import CallContext
from tether.providers.local import LocalProvider, default_model_path
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

pytestmark = pytest.mark.local_model

CONFIG = """\
features:
  capital:
    prompt: {system: "Answer with one word.", template: "What is the capital of {{ country }}?"}
    model: local:smollm2
    max_tokens: 16
    temperature: 0
    timeout_s: 60
    on_failure: {respond: "unavailable"}
"""


def request(text: str, max_tokens: int = 16) -> ModelRequest:
    return ModelRequest([Message("user", text)], max_tokens=max_tokens, temperature=0)


def test_model_file_ships_in_the_package() -> None:
    path = default_model_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


async def test_local_feature_answers_with_usage_and_zero_cost() -> None:
    async with Tether(parse_config(CONFIG, "t.yaml", {})) as tether:
        result = await tether.run("capital", {"country": "France"})
    assert "Paris" in result.output
    assert not result.degraded and result.model == "local:smollm2"
    assert result.usage.input_tokens > 5 and 0 < result.usage.output_tokens <= 16
    assert result.cost_usd == 0.0


async def test_local_streaming_yields_tokens_as_they_come() -> None:
    async with Tether(parse_config(CONFIG, "t.yaml", {})) as tether:
        chunks = [c async for c in tether.stream("capital", {"country": "Italy"})]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 2
    final = chunks[-1]
    assert final.done and final.result is not None and final.error is None
    assert "Rome" in final.result.output
    assert final.result.trace is not None
    attempt = final.result.trace.attempts[0]
    assert attempt.ttft_ms is not None and attempt.ttft_ms < attempt.duration_ms


async def test_concurrency_is_bounded_and_event_loop_stays_free() -> None:
    provider = LocalProvider(LocalProviderConfig(kind="local", max_concurrency=1))
    model = provider.model("smollm2")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    ctx = CallContext(Trace("t"))
    try:
        results = await asyncio.gather(
            *(model.complete(request(f"Say the number {i}."), ctx) for i in range(3))
        )
        contexts = len(provider._pool)
    finally:
        tick_task.cancel()
        await provider.aclose()
    assert all(r.usage.output_tokens > 0 for r in results)
    assert contexts == 1  # one llama.cpp context served all three calls, one at a time
    assert ticks > 5  # the loop kept running while the model generated


async def test_closing_a_stream_early_stops_generation() -> None:
    provider = LocalProvider(LocalProviderConfig(kind="local"))
    model = provider.model("smollm2")
    ctx = CallContext(Trace("t"))
    source = model.stream(request("Count from one to one hundred.", max_tokens=200), ctx)
    got = [await anext(source) for _ in range(3)]
    await source.aclose()  # type: ignore[attr-defined]
    assert all(c.text for c in got)
    # the context was released: a second call gets it without waiting for 200 tokens
    again = await asyncio.wait_for(model.complete(request("Say hi.", 4), ctx), timeout=30)
    await provider.aclose()
    assert again.usage.output_tokens <= 4


async def test_input_tokens_count_the_chat_template_as_llama_cpp_does() -> None:
    provider = LocalProvider(LocalProviderConfig(kind="local"))
    messages = [Message("system", "Answer with one word."), Message("user", "Capital of Peru?")]
    response = await provider.model("smollm2").complete(
        ModelRequest(messages, max_tokens=2, temperature=0), CallContext(Trace("t"))
    )
    llama = provider._pool[0].llama
    wire = [{"role": m.role, "content": m.content} for m in messages]
    own = llama.create_chat_completion(messages=wire, max_tokens=1)["usage"]["prompt_tokens"]
    contents = len(llama.tokenize(b"Answer with one word.\nCapital of Peru?"))
    await provider.aclose()
    assert response.usage.input_tokens == own
    assert own > contents + 4  # the template's role markers are really counted
