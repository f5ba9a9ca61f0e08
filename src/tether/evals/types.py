"""What evaluation passes around: a dataset's :class:`Case` and its :class:`Assertion` list, the
:class:`Output` a feature gave for it, the :class:`Score` a :class:`Scorer` gives that output,
and what a run stores (:class:`CaseResult` per case and repeat, :class:`EvalRun` per run).

A scorer is one method::

    class Scorer(Protocol):
        name: str
        async def score(self, case: Case, output: Output) -> Score: ...

A case passes when every one of its scores passes; its score is the weighted mean of its scores
(promptfoo's meaning: an assert of ``weight: 0`` is reported but counts for nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from tether.pipeline.result import Result
    from tether.sdk import Tether


def content_hash(value: Any) -> str:
    """A short, stable hash of a JSON-able value (keys sorted): how rows and datasets are
    identified, so two files with the same rows are the same dataset."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Assertion:
    """One assert of a case, as written (promptfoo's shape): ``type`` may carry the ``not-``
    prefix; ``options`` holds every other key as written (``provider``, ``rubricPrompt``,
    ``transform``, ...)."""

    type: str
    value: Any = None
    threshold: float | None = None
    weight: float = 1.0
    metric: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def negated(self) -> bool:
        return self.type.startswith("not-")

    @property
    def base_type(self) -> str:
        """The type without its ``not-`` prefix."""
        return self.type[4:] if self.negated else self.type

    @property
    def name(self) -> str:
        """What reports call it: its ``metric``, else its type."""
        return self.metric or self.type

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.value is not None:
            data["value"] = self.value
        if self.threshold is not None:
            data["threshold"] = self.threshold
        if self.weight != 1.0:
            data["weight"] = self.weight
        if self.metric is not None:
            data["metric"] = self.metric
        data.update(self.options)
        return data


@dataclass(frozen=True, slots=True)
class Case:
    """One dataset row. ``index`` is its 0-based position in the dataset, ``id`` the hash of its
    content. The feature is called with ``vars`` (its prompt's variables) or, when the row has
    ``messages`` (OpenAI-style ``{role, content}`` dicts), with that conversation."""

    index: int
    id: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    messages: tuple[Mapping[str, Any], ...] | None = None
    expected: Any = None
    asserts: tuple[Assertion, ...] = ()
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    """A loaded dataset: its rows in order, identified by ``id`` (the hash of its rows' ids, so
    the same rows in another file or format are the same dataset)."""

    path: str
    id: str
    cases: Sequence[Case]
    format: Literal["jsonl", "csv", "yaml", "promptfoo"] = "jsonl"

    def __len__(self) -> int:
        return len(self.cases)


@dataclass(slots=True)
class Output:
    """What the feature gave for a case: its answer (``text``, ``value`` when an output guard
    parsed JSON), whether it was degraded and why, or the ``error`` the call raised (then
    ``text`` is empty), and what it cost."""

    text: str
    value: Any = None
    degraded: bool = False
    reason: str | None = None
    error: str | None = None
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    trace_id: str | None = None
    variant: str = "default"

    @classmethod
    def of(cls, result: Result) -> Output:
        return cls(
            text=result.output,
            value=result.value,
            degraded=result.degraded,
            reason=result.reason,
            cost_usd=result.cost_usd,
            latency_ms=result.latency_ms,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            model=result.model,
            trace_id=result.trace_id,
            variant=result.variant,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "value": self.value,
            "degraded": self.degraded,
            "reason": self.reason,
            "error": self.error,
            "cost_usd": self.cost_usd,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "model": self.model,
            "trace_id": self.trace_id,
            "variant": self.variant,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Output:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True, slots=True)
