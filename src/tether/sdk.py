"""The in-process SDK.

tether = Tether.from_config("tether.yaml")    # traces go to the config's store; store=False: not
result = await tether.run("assistant", variables={"message": "Hi"})
async for chunk in tether.stream("assistant", variables={"message": "Hi"}):
    print(chunk.text, end="")

Tether(config, stages=[...], wrappers=[...], variant_picker=...)   # the pipeline's seams:
    # stages run before/after every feature's model call (tether.pipeline.stages), wrappers go
    # around every model of a feature's chain, the picker decides each call's variant

with SyncTether.from_config("tether.yaml") as tether:     # same names, no event loop needed
    print(tether.run("assistant", variables={"message": "Hi"}).output)
    vectors = tether.embed("search", ["first text", "second"]).vectors   # a kind: embedding feature
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from tether import budgets, cache, limits
from tether.budgets.alerts import Alerts
from tether.budgets.tokens import TokenCounter
from tether.config.guards import GuardSpec
from tether.config.loader import ConfigProblems, SourceMap, load_located
from tether.config.models import FeatureConfig, TetherConfig, split_model_ref
from tether.errors import ConfigError
from tether.guards.registry import GuardServices, build_guard
from tether.pipeline import embedding
from tether.pipeline.call import Call, Caller
from tether.pipeline.embedding import EmbeddingResult
from tether.pipeline.feature import CompiledFeature, template_environment
from tether.pipeline.pipeline import Pipeline
from tether.pipeline.result import Result, StreamChunk
from tether.pipeline.services import Services
from tether.pipeline.stages import Stage, VariantPicker
from tether.providers.base import Model, Provider
from tether.providers.capabilities import EVERYTHING, Capabilities, CapabilityTable
from tether.providers.factory import build_provider
from tether.providers.pricing import PriceTable, warn_unknown
from tether.resilience.chain import UpstreamHealth, Wrapper, build_chain
from tether.state import SharedState, State, open_state
from tether.telemetry.sink import FanOut, MemorySink, TraceSink
from tether.telemetry.trace import Trace
from tether.types import ModelRequest

OnStart = Callable[[Trace], None]

if TYPE_CHECKING:
    from tether.evals.online import OnlineEvaluator, OnlineScores
    from tether.settings import Settings
    from tether.store.sink import StoreSink
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


def online_evaluator(
    tether: Tether, sinks: Sequence[TraceSink], config_dir: str | os.PathLike[str] | None
) -> OnlineEvaluator | None:
    """The sink that scores sampled calls (``evals.online``) before ``sinks`` get them, when
    a feature declares it; ``config_dir`` resolves the scorers' relative paths."""
    if not any(f.evals.online for f in tether.config.features.values()):
        return None
    from tether.evals.online import OnlineEvaluator

    then = None if not sinks else sinks[0] if len(sinks) == 1 else FanOut(*sinks)
    base = None if config_dir is None else Path(config_dir)
    return OnlineEvaluator.build(tether.config, tether, now=tether.traces, then=then, base_dir=base)


