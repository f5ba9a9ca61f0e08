"""The local provider's embeddings: the embedded SmolLM2 through llama.cpp, in a context of its
own (``embedding=True``, mean pooling), created lazily off the event loop and pooled like the
chat contexts."""

from __future__ import annotations

import asyncio
import math

import pytest

from tether.config.models import LocalProviderConfig
from tether.errors import UpstreamError
from tether.providers.base import CallContext
from tether.providers.local import LocalProvider
from tether.telemetry.trace import Trace
from tether.types import EmbeddingRequest

pytestmark = pytest.mark.local_model


def ctx() -> CallContext:
    return CallContext(Trace(feature="t"))


async def test_embeddings_come_from_a_pooled_context_of_their_own() -> None:
    provider = LocalProvider(LocalProviderConfig(kind="local", max_concurrency=1))
    model = provider.model("smollm2")
    try:
        assert provider.embedders.items == []  # nothing loads before the first call
        texts = ["a red apple", "a green apple", "the tax return is due"]
        answers = await asyncio.gather(*(model.embed(EmbeddingRequest([t]), ctx()) for t in texts))
        assert len(provider.embedders.items) == 1 and provider._pool == []  # no chat context
        vectors = [a.vectors[0] for a in answers]
        assert {len(v) for v in vectors} == {576}
        for vector in vectors:
            assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5)
        assert all(a.usage.input_tokens > 0 and a.usage.output_tokens == 0 for a in answers)
        assert answers[0].model == "smollm2" and answers[0].provider == "local"
    finally:
        await provider.aclose()
    assert provider.embedders.items == []


async def test_more_dimensions_than_the_model_makes_fail_the_attempt() -> None:
    provider = LocalProvider(LocalProviderConfig(kind="local"))
    try:
        with pytest.raises(UpstreamError, match="makes 576-dimensional vectors") as info:
            await provider.model("smollm2").embed(EmbeddingRequest(["x"], dimensions=577), ctx())
        assert info.value.status_code == 400 and not info.value.retryable
    finally:
        await provider.aclose()