class JudgeUsage:
    """What judging cost, apart from the feature's own calls: ``calls`` made, ``cached``
    verdicts reused from the judge cache (free), tokens and cost of the calls made."""

    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: JudgeUsage) -> JudgeUsage:
        return JudgeUsage(
            self.calls + other.calls,
            self.cached + other.cached,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_usd + other.cost_usd,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cached": self.cached,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True, slots=True)
class Score:
    """A scorer's verdict on one output: ``value`` in 0..1, ``passed``, and why (``reason``).
    ``name`` is the scorer's (an assert's ``metric`` or type), ``weight`` its weight in the
    case's score; ``judge`` what a model-graded scorer's calls cost."""

    value: float
    passed: bool
    reason: str = ""
    name: str = ""
    weight: float = 1.0
    judge: JudgeUsage | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "passed": self.passed,
            "reason": self.reason,
            "weight": self.weight,
        }
        if self.judge is not None:
            data["judge"] = self.judge.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Score:
        judge = data.get("judge")
        return cls(
            value=float(data["value"]),
            passed=bool(data["passed"]),
            reason=str(data.get("reason", "")),
            name=str(data.get("name", "")),
            weight=float(data.get("weight", 1.0)),
            judge=None if judge is None else JudgeUsage(**judge),
        )


def combine(scores: Sequence[Score]) -> tuple[bool, float]:
    """A case's verdict from its scores: passed when every score passed (no score: passed),
    score the weighted mean (every weight 0, or no score: 1.0 when passed else 0.0)."""
    passed = all(score.passed for score in scores)
    total = sum(score.weight for score in scores)
    if total <= 0:
        return passed, 1.0 if passed else 0.0
    return passed, sum(score.value * score.weight for score in scores) / total


class Scorer(Protocol):
    """Scores one output of one case (see :mod:`tether.evals.scorers`)."""

    name: str

    async def score(self, case: Case, output: Output) -> Score: ...


@dataclass(slots=True)
class ScoringContext:
    """What building a scorer may need: ``base_dir`` resolves ``file://`` paths (the dataset's
    folder); ``tether`` reaches configured providers (judges), embedding features
    (``similar``) and guards; ``judge_model`` is the default judge (``provider:model``);
    ``cache_dir`` keeps judge verdicts (None: no cache); ``feature`` is the feature evaluated;
    ``shared`` holds what the scorers built from this context share (the judge and its disk
    cache: :func:`tether.evals.judge.close_judge` closes it when the run ends)."""

    base_dir: Path = field(default_factory=Path)
    tether: Tether | None = None
    feature: str | None = None
    judge_model: str | None = None
    judge_max_tokens: int = 256
    judge_temperature: float = 0.0
    cache_dir: Path | None = None
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CaseResult:
    """One case of one run, one repeat: what the run stores (and streams to the store)."""

    run_id: str
    index: int
    repeat: int
    case_id: str
    passed: bool
    score: float
    scores: list[Score]
    output: Output
    tags: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    expected: Any = None

    @property
    def judge(self) -> JudgeUsage:
        total = JudgeUsage()
        for score in self.scores:
            if score.judge is not None:
                total = total + score.judge
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "index": self.index,
            "repeat": self.repeat,
            "case_id": self.case_id,
            "passed": self.passed,
            "score": self.score,
            "scores": [score.to_dict() for score in self.scores],
            "output": self.output.to_dict(),
            "tags": list(self.tags),
            "vars": dict(self.vars),
            "expected": self.expected,
        }


RunStatus = Literal["running", "done", "failed", "interrupted"]


@dataclass(slots=True)
class EvalRun:
    """One ``tether eval run``: what ran (feature, variant, its config version, the dataset)
    and, once done, its ``summary`` (pass rate, per-scorer means, cost, judge cost, latency
    percentiles, flaky cases, the gate's verdict: the JSON ``--json`` prints)."""

    id: str
    feature: str
    variant: str
    config_version: str
    dataset_id: str
    dataset_path: str
    started_at: datetime
    cases: int
    repeat: int = 1
    status: RunStatus = "running"
    finished_at: datetime | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "feature": self.feature,
            "variant": self.variant,
            "config_version": self.config_version,
            "dataset_id": self.dataset_id,
            "dataset_path": self.dataset_path,
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "cases": self.cases,
            "repeat": self.repeat,
            "status": self.status,
            "settings": self.settings,
            **self.summary,
        }
