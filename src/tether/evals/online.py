"""Online evaluation: scorers on a sample of live calls, after the answer went out.

A feature opts in with ``evals.online``::

    evals:
      online: {sample: 0.05, scorers: [is-json, {type: cost, threshold: 0.002}]}

:class:`OnlineEvaluator` is a trace sink in front of the real ones (store, OpenTelemetry,
Prometheus). The pipeline hands it each finished trace after the caller has its answer (a
stream's last chunk went out first); it passes the trace to the memory sink at once, and:

* a trace not sampled goes on to the real sinks at once. Sampling is deterministic from the
  trace id (:func:`sampled`), so replicas, and anyone re-reading a trace, agree on it;
* a sampled trace is scored in a background task (at most ``concurrency`` at once): one
  ``evaluation`` event per scorer goes on the trace (``name``, ``score``, ``passed``,
  ``reason``, the judge's ``judge`` usage if any, or ``error`` when the scorer raised), then the
  trace goes on to the real sinks. Nothing waits on the caller's request;
* when ``queue_size`` traces already wait to be scored, the trace is not scored: it gets an
  ``evaluation_dropped`` event, is counted (``OnlineScores.dropped``) and goes on at once.

The case a scorer sees is built from the trace (:func:`case_of`, :func:`output_of`): the
variables and messages the feature's ``trace.capture`` kept, and the answer with its cost,
latency, model, variant and whether it was degraded. With ``capture: metadata`` a trace keeps
no text: only the scorers that need none (``cost``, ``latency``) run, the others are named in
an ``evaluation_skipped`` event. Calls refused to their caller (a rate limit, a budget that
rejects) and embedding calls are not scored.

Results add up in :class:`OnlineScores` (per feature, variant and scorer: ``Tether.
online_scores``), become ``gen_ai.evaluation.result`` span events in OpenTelemetry and
``tether_eval_online_total`` in Prometheus; ``tether eval online`` adds up the stored ones
(:func:`stored_scores`). ``aclose()`` waits (bounded) for the traces still being scored, so
none is lost when the process stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError, TetherError
from tether.evals.types import Assertion, Case, Output, Score, Scorer, ScoringContext
from tether.telemetry.sink import TraceSink
from tether.telemetry.trace import Trace

if TYPE_CHECKING:
    from tether.config.evals import OnlineEvalConfig
    from tether.config.models import TetherConfig
    from tether.sdk import Tether
    from tether.store.store import Store

log = logging.getLogger("tether.evals.online")

EVENT = "evaluation"  # one per scorer and sampled call (otel: gen_ai.evaluation.result)
DROPPED = "evaluation_dropped"
SKIPPED = "evaluation_skipped"
CANCELLED = "evaluation_cancelled"
NO_TEXT_TYPES = frozenset({"cost", "latency"})  # scorers that run on a metadata-only trace
_MAX_REASON = 1000


def sampled(trace_id: str, rate: float) -> bool:
    """Whether the call ``trace_id`` is in a ``rate`` sample (0..1): a hash of the id, so every
    replica and every later reader decides the same for the same call."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(trace_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < rate


# ------------------------------------------------------------------ aggregation


@dataclass(slots=True)
class ScoreStats:
    """One scorer's results on one feature and variant: how many calls it scored, how many
    passed or failed, how many times it raised (``errors``), and the sum of the scores."""

    count: int = 0
    passed: int = 0
    errors: int = 0
    score_sum: float = 0.0

    @property
    def failed(self) -> int:
        return self.count - self.passed

    @property
    def pass_rate(self) -> float | None:
        """Passed over scored (None before any score)."""
        return self.passed / self.count if self.count else None

    @property
    def mean(self) -> float | None:
        """The mean score (None before any score)."""
        return self.score_sum / self.count if self.count else None

    def add(self, other: ScoreStats) -> None:
        self.count += other.count
        self.passed += other.passed
        self.errors += other.errors
        self.score_sum += other.score_sum

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "pass_rate": self.pass_rate,
            "mean": self.mean,
        }


Key = tuple[str, str, str]  # feature, variant, scorer


