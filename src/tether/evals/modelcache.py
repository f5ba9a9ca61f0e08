"""An opt-in cache of a feature's model calls for evaluation runs (``tether eval run
--model-cache``): a re-run of unchanged cases makes no model calls and costs nothing.

It is a model wrapper (``Tether(wrappers=[cache.wrap])``), so it sits inside the feature's
resilience stack and every call still goes through the full pipeline (guards, budgets, the
failure path); only the upstream is skipped on a hit. The key is the model's name, the whole
request (messages and parameters) and the eval repeat the call belongs to (trace metadata
``eval_repeat``: each repeat of ``--repeat N`` is its own sample, replayed on the next run).
A cached answer costs 0 (its attempt's ``cost_usd`` is 0; its token counts are kept) and its
trace carries a ``model_cache`` event. Only completions are cached; streams and embeddings pass
through; errors are never cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tether.evals.cache import DiskCache
from tether.providers.base import CallContext, Model, embedder
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    ModelChunk,
    ModelRequest,
    ModelResponse,
    ToolCall,
    Usage,
)

FILE_NAME = "model-cache.sqlite"


def _stored(response: ModelResponse) -> dict[str, Any]:
    return {
        "text": response.text,
        "usage": [response.usage.input_tokens, response.usage.output_tokens],
        "model": response.model,
        "provider": response.provider,
        "finish_reason": response.finish_reason,
        "tool_calls": [dataclasses.asdict(call) for call in response.tool_calls or []] or None,
        "logprobs": response.logprobs,
        "refusal": response.refusal,
        "system_fingerprint": response.system_fingerprint,
    }


def _response(data: dict[str, Any]) -> ModelResponse:
    calls = data.get("tool_calls")
    input_tokens, output_tokens = data["usage"]
    return ModelResponse(
        text=data["text"],
        usage=Usage(input_tokens, output_tokens),
        model=data["model"],
        provider=data["provider"],
        cost_usd=0.0,  # answered from the cache: nothing was paid for it
        finish_reason=data.get("finish_reason"),
        tool_calls=None if not calls else [ToolCall(**call) for call in calls],
        logprobs=data.get("logprobs"),
        refusal=data.get("refusal"),
        system_fingerprint=data.get("system_fingerprint"),
    )


class ModelCache:
    """The cache and its wrapper. ``hits`` and ``misses`` count completions answered from the
    cache and sent to the model; ``wrap`` is the :data:`~tether.resilience.chain.Wrapper`."""

    def __init__(self, path: str | Path) -> None:
        self.disk = DiskCache(path)

    @classmethod
    def in_dir(cls, cache_dir: str | Path) -> ModelCache:
        """The cache file of a config's ``.tether`` folder."""
        return cls(Path(cache_dir) / FILE_NAME)

    @property
    def hits(self) -> int:
        return self.disk.hits

    @property
    def misses(self) -> int:
        return self.disk.misses

    def wrap(self, model: Model) -> Model:
        return CachedModel(model, self)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        self.disk.close()


@dataclasses.dataclass(slots=True)
class CachedModel:
    """A model whose completions are answered from a :class:`ModelCache` when it has them."""

    inner: Model
    cache: ModelCache

    @property
    def name(self) -> str:
        return self.inner.name

    def key(self, request: ModelRequest, ctx: CallContext) -> str:
        repeat = ctx.trace.metadata.get("eval_repeat", 0)
        return DiskCache.key("complete", self.inner.name, dataclasses.asdict(request), repeat)

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        key = self.key(request, ctx)
        found = self.cache.disk.get(key)  # one indexed row: short enough for the loop
        if found is not None:
            ctx.trace.event("model_cache", hit=True, model=self.inner.name)
            return _response(found)
        response = await self.inner.complete(request, ctx)
        await asyncio.to_thread(self.cache.disk.put, key, _stored(response))
        return response

    def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        return self.inner.stream(request, ctx)

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        return await embedder(self.inner).embed(request, ctx)
