"""The in-process SDK.

tether = Tether.from_config("tether.yaml")
result = await tether.run("assistant", variables={"message": "Hi"})
async for chunk in tether.stream("assistant", variables={"message": "Hi"}):
    print(chunk.text, end="")

with SyncTether.from_config("tether.yaml") as tether:     # same names, no event loop needed
    print(tether.run("assistant", variables={"message": "Hi"}).output)
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from tether.config.loader import load_config
from tether.config.models import TetherConfig, split_model_ref
from tether.errors import ConfigError
from tether.pipeline.feature import CompiledFeature, template_environment
from tether.pipeline.pipeline import Pipeline
from tether.pipeline.result import Result, StreamChunk
from tether.providers.base import Model, Provider
from tether.providers.factory import build_provider
from tether.providers.pricing import PriceTable
from tether.resilience.chain import UpstreamHealth, build_chain
from tether.telemetry.sink import FanOut, MemorySink, TraceSink

if TYPE_CHECKING:
    from tether.telemetry.otel import OtelSink


def otel_sink(config: TetherConfig) -> OtelSink | None:
    """An OpenTelemetry exporter when ``telemetry.otlp_endpoint`` is set (needs tether[otel])."""
    if not config.telemetry.otlp_endpoint:
        return None
    try:
        from tether.telemetry.otel import OtelSink
    except ImportError:
        raise ConfigError(
            "telemetry.otlp_endpoint is set but OpenTelemetry is not installed: "
            "pip install 'tether[otel]'"
        ) from None
    return OtelSink.from_config(config.telemetry, config)


class Tether:
    """Declared features, callable. Providers are created lazily, on first use.

    ``providers`` replaces declared providers by name (e.g. a ``ScriptedProvider`` in tests);
    ``sink`` receives every finished trace (the last 1,000 are also kept in ``traces``).
    """

    def __init__(
        self,
        config: TetherConfig,
        *,
        providers: Mapping[str, Provider] | None = None,
        sink: TraceSink | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.config = config
        self.traces = MemorySink()
        self.health = UpstreamHealth()
        sinks: list[TraceSink] = [self.traces] if sink is None else [self.traces, sink]
        self._otel = otel_sink(config)
        if self._otel is not None:
            sinks.append(self._otel)
        self._sink: TraceSink = FanOut(*sinks) if len(sinks) > 1 else self.traces
        self._providers: dict[str, Provider] = dict(providers or {})
        self._prices = prices
        self._pipeline: Pipeline | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] = "tether.yaml", **kwargs: Any) -> Tether:
        return cls(load_config(path), **kwargs)

    # ------------------------------------------------------------------ wiring

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            if name not in self.config.providers:
                raise ConfigError(f"provider {name!r} is not declared under providers")
            if self._prices is None:
                self._prices = PriceTable.load()
            self._providers[name] = build_provider(name, self.config.providers[name], self._prices)
        return self._providers[name]

    def _resolve(self, ref: str) -> Model:
        provider, model = split_model_ref(ref)
        return self.provider(provider).model(model)

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            env = template_environment()
            compiled = {
                name: CompiledFeature.compile(
                    name, feature, build_chain(feature, self._resolve, self.health), env
                )
                for name, feature in self.config.features.items()
            }
            self._pipeline = Pipeline(compiled, self._sink)
        return self._pipeline

    # ------------------------------------------------------------------ calls

    async def run(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Result:
        """Call a feature. Model failures take the feature's ``on_failure``; the result says
        ``degraded`` and why. Raises InvalidRequest for caller mistakes."""
        call = self.pipeline.start(feature, variables, user=user, metadata=metadata)
        return await self.pipeline.run(call)

    async def stream(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Call a feature and yield its answer as it is produced; the last chunk is ``done``
        and carries the Result (with ``error`` set if the stream broke mid-answer)."""
        call = self.pipeline.start(feature, variables, user=user, metadata=metadata)
        chunks = self.pipeline.stream(call)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # stopping early closes the model's stream and ends the trace

    async def aclose(self) -> None:
        if self._otel is not None:
            await asyncio.to_thread(self._otel.shutdown)
        for provider in self._providers.values():
            aclose = getattr(provider, "aclose", None)
            if aclose is not None:
                await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class SyncTether:
    """The same calls without an event loop: a private loop runs in a background thread."""

    def __init__(self, tether: Tether) -> None:
        self.tether = tether
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] = "tether.yaml", **kwargs: Any) -> SyncTether:
        return cls(Tether.from_config(path, **kwargs))

    def _submit(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="tether-sync", daemon=True
            )
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def run(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Result:
        result: Result = self._submit(
            self.tether.run(feature, variables, user=user, metadata=metadata)
        )
        return result

    def stream(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Iterator[StreamChunk]:
        agen = self.tether.stream(feature, variables, user=user, metadata=metadata)
        try:
            while True:
                try:
                    yield self._submit(anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            self._submit(agen.aclose())

    def close(self) -> None:
        if self._loop is None:
            return
        self._submit(self.tether.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join()
        self._loop.close()
        self._loop = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