@dataclass(slots=True)
class OnlineScores:
    """Online results added up per feature, variant and scorer (in memory, since the process
    started); ``dropped`` counts per feature the sampled calls not scored (overloaded).

    Rollouts read it: ``scores.stats("f", variant="candidate", scorer="is-json").pass_rate``.
    """

    by_key: dict[Key, ScoreStats] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def record(self, feature: str, variant: str, scorer: str, score: Score | None) -> None:
        """Count one result (``score=None``: the scorer raised)."""
        stats = self.by_key.setdefault((feature, variant, scorer), ScoreStats())
        if score is None:
            stats.errors += 1
            return
        stats.count += 1
        stats.passed += int(score.passed)
        stats.score_sum += score.value

    def record_event(self, feature: str, variant: str, data: Mapping[str, Any]) -> None:
        """Count one stored ``evaluation`` event's data."""
        name = str(data.get("name", "?"))
        value = data.get("score")
        if data.get("error") is not None or not isinstance(value, int | float):
            self.record(feature, variant, name, None)
            return
        passed = bool(data.get("passed"))
        self.record(feature, variant, name, Score(float(value), passed, name=name))

    def drop(self, feature: str) -> None:
        self.dropped[feature] = self.dropped.get(feature, 0) + 1

    def stats(
        self, feature: str, variant: str | None = None, scorer: str | None = None
    ) -> ScoreStats:
        """The results of ``feature`` (every variant and scorer unless named), added up."""
        total = ScoreStats()
        for (f, v, s), stats in self.by_key.items():
            if f == feature and variant in (None, v) and scorer in (None, s):
                total.add(stats)
        return total

    def rows(self) -> list[dict[str, Any]]:
        """One row per feature, variant and scorer, sorted: what ``--json`` prints."""
        return [
            {"feature": f, "variant": v, "scorer": s, **stats.to_dict()}
            for (f, v, s), stats in sorted(self.by_key.items())
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"scores": self.rows(), "dropped": dict(sorted(self.dropped.items()))}


# ------------------------------------------------------------------ a trace as a case


def case_of(trace: Trace) -> Case:
    """The case a trace stands for: the variables and messages its capture kept (none with
    ``capture: metadata``)."""
    captured = trace.input or {}
    text = captured.get("capture") != "metadata"
    variables = captured.get("variables") if text else None
    messages = captured.get("messages") if text else None
    return Case(
        index=0,
        id=trace.id,
        vars=dict(variables) if isinstance(variables, Mapping) else {},
        messages=tuple(messages) if isinstance(messages, list) and messages else None,
        metadata={"trace_id": trace.id, "config_version": trace.config_version, "online": True},
    )


def output_of(trace: Trace) -> Output:
    """What the call gave: its answer as the trace kept it, cost, latency, model, variant."""
    return Output(
        text=trace.output or "",
        degraded=trace.degraded,
        reason=trace.reason,
        error=(trace.reason or "error") if trace.status == "error" else None,
        cost_usd=trace.cost_usd,
        latency_ms=trace.latency_ms,
        input_tokens=trace.usage.input_tokens,
        output_tokens=trace.usage.output_tokens,
        model=trace.model,
        trace_id=trace.id,
        variant=trace.variant,
    )


def _scorable(trace: Trace) -> bool:
    """Calls refused to their caller and embedding calls have no answer to score."""
    if any(event.kind == "refused" for event in trace.events):
        return False
    return not (trace.attempts and trace.attempts[0].operation == "embeddings")


# ------------------------------------------------------------------ the sink


@dataclass(slots=True)
class OnlineFeature:
    """One feature's online evaluation: its sample rate and its built scorers (each with the
    assert it came from). Scorers are told apart by name (an assert's ``metric``, else its
    type): give two scorers of one type a ``metric`` each."""

    sample: float
    scorers: list[tuple[Assertion, Scorer]]