class Tether:
    """Declared features, callable. Providers are created lazily, on first use.

    ``providers`` replaces declared providers by name (e.g. a ``ScriptedProvider`` in tests);
    ``sink`` receives every finished trace (the last 1,000 are also kept in ``traces``);
    ``store`` (a :class:`~tether.store.sink.StoreSink`, what :meth:`from_config` gives) stores
    them: it opens on ``async with`` or the first call, and ``aclose()`` writes every trace.
    ``state`` is where budgets, rate limits, breakers and the cache live (default: the
    config's ``state``, in-process unless it says ``redis``); two Tethers given the same state
    share them like two replicas on one Redis. A feature with ``evals.online`` has a sample
    of its calls scored after they answered (:mod:`tether.evals.online`; results on the trace
    and in ``online_scores``); ``config_dir`` resolves its scorers' relative paths.

    The pipeline's seams (docs/architecture.md): ``stages`` run around every feature's model
    call, each in its slot (:class:`~tether.pipeline.stages.Stage`); ``wrappers`` (each a
    ``Callable[[Model], Model]``) go around every model of every feature's chain, primary and
    fallbacks, so they see every attempt, the first outermost; ``variant_picker`` decides each
    call's variant (default: the feature as declared, variant ``"default"``).
    """

    def __init__(
        self,
        config: TetherConfig,
        *,
        providers: Mapping[str, Provider] | None = None,
        sink: TraceSink | None = None,
        prices: PriceTable | None = None,
        store: StoreSink | None = None,
        stages: Sequence[Stage] = (),
        wrappers: Sequence[Wrapper] = (),
        variant_picker: VariantPicker | None = None,
        state: State | None = None,
        config_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config
        self.traces = MemorySink()
        backend = open_state(config.state) if state is None else state
        self.state = SharedState(backend, config.state.on_unavailable)
        self.health = UpstreamHealth(self.state)
        self.store = store
        sinks: list[TraceSink] = [self.traces] if sink is None else [self.traces, sink]
        if store is not None:
            sinks.append(store)
        self._otel = otel_sink(config)
        if self._otel is not None:
            sinks.append(self._otel)
        self._sink: TraceSink = FanOut(*sinks) if len(sinks) > 1 else self.traces
        self._providers: dict[str, Provider] = dict(providers or {})
        self._prices = prices
        self._capability_table: CapabilityTable | None = None
        self._services: Services | None = None
        self._pipeline: Pipeline | None = None
        self._stages = tuple(stages)
        self._wrappers = tuple(wrappers)
        self._picker = variant_picker
        self.online = online_evaluator(self, sinks[1:], config_dir)  # its judges need providers
        if self.online is not None:  # sampled calls are scored before the sinks after memory
            self._sink = self.online

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        store: bool = True,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> Tether:
        """Load ``path`` (default ``$TETHER_CONFIG`` or ``tether.yaml``) and compile every
        feature now, so a guard or template that cannot be built fails here with FILE:LINE.
        Traces are stored in the config's store (``$TETHER_STORE_URL`` replaces it) like the
        gateway's; ``store=False`` keeps them only in memory."""
        from tether.settings import Settings

        settings = settings or Settings.load()
        file = settings.config_path(None if path is None else Path(path))
        config, source = load_located(file)
        config = settings.apply(config)
        sink = None
        if store:
            from tether.store.sink import StoreSink

            sink = StoreSink(config.store, config_dir=file.resolve().parent)
        kwargs.setdefault("config_dir", file.resolve().parent)
        tether = cls(config, store=sink, **kwargs)
        tether.compile(source)
        return tether

    # ------------------------------------------------------------------ wiring

    @property
    def online_scores(self) -> OnlineScores:
        """Online evaluation results since start, per feature, variant and scorer (empty
        when no feature declares ``evals.online``)."""
        if self.online is None:
            from tether.evals.online import OnlineScores

            return OnlineScores()
        return self.online.scores

    @property
    def prices(self) -> PriceTable:
        """The packaged price table with each provider's ``prices`` over it."""
        if self._prices is None:
            self._prices = PriceTable.load().configured(self.config.providers)
        return self._prices

    @property
    def services(self) -> Services:
        """What every feature's budget, rate-limit and cache stages share."""
        if self._services is None:
            tokens = TokenCounter(self.config)
            alerts = Alerts(self.config.alerts)
            self._services = Services(self.config, self.state, self.prices, tokens, alerts)
        return self._services

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            if name not in self.config.providers:
                raise ConfigError(f"provider {name!r} is not declared under providers")
            self._providers[name] = build_provider(name, self.config.providers[name], self.prices)
        return self._providers[name]

    def _resolve(self, ref: str) -> Model:
        provider, model = split_model_ref(ref)
        return self.provider(provider).model(model)

    @property
    def guard_services(self) -> GuardServices:
        """What guards that ask a model (``llm_judge``) reach the configured providers by."""
        return GuardServices(self._resolve, self.capabilities)

    def capabilities(self, ref: str) -> Capabilities:
        """What the model ``ref`` (``provider:model``) can honour: the packaged model table for
        its provider's kind, with the provider's ``capabilities`` from the config over it (a
        provider only passed in ``providers=`` honours everything)."""
        provider, model = split_model_ref(ref)
        declared = self.config.providers.get(provider)
        if declared is None:
            return EVERYTHING
        if self._capability_table is None:
            self._capability_table = CapabilityTable.load()
        found = self._capability_table.lookup(declared.kind, model)
        flags = declared.capabilities.get(model)
        return found if flags is None else found.refined(flags.model_dump())

    @property
    def pipeline(self) -> Pipeline:
        return self.compile()

    def compile(self, source: SourceMap | None = None) -> Pipeline:
        """Build every feature's prompt templates, model chain and guards (no network; once).
        A failure is a ConfigError at the feature's YAML path (and FILE:LINE with ``source``)."""
        if self._pipeline is None:
            env = template_environment()
            compiled: dict[str, CompiledFeature] = {}
            for name, feature in self.config.features.items():
                try:
                    compiled[name] = self._compile_variants(name, feature, env)
                except Exception as exc:  # any start-up failure, located at its YAML path
                    services = self.guard_services
                    raise _located(exc, name, feature, source, services) from exc
            warn_unknown(self.config, self.prices)  # a log line per model with no price
            self._pipeline = Pipeline(compiled, self._sink, self._picker)
        return self._pipeline

    def _compile_feature(
        self, name: str, feature: FeatureConfig, env: SandboxedEnvironment
    ) -> CompiledFeature:
        """A feature's chain (its upstream pacing outermost, then the caller's wrappers) and
        its stages: rate limits, budget, cache (when it declares them), the caller's own."""
        services = self.services
        pacing = limits.upstream_wrapper(feature, services)
        wrappers = self._wrappers if pacing is None else (pacing, *self._wrappers)
        chain = build_chain(feature, self._resolve, self.health, wrappers, self.capabilities)
        own = [
            *limits.stages(name, feature, services),
            *budgets.stages(name, feature, services),
            *cache.stages(name, feature, services),
        ]
        stages = [*own, *self._stages]
        return CompiledFeature.compile(name, feature, chain, env, stages, self.guard_services)

    def _compile_variants(
        self, name: str, feature: FeatureConfig, env: SandboxedEnvironment
    ) -> CompiledFeature:
        """The feature as declared, with each of its ``variants`` compiled beside it."""
        compiled = self._compile_feature(name, feature, env)
        for variant in feature.variants:
            try:
                own = self._compile_feature(name, feature.variant(variant), env)
            except Exception as exc:  # located at the variant's YAML path
                raise ConfigError(f"variants.{variant}: {exc}") from exc
            compiled.variants = {**compiled.variants, variant: own}
        return compiled

    # ------------------------------------------------------------------ calls

    async def run(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        request: ModelRequest | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_start: OnStart | None = None,
        tenant: str | None = None,
        key: str | None = None,
        cache: bool = True,
        variant: str | None = None,
    ) -> Result:
        """Call a feature. Model failures take the feature's ``on_failure``; the result says
        ``degraded`` and why. Raises InvalidRequest for caller mistakes, RateLimitExceeded
        over a rate limit and BudgetExceeded over a budget whose feature says
        ``on_exceeded: reject``.

        ``request`` is a conversation of your own (the feature's system prompt goes first, its
        ``max_tokens`` caps yours; your request is not changed); ``variables`` then fill the
        system prompt. ``user``, ``tenant`` and ``key`` (an API key's id) say who the call is
        for: budgets, rate limits and a scoped cache count per each. ``cache=False`` neither
        reads nor fills the feature's cache. ``variant`` runs one of the feature's declared
        ``variants`` (default: the variant picker's choice). ``on_start`` is called with the
        call's trace once the call started (before any model call), e.g. to keep its id for an
        error response."""
        caller = Caller(user, tenant, key, cache)
        call = self._start(feature, variables, request, metadata, caller, variant, on_start)
        return await self.pipeline.run(call)

    def _start(
        self,
        feature: str,
        variables: Mapping[str, Any] | None,
        request: ModelRequest | None,
        metadata: Mapping[str, Any] | None,
        caller: Caller,
        variant: str | None,
        on_start: OnStart | None,
    ) -> Call:
        """The call :meth:`run` and :meth:`stream` start (``on_start`` told of its trace)."""
        call = self.pipeline.start(
            feature,
            variables,
            request=request,
            user=caller.user,
            metadata=metadata,
            caller=caller,
            variant=variant,
        )
        if on_start is not None:
            on_start(call.trace)
        return call

    async def stream(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        request: ModelRequest | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_start: OnStart | None = None,
        tenant: str | None = None,
        key: str | None = None,
        cache: bool = True,
        variant: str | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Call a feature and yield its answer as it is produced; the last chunk is ``done``
        and carries the Result (with ``error`` set if the stream broke mid-answer). The other
        arguments as in :meth:`run` (the call starts on the first chunk asked for; a refusal,
        e.g. RateLimitExceeded, is raised there)."""
        caller = Caller(user, tenant, key, cache)
        call = self._start(feature, variables, request, metadata, caller, variant, on_start)
        chunks = self.pipeline.stream(call)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # stopping early closes the model's stream and ends the trace

    async def embed(
        self,
        feature: str,
        inputs: str | list[str],
        *,
        dimensions: int | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_start: OnStart | None = None,
        tenant: str | None = None,
        key: str | None = None,
        cache: bool = True,
    ) -> EmbeddingResult:
        """Embed ``inputs`` (a text, or a list: one vector each, in order) with an embedding
        feature (``kind: embedding``): its input guards, its model chain, its failure path
        (``on_failure: {feature: ...}`` answers degraded), one trace.

        ``dimensions`` asks for shorter vectors (text-embedding-3 models, the local and
        scripted providers). Raises InvalidRequest for a chat feature or an empty text, and
        FeatureFailed when every model failed and the feature says ``raise``. ``user``,
        ``tenant``, ``key`` and ``cache`` as in :meth:`run`."""
        pipeline = self.pipeline
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        call = embedding.start(
            pipeline,
            feature,
            texts,
            dimensions=dimensions,
            user=user,
            metadata=metadata,
            caller=Caller(user, tenant, key, cache),
        )
        if on_start is not None:
            on_start(call.call.trace)
        return await embedding.run(pipeline, call)

    async def aclose(self) -> None:
        """Store every trace handed over (when storing), send the alerts still queued, then
        release the providers and the state backend."""
        if self._pipeline is not None:
            await self._pipeline.drain()
        if self.online is not None:
            await self.online.aclose()  # the calls still being scored go on to the store
        if self._services is not None:
            await self._services.alerts.aclose()
        if self.store is not None:
            await self.store.aclose()
        if self._otel is not None:
            await asyncio.to_thread(self._otel.shutdown)
        for provider in self._providers.values():
            aclose = getattr(provider, "aclose", None)
            if aclose is not None:
                await aclose()
        await self.state.aclose()

    async def __aenter__(self) -> Self:
        if self.store is not None:
            await self.store.start()  # an unreachable store fails here, not after a call
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _located(
    exc: Exception,
    name: str,
    feature: FeatureConfig,
    source: SourceMap | None,
    services: GuardServices | None = None,
) -> ConfigError:
    """A feature that does not compile, as a problem at the YAML path of its cause."""
    path: tuple[str | int, ...] = ("features", name)
    message = exc.message if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
    fix = ""
    env = template_environment()
    for key in ("system", "template"):
        text = getattr(feature.prompt, key)
        try:
            env.from_string(text or "")
        except TemplateError as err:
            path = ("features", name, "prompt", key)
            message = f"the template does not parse ({err})"
            fix = "templates use Jinja2 syntax, e.g. '{{ message }}'"
            break
    else:
        for stage, specs in (("input", feature.guards.input), ("output", feature.guards.output)):
            failing = next((i for i, s in enumerate(specs) if _fails(s, services)), None)
            if failing is not None:
                path = ("features", name, "guards", stage, failing)
                break
    if source is None:
        problem = f"{'.'.join(map(str, path))}: {message}"
        return ConfigError(f"{problem}\n  fix: {fix}" if fix else problem)
    return ConfigProblems([source.problem(path, message, fix)])


def _fails(spec: GuardSpec, services: GuardServices | None) -> bool:
    try:
        build_guard(spec, services)
    except Exception:  # noqa: BLE001 - only asks whether this guard is the one that fails
        return True
    return False


class SyncTether:
    """The same calls without an event loop: a private loop runs in a background thread."""

    def __init__(self, tether: Tether) -> None:
        self.tether = tether
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> SyncTether:
        """:meth:`Tether.from_config`; close it (``with``) so that every trace is stored."""
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
        request: ModelRequest | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **who: Any,
    ) -> Result:
        """:meth:`Tether.run` (``tenant``, ``key``, ``cache`` too), without an event loop."""
        call = self.tether.run(
            feature, variables, request=request, user=user, metadata=metadata, **who
        )
        result: Result = self._submit(call)
        return result

    def stream(
        self,
        feature: str,
        variables: Mapping[str, Any] | None = None,
        *,
        request: ModelRequest | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **who: Any,
    ) -> Iterator[StreamChunk]:
        """:meth:`Tether.stream` (``tenant``, ``key``, ``cache`` too), without an event loop."""
        agen = self.tether.stream(
            feature, variables, request=request, user=user, metadata=metadata, **who
        )
        try:
            while True:
                try:
                    yield self._submit(anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            self._submit(agen.aclose())

    def embed(
        self,
        feature: str,
        inputs: str | list[str],
        *,
        dimensions: int | None = None,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **who: Any,
    ) -> EmbeddingResult:
        """:meth:`Tether.embed` (``tenant``, ``key``, ``cache`` too), without an event loop."""
        call = self.tether.embed(
            feature, inputs, dimensions=dimensions, user=user, metadata=metadata, **who
        )
        result: EmbeddingResult = self._submit(call)
        return result

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
