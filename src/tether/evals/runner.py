"""Runs a feature (or one of its declared variants) over a dataset and scores every answer.

    runner = EvalRunner(tether, "support-reply", dataset, store=store.evals,
                        settings=RunSettings(concurrency=8, repeat=3, min_pass_rate=0.9))
    run = await runner.run()          # an EvalRun whose summary says how it went

How it runs:

* **Bounded concurrency.** ``concurrency`` worker tasks pull (case, repeat) pairs from one
  iterator; there is never a task per case.
* **The full pipeline.** Each case is a ``Tether.run(feature, case.vars, variant=...)`` (a case
  with ``messages`` sends that conversation as the request): guards, budgets, fallbacks and the
  failure path all apply. Every call's trace carries ``metadata.eval_run`` (and
  ``eval_case``, ``eval_repeat``) so traces link back to the run. A call that raises gives an
  :class:`~tether.evals.types.Output` with ``error`` set, scored like any answer; a degraded
  answer is scored as given. The feature's own response cache is bypassed unless
  ``feature_cache`` is set: an evaluation measures the model.
* **Rate-limit aware.** A refusal the caller is told to wait for (``RateLimitExceeded``, an
  upstream ``RateLimited``, a ``BudgetExceeded`` that resets soon) waits its ``retry_after_s``
  (at most ``max_wait_s``) and runs the case again: no case fails for a transient 429. A
  degraded answer whose reason is a rate limit is retried ``rate_limit_retries`` times before
  it is scored.
* **Scorers** are the case's asserts plus the run's own (``settings.scorers``), each distinct
  assertion built once (:func:`tether.evals.scorers.registry.build_scorer`) before any call,
  so an unsupported assert fails the run before it spends anything.
* **Streamed results.** Results go to the store in batches, written in a thread; a running
  :class:`Tally` keeps counts and sums (and one float per result for latency percentiles), never
  the results themselves, so memory stays flat on large datasets.
* ``repeat > 1`` runs each case several times and names the flaky ones (repeats that disagree
  on ``passed``); the gate (``min_pass_rate``, ``min_score``) is judged on every result.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tether.errors import BudgetExceeded, InvalidRequest, RateLimited, TetherError
from tether.evals.types import (
    Assertion,
    Case,
    CaseResult,
    Dataset,
    EvalRun,
    JudgeUsage,
    Output,
    Score,
    Scorer,
    ScoringContext,
    combine,
)
from tether.types import Message, ModelRequest, ToolCall

if TYPE_CHECKING:
    from tether.evals.modelcache import ModelCache
    from tether.sdk import Tether
    from tether.store.evals import EvalStore

RATE_LIMIT_REASONS = frozenset({"rate_limited", "rate_limit_exceeded"})
MAX_WAIT_PER_CASE_S = 600.0  # a case that waited this long in total is scored as an error
QUEUE_SIZE = 1000  # results waiting for the store, at most


def new_run_id() -> str:
    return "ev_" + secrets.token_hex(6)


@dataclass(slots=True)
class RunSettings:
    """How a run runs. ``scorers`` apply to every case (on top of its own asserts);
    ``min_pass_rate``/``min_score`` are the gate (None: not checked)."""

    variant: str | None = None
    scorers: Sequence[Assertion] = ()
    repeat: int = 1
    concurrency: int = 8
    min_pass_rate: float | None = None
    min_score: float | None = None
    max_wait_s: float = 60.0
    rate_limit_retries: int = 3
    feature_cache: bool = False
    batch: int = 200

    def __post_init__(self) -> None:
        if self.repeat < 1:
            raise InvalidRequest(f"repeat must be at least 1, not {self.repeat}", param="repeat")
        if self.concurrency < 1:
            raise InvalidRequest(
                f"concurrency must be at least 1, not {self.concurrency}", param="concurrency"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant or "default",
            "scorers": [assertion.to_dict() for assertion in self.scorers],
            "repeat": self.repeat,
            "concurrency": self.concurrency,
            "min_pass_rate": self.min_pass_rate,
            "min_score": self.min_score,
            "feature_cache": self.feature_cache,
        }


class Progress(Protocol):
    """What a runner reports as it goes (the CLI's progress bar; tests record it)."""

    def update(self, tally: Tally) -> None: ...

    def note(self, text: str) -> None: ...


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of sorted values, interpolated between closest ranks
    (``statistics.quantiles``' inclusive method); 0.0 for none."""
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    cuts = statistics.quantiles(sorted_values, n=100, method="inclusive")
    return float(
        sorted_values[0] if p <= 0 else sorted_values[-1] if p >= 100 else cuts[int(p) - 1]
    )


@dataclass(slots=True)
class Tally:
    """A run's running totals: what its summary and the progress bar are made of."""

    total: int = 0
    expected: int = 0
    passed: int = 0
    score_sum: float = 0.0
    cost_usd: float = 0.0
    errors: int = 0
    degraded: int = 0
    judge: JudgeUsage = field(default_factory=JudgeUsage)
    latencies: list[float] = field(default_factory=list)
    scorers: dict[str, list[float]] = field(default_factory=dict)  # name: [sum, passes, n]
    outcomes: dict[int, int] = field(default_factory=dict)  # index: 1 passed | 2 failed
    started: float = field(default_factory=time.monotonic)

    def add(self, result: CaseResult, track_flaky: bool) -> None:
        self.total += 1
        self.passed += result.passed
        self.score_sum += result.score
        self.cost_usd += result.output.cost_usd
        self.errors += result.output.error is not None
        self.degraded += result.output.degraded
        self.judge = self.judge + result.judge
        self.latencies.append(result.output.latency_ms)
        for score in result.scores:
            sums = self.scorers.setdefault(score.name, [0.0, 0.0, 0.0])
            sums[0] += score.value
            sums[1] += score.passed
            sums[2] += 1
        if track_flaky:
            self.outcomes[result.index] = self.outcomes.get(result.index, 0) | (
                1 if result.passed else 2
            )

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def score_mean(self) -> float:
        return self.score_sum / self.total if self.total else 0.0

    @property
    def rate(self) -> float:
        """Results per second so far."""
        elapsed = time.monotonic() - self.started
        return self.total / elapsed if elapsed > 0 else 0.0

    @property
    def flaky(self) -> list[int]:
        return sorted(index for index, seen in self.outcomes.items() if seen == 3)

    def gate(self, min_pass_rate: float | None, min_score: float | None) -> dict[str, Any]:
        failures: list[str] = []
        if min_pass_rate is not None and self.pass_rate < min_pass_rate:
            failures.append(f"pass rate {self.pass_rate:.3f} < min_pass_rate {min_pass_rate}")
        if min_score is not None and self.score_mean < min_score:
            failures.append(f"mean score {self.score_mean:.3f} < min_score {min_score}")
        return {
            "min_pass_rate": min_pass_rate,
            "min_score": min_score,
            "passed": not failures,
            "failures": failures,
        }

    def summary(self, settings: RunSettings, model_cache: Mapping[str, int]) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        return {
            "pass_rate": self.pass_rate,
            "passed": self.passed,
            "total": self.total,
            "score_mean": self.score_mean,
            "scorers": {
                name: {"mean": s[0] / s[2], "pass_rate": s[1] / s[2]}
                for name, s in sorted(self.scorers.items())
            },
            "cost_usd": self.cost_usd,
            "judge": self.judge.to_dict(),
            "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
            "flaky": self.flaky,
            "errors": self.errors,
            "degraded": self.degraded,
            "gate": self.gate(settings.min_pass_rate, settings.min_score),
            "model_cache": dict(model_cache),
            "duration_s": round(time.monotonic() - self.started, 3),
        }


def _assertion_key(assertion: Assertion) -> str:
    return json.dumps(assertion.to_dict(), sort_keys=True, default=str)


def _tool_call(data: Mapping[str, Any]) -> ToolCall:
    """A tool call as tether's traces capture it (``{id, name, arguments}``) or as OpenAI
    writes it (``{id, type, function: {name, arguments}}``)."""
    function = data.get("function")
    source = function if isinstance(function, Mapping) else data
    arguments = source.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return ToolCall(str(data.get("id", "")), str(source.get("name", "")), arguments)


def _message(data: Mapping[str, Any]) -> Message:
    """A dataset row's ``{role, content, ...}`` message (content parts, tool calls and a tool
    result's ``tool_call_id`` kept)."""
    content = data.get("content")
    parts = None
    if isinstance(content, list):
        parts = [dict(p) for p in content if isinstance(p, Mapping)]
        content = "".join(str(p.get("text", "")) for p in parts)
    calls = data.get("tool_calls")
    call_id = data.get("tool_call_id")
    return Message(
        data["role"],
        None if content is None else str(content),
        tool_calls=[_tool_call(c) for c in calls if isinstance(c, Mapping)] if calls else None,
        tool_call_id=None if call_id is None else str(call_id),
        name=data.get("name"),
        parts=parts,
    )


def _error_output(exc: BaseException, started: float, variant: str) -> Output:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    latency = (time.perf_counter() - started) * 1000.0
    return Output(
        text="", error=f"{type(exc).__name__}: {message}", latency_ms=latency, variant=variant
    )


def _wait_for(exc: TetherError) -> float | None:
    """How long to wait before trying a refused call again (None: waiting does not help)."""
    if isinstance(exc, RateLimited):
        return exc.retry_after_s if exc.retry_after_s is not None else 1.0
    if isinstance(exc, BudgetExceeded) and exc.retry_after_s is not None:
        return exc.retry_after_s
    cause = getattr(exc, "cause", None)  # FeatureFailed(cause=RateLimited) on on_failure: raise
    if isinstance(cause, RateLimited):
        return cause.retry_after_s if cause.retry_after_s is not None else 1.0
    return None


class EvalRunner:
    """One run of ``feature`` over ``dataset`` (see the module docstring). ``store`` receives
    the run and its results (None: nothing is stored, e.g. a benchmark); ``context`` builds the
    scorers (default: files relative to the dataset, judges on ``tether``); ``model_cache`` is
    the cache already wrapped around ``tether``'s models, for its hit counts."""

    def __init__(
        self,
        tether: Tether,
        feature: str,
        dataset: Dataset,
        *,
        store: EvalStore | None = None,
        settings: RunSettings | None = None,
        context: ScoringContext | None = None,
        progress: Progress | None = None,
        model_cache: ModelCache | None = None,
        run_id: str | None = None,
    ) -> None:
        self.tether = tether
        self.feature = feature
        self.dataset = dataset
        self.store = store
        self.settings = settings or RunSettings()
        self.context = context or scoring_context(tether, feature, dataset, None)
        self.progress = progress
        self.model_cache = model_cache
        self.tally = Tally(expected=len(dataset) * self.settings.repeat)
        compiled = tether.pipeline.feature(feature).variant(self.variant, strict=True)
        self.run_record = EvalRun(
            id=run_id or new_run_id(),
            feature=tether.pipeline.canonical(feature),
            variant=self.variant,
            config_version=compiled.version,
            dataset_id=dataset.id,
            dataset_path=dataset.path,
            started_at=datetime.now(UTC),
            cases=len(dataset),
            repeat=self.settings.repeat,
            settings=self.settings.to_dict(),
        )
        self._scorers: dict[str, Scorer] = {}
        self._by_object: dict[int, Scorer] = {}
        self._plan: dict[int, tuple[Scorer, ...]] = {}  # by row index

    @property
    def variant(self) -> str:
        return self.settings.variant or "default"

    # ------------------------------------------------------------------ scorers

    def _scorer(self, assertion: Assertion) -> Scorer:
        found = self._by_object.get(id(assertion))  # rows sharing one assert (defaultTest)
        if found is not None:
            return found
        key = _assertion_key(assertion)
        found = self._scorers.get(key)
        if found is None:
            from tether.evals.scorers.registry import build_scorer

            found = self._scorers[key] = build_scorer(assertion, self.context)
        self._by_object[id(assertion)] = found  # the dataset keeps the assertion alive
        return found

    def build_scorers(self) -> None:
        """Build every distinct scorer once, before any call (DatasetError for an unsupported
        assert)."""
        shared = tuple(self._scorer(a) for a in self.settings.scorers)
        self._plan = {
            case.index: tuple(self._scorer(a) for a in case.asserts) + shared
            for case in self.dataset.cases
        }

    def scorers_for(self, case: Case) -> tuple[Scorer, ...]:
        """The scorers of ``case``: its asserts', then the run's (after :meth:`build_scorers`;
        rows with equal asserts share the same scorer objects)."""
        return self._plan.get(case.index, ())

    async def _score(self, case: Case, output: Output) -> list[Score]:
        scorers = self.scorers_for(case)
        scores = await asyncio.gather(*(self._one_score(s, case, output) for s in scorers))
        return list(scores)

    @staticmethod
    async def _one_score(scorer: Scorer, case: Case, output: Output) -> Score:
        try:
            score = await scorer.score(case, output)
        except Exception as exc:  # noqa: BLE001 - a scorer's bug fails its case (reason says why)
            return Score(0.0, False, f"scorer error: {type(exc).__name__}: {exc}", scorer.name)
        return score if score.name else replace(score, name=scorer.name)

    # ------------------------------------------------------------------ calls

    def _request(self, case: Case) -> ModelRequest | None:
        if case.messages is None:
            return None
        return ModelRequest(messages=[_message(m) for m in case.messages])

    async def _wait(self, seconds: float, why: str) -> None:
        if self.progress is not None:
            self.progress.note(f"{why}: waiting {seconds:.1f}s")
        await asyncio.sleep(seconds)
        if self.progress is not None:
            self.progress.note("")

    async def call(self, case: Case, repeat: int) -> Output:
        """The feature's answer to ``case`` (waiting out rate limits), never an exception."""
        settings = self.settings
        metadata = {"eval_run": self.run_record.id, "eval_case": case.index, "eval_repeat": repeat}
        waited, degraded_retries = 0.0, 0
        while True:
            started = time.perf_counter()
            try:
                result = await self.tether.run(
                    self.feature,
                    case.vars,
                    request=self._request(case),
                    metadata=metadata,
                    cache=settings.feature_cache,
                    variant=self.variant,  # explicit: never a rollout picker's choice
                )
            except TetherError as exc:
                wait = _wait_for(exc)
                if wait is None or wait > settings.max_wait_s or waited >= MAX_WAIT_PER_CASE_S:
                    return _error_output(exc, started, self.variant)
                waited += wait
                await self._wait(wait, exc.reason)
                continue
            except Exception as exc:  # noqa: BLE001 - a bug in a stage: this case's error (named)
                return _error_output(exc, started, self.variant)
            limited = result.degraded and result.reason in RATE_LIMIT_REASONS
            if limited and degraded_retries < settings.rate_limit_retries:
                degraded_retries += 1
                wait = min(result.retry_after_s or 2.0**degraded_retries, settings.max_wait_s)
                waited += wait
                await self._wait(wait, str(result.reason))
                continue
            return Output.of(result)

    async def evaluate(self, case: Case, repeat: int) -> CaseResult:
        """One case, one repeat: called and scored."""
        output = await self.call(case, repeat)
        scores = await self._score(case, output)
        passed, score = combine(scores)
        return CaseResult(
            run_id=self.run_record.id,
            index=case.index,
            repeat=repeat,
            case_id=case.id,
            passed=passed,
            score=score,
            scores=scores,
            output=output,
            tags=case.tags,
            vars=case.vars,
            expected=case.expected,
        )

    # ------------------------------------------------------------------ the run

    def _work(self) -> Iterator[tuple[Case, int]]:
        for case in self.dataset.cases:
            for repeat in range(self.settings.repeat):
                yield case, repeat

    async def _worker(
        self, work: Iterator[tuple[Case, int]], queue: asyncio.Queue[CaseResult | None]
    ) -> None:
        for case, repeat in work:  # a shared iterator: each item goes to one worker
            result = await self.evaluate(case, repeat)
            self.tally.add(result, self.settings.repeat > 1)
            if self.progress is not None:
                self.progress.update(self.tally)
            await queue.put(result)

    async def _writer(self, queue: asyncio.Queue[CaseResult | None]) -> None:
        """Writes results to the store in batches, off the event loop, until ``None``."""
        done = False
        while not done:
            batch: list[CaseResult] = []
            item = await queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= self.settings.batch or queue.empty():
                    break
                item = queue.get_nowait()
            done = item is None
            if batch and self.store is not None:
                await asyncio.to_thread(self.store.add_results, batch)

    async def _all(self) -> None:
        queue: asyncio.Queue[CaseResult | None] = asyncio.Queue(QUEUE_SIZE)
        work = self._work()
        workers = min(self.settings.concurrency, max(1, self.tally.expected))
        try:
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(self._writer(queue))
                async with asyncio.TaskGroup() as calls:
                    for _ in range(workers):
                        calls.create_task(self._worker(work, queue))
                await queue.put(None)
                await writer
        except BaseExceptionGroup as group:  # the first failure as itself (e.g. the store's)
            raise _first(group) from None

    async def run(self) -> EvalRun:
        """Run every case (``repeat`` times), store the results, and return the finished run
        (``status`` done; ``failed`` or ``interrupted`` if it raised or was cancelled, after
        recording that in the store)."""
        self.build_scorers()
        run = self.run_record
        if self.store is not None:
            await asyncio.to_thread(self.store.create_run, run)
        self.tally.started = time.monotonic()
        try:
            await self._all()
        except BaseException as exc:
            stopped = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
            run.status = "interrupted" if stopped else "failed"
            await self._finish(run)
            raise
        finally:
            from tether.evals.judge import close_judge

            await close_judge(self.context)  # the judge cache's file, if a judge was asked
        run.status = "done"
        await self._finish(run)
        return run

    async def _finish(self, run: EvalRun) -> None:
        run.finished_at = datetime.now(UTC)
        stats = {"hits": 0, "misses": 0}
        if self.model_cache is not None:
            stats = self.model_cache.stats()
        run.summary = self.tally.summary(self.settings, stats)
        if self.store is not None:
            await asyncio.shield(asyncio.to_thread(self.store.finish_run, run))


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def scoring_context(
    tether: Tether, feature: str, dataset: Dataset, cache_dir: Path | None
) -> ScoringContext:
    """What the scorers of a run of ``feature`` get: ``file://`` paths relative to the
    dataset's folder, the judge of the feature's ``evals.judge`` (the same for every variant,
    so two runs are judged alike) and, unless ``evals.judge.cache`` is off, the judge cache in
    ``cache_dir``."""
    config = tether.pipeline.feature(feature).config
    judge = config.evals.judge
    return ScoringContext(
        base_dir=Path(dataset.path).resolve().parent,
        tether=tether,
        feature=feature,
        judge_model=judge.model,
        judge_max_tokens=judge.max_tokens,
        judge_temperature=judge.temperature,
        cache_dir=cache_dir if judge.cache else None,
    )


def gate_failed(run: EvalRun) -> bool:
    """Whether a finished run's gate failed (its exit code should be non-zero)."""
    gate = run.summary.get("gate") or {}
    return not gate.get("passed", True)