class OnlineEvaluator:
    """A :class:`~tether.telemetry.sink.TraceSink`: ``now`` gets every trace at once, ``then``
    once the trace is scored (or at once when it is not sampled). See the module docstring."""

    def __init__(
        self,
        features: Mapping[str, OnlineFeature],
        *,
        now: TraceSink,
        then: TraceSink | None,
        contexts: Sequence[ScoringContext] = (),
        concurrency: int = 4,
        queue_size: int = 1000,
        scorer_timeout_s: float = 60.0,
    ) -> None:
        self.features = dict(features)
        self.scores = OnlineScores()
        self._now = now
        self._then = then
        self._contexts = tuple(contexts)
        self._slots = asyncio.Semaphore(concurrency)
        self._queue_size = queue_size
        self._timeout_s = scorer_timeout_s
        self._pending: set[asyncio.Task[None]] = set()

    @classmethod
    def build(
        cls,
        config: TetherConfig,
        tether: Tether | None,
        *,
        now: TraceSink,
        then: TraceSink | None,
        base_dir: Path | None = None,
        **options: Any,
    ) -> OnlineEvaluator | None:
        """The evaluator of every feature that declares ``evals.online`` (None when none does).
        Scorers are built now: an unknown type or a bad value is a ConfigError at the
        feature's ``evals.online.scorers`` entry."""
        features: dict[str, OnlineFeature] = {}
        contexts: list[ScoringContext] = []
        for name, feature in config.features.items():
            online = feature.evals.online
            if online is None:
                continue
            judge = feature.evals.judge
            ctx = ScoringContext(
                base_dir=base_dir or Path.cwd(),
                tether=tether,
                feature=name,
                judge_model=judge.model,
                judge_max_tokens=judge.max_tokens,
                judge_temperature=judge.temperature,
                cache_dir=None,  # live calls do not repeat: a judge cache would only grow
            )
            contexts.append(ctx)
            features[name] = OnlineFeature(online.sample, _build_scorers(name, online, ctx))
        if not features:
            return None
        return cls(features, now=now, then=then, contexts=contexts, **options)

    @property
    def pending(self) -> int:
        """Sampled traces waiting to be scored or being scored."""
        return len(self._pending)

    async def write(self, trace: Trace) -> None:
        await self._now.write(trace)
        online = self.features.get(trace.feature)
        if online is None or not sampled(trace.id, online.sample) or not _scorable(trace):
            await self._forward(trace)
            return
        if len(self._pending) >= self._queue_size:
            self.scores.drop(trace.feature)
            trace.event(
                DROPPED,
                reason=f"online evaluation is behind ({len(self._pending)} calls waiting)",
                dropped=self.scores.dropped[trace.feature],
            )
            await self._forward(trace)
            return
        task = asyncio.create_task(self._evaluate(trace, online), name=f"tether-eval-{trace.id}")
        self._pending.add(task)
        task.add_done_callback(self._done)

    async def _forward(self, trace: Trace) -> None:
        if self._then is not None:
            await self._then.write(trace)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("online evaluation failed to pass a trace on: %s", error, exc_info=error)

    async def _evaluate(self, trace: Trace, online: OnlineFeature) -> None:
        try:
            async with self._slots:
                await self.score(trace, online)
        except asyncio.CancelledError:
            trace.event(CANCELLED, reason="the process stopped before scoring finished")
            raise
        finally:
            await self._forward(trace)  # scored or not, the trace is stored and exported

    async def score(self, trace: Trace, online: OnlineFeature) -> None:
        """Run ``online``'s scorers on ``trace`` (concurrently) and put their events on it."""
        case, output = case_of(trace), output_of(trace)
        runnable = online.scorers
        if trace.input is not None and trace.input.get("capture") == "metadata":
            runnable = [(a, s) for a, s in online.scorers if a.base_type in NO_TEXT_TYPES]
            skipped = [
                scorer_name(a) for a, _ in online.scorers if a.base_type not in NO_TEXT_TYPES
            ]
            if skipped:
                trace.event(
                    SKIPPED,
                    scorers=skipped,
                    reason="capture: metadata keeps no text; only cost and latency scorers run",
                )
        results = await asyncio.gather(*(self._one(s, case, output) for _, s in runnable))
        for (assertion, _), result in zip(runnable, results, strict=True):
            self._record(trace, assertion, result)

    async def _one(self, scorer: Scorer, case: Case, output: Output) -> Score | BaseException:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                return await scorer.score(case, output)
        except TimeoutError:
            took = time.perf_counter() - started
            return TimeoutError(f"the scorer took longer than {self._timeout_s:g}s ({took:.1f}s)")
        except Exception as exc:  # noqa: BLE001 - a scorer's failure is its result, on the trace
            return exc

    def _record(self, trace: Trace, assertion: Assertion, result: Score | BaseException) -> None:
        name = scorer_name(assertion)
        if isinstance(result, BaseException):
            log.warning("online scorer %s failed on trace %s: %s", name, trace.id, result)
            trace.event(
                EVENT,
                name=name,
                type=assertion.type,
                label="error",
                error=f"{type(result).__name__}: {result}"[:_MAX_REASON],
                **{"error.type": type(result).__name__},
            )
            self.scores.record(trace.feature, trace.variant, name, None)
            return
        data: dict[str, Any] = {
            "name": name,
            "type": assertion.type,
            "score": float(result.value),
            "passed": bool(result.passed),
            "reason": result.reason[:_MAX_REASON],
        }
        if result.judge is not None:
            data["judge"] = result.judge.to_dict()
        trace.event(EVENT, **data)
        self.scores.record(trace.feature, trace.variant, name, result)

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Wait up to ``timeout_s`` for the traces being scored; cancel what is left (each
        still goes on to the real sinks, with an ``evaluation_cancelled`` event); close the
        judges the scorers opened."""
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                log.warning("online evaluation: %d calls not scored at shutdown", len(late))
                await asyncio.wait(late)
        await _close_judges(self._contexts)


def scorer_name(assertion: Assertion) -> str:
    """How results are named and added up: the assert's ``metric``, else for a custom scorer
    its ``module:function``, else its type (with ``not-``)."""
    if assertion.metric:
        return assertion.metric
    if assertion.base_type == "custom" and isinstance(assertion.value, str) and assertion.value:
        return assertion.value
    return assertion.type


def _build_scorers(
    feature: str, online: OnlineEvalConfig, ctx: ScoringContext
) -> list[tuple[Assertion, Scorer]]:
    from tether.evals.scorers.registry import assertions, build_scorer

    where = f"features.{feature}.evals.online.scorers"
    try:
        built = assertions(online.scorers)
    except TetherError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc
    scorers: list[tuple[Assertion, Scorer]] = []
    for index, assertion in enumerate(built):
        try:
            scorers.append((assertion, build_scorer(assertion, ctx)))
        except TetherError as exc:
            raise ConfigError(f"{where}[{index}]: {exc.message}") from exc
    return scorers


async def _close_judges(contexts: Iterable[ScoringContext]) -> None:
    """Release what model-graded scorers opened (their judge and its cache), if any."""
    if not any(ctx.shared for ctx in contexts):
        return
    from tether.evals.judge import close_judge

    for ctx in contexts:
        await close_judge(ctx)


# ------------------------------------------------------------------ the stored view


def stored_scores(
    store: Store,
    *,
    feature: str | None = None,
    since: datetime | None = None,
    batch: int = 1000,
) -> OnlineScores:
    """Online results of the stored traces (``feature``, started since ``since``), added up
    per feature, variant and scorer; ``dropped`` counts the sampled calls not scored."""
    scores = OnlineScores()
    for kind, trace_feature, variant, data in _stored_events(store, feature, since, batch):
        if kind == EVENT:
            scores.record_event(trace_feature, variant, data)
        else:
            scores.drop(trace_feature)
    return scores


def _stored_events(
    store: Store, feature: str | None, since: datetime | None, batch: int
) -> Iterator[tuple[str, str, str, Mapping[str, Any]]]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from tether.store.schema import StepRow, TraceRow

    query = (
        select(StepRow.event, TraceRow.feature, TraceRow.variant, StepRow.data)
        .join(TraceRow, TraceRow.id == StepRow.trace_id)
        .where(StepRow.kind == "event", StepRow.event.in_((EVENT, DROPPED)))
    )
    if feature is not None:
        query = query.where(TraceRow.feature == feature)
    if since is not None:
        query = query.where(TraceRow.started_at >= since)
    with Session(store.engine) as session:
        rows = session.execute(query.execution_options(yield_per=batch))
        for event, trace_feature, variant, step in rows:
            data = step.get("data") if isinstance(step, Mapping) else None
            yield str(event), trace_feature, variant, data if isinstance(data, Mapping) else {}
