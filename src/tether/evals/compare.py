"""Is run B significantly worse (or better) than run A on the same dataset?

Two runs compare when they used the same dataset (same ``dataset_id``), whatever feature,
variant or config produced them. Their results are paired by dataset row index; with
``--repeat N`` an item's verdict is the majority ``passed`` over its repeats and its score the
mean. An item whose repeats disagree (flaky) in either run says nothing reliable: it is excluded,
and named.

Statistics (from scipy):

* pass/fail: McNemar's exact test, a two-sided binomial test on the discordant pairs
  (``regressions``: passed in A, failed in B; ``improvements``: the reverse);
* scores: the mean paired difference ``B - A`` with a bootstrap confidence interval (BCa, fixed
  seed; percentile above 10,000 items) and the Wilcoxon signed-rank test's p-value (zero
  differences dropped; none left: p = 1).

The verdict rule keeps the false-positive rate of an A/A comparison at or below ``alpha``:

1. when every paired score is 0 or 1 (scores carry nothing pass/fail does not), McNemar decides
   alone, at level ``alpha``;
2. otherwise both tests run, each at ``alpha / 2`` (Bonferroni);
3. a significant test that points worse makes the verdict ``regressed`` (a CI gate errs toward
   flagging), else one that points better makes it ``improved``, else ``no significant change``.
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from tether.errors import InvalidRequest
from tether.evals.types import CaseResult, EvalRun

Verdict = Literal["regressed", "improved", "no significant change"]
BCA_MAX_ITEMS = 10_000  # above this, BCa's jackknife costs more than it corrects
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 12
BOOTSTRAP_BATCH_VALUES = 1_000_000  # resampled values in memory at once (8 MB of floats)
EPSILON = 1e-9
MAX_SCORE_CHANGES = 1000  # score-only changes kept with both answers (the largest)


@dataclass(frozen=True, slots=True)
class McNemar:
    """Discordant pairs and the exact two-sided p-value of McNemar's test."""

    regressions: int
    improvements: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "regressions": self.regressions,
            "improvements": self.improvements,
            "p_value": self.p_value,
        }


@dataclass(frozen=True, slots=True)
class ScoreTest:
    """Mean scores, the mean paired difference ``B - A``, its confidence interval (None: no
    pairs) and the Wilcoxon signed-rank p-value."""

    mean_a: float
    mean_b: float
    mean_delta: float
    ci: tuple[float, float] | None
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "mean_delta": self.mean_delta,
            "ci": None if self.ci is None else list(self.ci),
            "p_value": self.p_value,
        }


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One paired item whose verdict or score changed, with both answers (the first repeat's)
    and the asserts each run failed (``name: reason``)."""

    index: int
    passed_a: bool
    passed_b: bool
    score_a: float
    score_b: float
    output_a: str
    output_b: str
    error_a: str | None = None
    error_b: str | None = None
    failed_a: tuple[str, ...] = ()
    failed_b: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    expected: Any = None
    tags: tuple[str, ...] = ()

    @property
    def delta(self) -> float:
        return self.score_b - self.score_a

    @property
    def kind(self) -> Literal["regression", "improvement", "score"]:
        if self.passed_a != self.passed_b:
            return "regression" if self.passed_a else "improvement"
        return "score"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "change": self.kind,
            "passed_a": self.passed_a,
            "passed_b": self.passed_b,
            "score_a": self.score_a,
            "score_b": self.score_b,
            "delta": self.delta,
            "output_a": self.output_a,
            "output_b": self.output_b,
            "error_a": self.error_a,
            "error_b": self.error_b,
            "failed_a": list(self.failed_a),
            "failed_b": list(self.failed_b),
            "vars": dict(self.vars),
            "expected": self.expected,
            "tags": list(self.tags),
        }


@dataclass(slots=True)
class TagDelta:
    """One tag's paired items: how many, passed in A and in B, summed scores."""

    n: int = 0
    passed_a: int = 0
    passed_b: int = 0
    score_a: float = 0.0
    score_b: float = 0.0

    def add(self, a: _Item, b: _Item) -> None:
        self.n += 1
        self.passed_a += int(a.passed)
        self.passed_b += int(b.passed)
        self.score_a += a.score
        self.score_b += b.score

    def to_dict(self) -> dict[str, Any]:
        n = self.n or 1
        return {
            "n": self.n,
            "pass_rate_a": self.passed_a / n,
            "pass_rate_b": self.passed_b / n,
            "mean_a": self.score_a / n,
            "mean_b": self.score_b / n,
        }


@dataclass(slots=True)
class Comparison:
    """Run B against baseline run A: see the module docstring for the statistics and the rule.
    ``items`` are the changed items kept in full (``changed`` counts them all), in row order;
    ``scores_a``/``scores_b`` the paired items' scores (in index order, for charts)."""

    run_a: EvalRun
    run_b: EvalRun
    alpha: float
    pairs: int
    pass_rate_a: float
    pass_rate_b: float
    mcnemar: McNemar
    score: ScoreTest
    verdict: Verdict
    decided_by: str
    p_value: float
    rule: str
    flaky_a: list[int] = field(default_factory=list)
    flaky_b: list[int] = field(default_factory=list)
    unpaired: list[int] = field(default_factory=list)
    items: list[ItemChange] = field(default_factory=list)
    changed: int = 0
    tags: dict[str, TagDelta] = field(default_factory=dict)
    scores_a: list[float] = field(default_factory=list)
    scores_b: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def excluded(self) -> list[int]:
        """Row indexes left out because they were flaky in either run."""
        return sorted(set(self.flaky_a) | set(self.flaky_b))

    @property
    def regressed(self) -> bool:
        return self.verdict == "regressed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "alpha": self.alpha,
            "p_value": self.p_value,
            "decided_by": self.decided_by,
            "rule": self.rule,
            "dataset_id": self.run_a.dataset_id,
            "run_a": _run_ref(self.run_a),
            "run_b": _run_ref(self.run_b),
            "pairs": self.pairs,
            "excluded": self.excluded,
            "flaky_a": self.flaky_a,
            "flaky_b": self.flaky_b,
            "unpaired": self.unpaired,
            "pass_rate_a": self.pass_rate_a,
            "pass_rate_b": self.pass_rate_b,
            "mcnemar": self.mcnemar.to_dict(),
            "score": self.score.to_dict(),
            "changed": self.changed,
            "items": [item.to_dict() for item in self.items],
            "items_omitted": self.changed - len(self.items),
            "tags": {tag: delta.to_dict() for tag, delta in sorted(self.tags.items())},
            "notes": self.notes,
        }


def _run_ref(run: EvalRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "feature": run.feature,
        "variant": run.variant,
        "config_version": run.config_version,
        "status": run.status,
        "dataset_path": run.dataset_path,
    }


@dataclass(slots=True)
class _Item:
    """One dataset row of one run: its repeats folded (count passed, sum of scores)."""

    index: int
    first: CaseResult
    n: int = 0
    n_passed: int = 0
    score_sum: float = 0.0

    def add(self, result: CaseResult) -> None:
        self.n += 1
        self.n_passed += int(result.passed)
        self.score_sum += result.score

    @property
    def flaky(self) -> bool:
        return 0 < self.n_passed < self.n

    @property
    def passed(self) -> bool:
        return 2 * self.n_passed > self.n

    @property
    def score(self) -> float:
        return self.score_sum / self.n


def _items(results: Iterable[CaseResult], run: EvalRun) -> Iterator[_Item]:
    """Fold results ordered by row index (as ``EvalStore.results`` yields them) into items."""
    current: _Item | None = None
    for result in results:
        if current is not None and result.index == current.index:
            current.add(result)
            continue
        if current is not None:
            if result.index < current.index:
                raise ValueError(
                    f"results of run {run.id} are not ordered by row index "
                    f"({result.index} after {current.index}); pass them as "
                    "EvalStore.results() yields them"
                )
            yield current
        current = _Item(result.index, result)
        current.add(result)
    if current is not None:
        yield current


def _failed(result: CaseResult) -> tuple[str, ...]:
    return tuple(
        f"{score.name}: {score.reason}" if score.reason else score.name
        for score in result.scores
        if not score.passed
    )


def _change(a: _Item, b: _Item) -> ItemChange:
    return ItemChange(
        index=a.index,
        passed_a=a.passed,
        passed_b=b.passed,
        score_a=a.score,
        score_b=b.score,
        output_a=a.first.output.text,
        output_b=b.first.output.text,
        error_a=a.first.output.error,
        error_b=b.first.output.error,
        failed_a=_failed(a.first),
        failed_b=_failed(b.first),
        vars=b.first.vars,
        expected=b.first.expected,
        tags=b.first.tags,
    )


@dataclass(slots=True)
class _Pairs:
    """What the merge of two runs' items keeps: verdicts and scores of paired items, the
    changed ones in full, and the indexes left out."""

    passed_a: list[bool] = field(default_factory=list)
    passed_b: list[bool] = field(default_factory=list)
    scores_a: list[float] = field(default_factory=list)
    scores_b: list[float] = field(default_factory=list)
    changes: list[ItemChange] = field(default_factory=list)
    score_changes: list[tuple[float, int, ItemChange]] = field(default_factory=list)  # heap
    max_score_changes: int | None = None
    score_changes_seen: int = 0
    flaky_a: list[int] = field(default_factory=list)
    flaky_b: list[int] = field(default_factory=list)
    unpaired: list[int] = field(default_factory=list)
    tags: dict[str, TagDelta] = field(default_factory=dict)

    def add(self, a: _Item, b: _Item) -> None:
        if a.flaky or b.flaky:
            if a.flaky:
                self.flaky_a.append(a.index)
            if b.flaky:
                self.flaky_b.append(b.index)
            return
        self.passed_a.append(a.passed)
        self.passed_b.append(b.passed)
        self.scores_a.append(a.score)
        self.scores_b.append(b.score)
        for tag in b.first.tags:
            self.tags.setdefault(tag, TagDelta()).add(a, b)
        delta = abs(b.score - a.score)
        if a.passed != b.passed:
            self.changes.append(_change(a, b))
        elif delta > EPSILON:
            self._score_change(a, b, delta)

    def _score_change(self, a: _Item, b: _Item, delta: float) -> None:
        """Same verdict, another score: kept whole up to ``max_score_changes`` (the largest
        deltas), so a run of continuous scores does not hold every answer twice."""
        self.score_changes_seen += 1
        cap = self.max_score_changes
        if cap is None or len(self.score_changes) < cap:
            heapq.heappush(self.score_changes, (delta, -a.index, _change(a, b)))
        elif cap > 0 and delta > self.score_changes[0][0]:
            heapq.heapreplace(self.score_changes, (delta, -a.index, _change(a, b)))

    def changed(self) -> list[ItemChange]:
        """Verdict changes, then the score changes kept, in row order."""
        kept = [change for _, _, change in self.score_changes]
        return sorted([*self.changes, *kept], key=lambda change: change.index)


def _pair(items_a: Iterator[_Item], items_b: Iterator[_Item], pairs: _Pairs) -> _Pairs:
    """Merge two index-ordered item streams: one pass, memory for changed items only."""
    a = next(items_a, None)
    b = next(items_b, None)
    while a is not None and b is not None:
        if a.index == b.index:
            pairs.add(a, b)
            a, b = next(items_a, None), next(items_b, None)
        elif a.index < b.index:
            pairs.unpaired.append(a.index)
            a = next(items_a, None)
        else:
            pairs.unpaired.append(b.index)
            b = next(items_b, None)
    for rest, item in ((items_a, a), (items_b, b)):
        while item is not None:
            pairs.unpaired.append(item.index)
            item = next(rest, None)
    pairs.unpaired.sort()
    return pairs


def mcnemar_test(passed_a: Sequence[bool], passed_b: Sequence[bool]) -> McNemar:
    """McNemar's exact test: a two-sided binomial test (p = 0.5) on the discordant pairs."""
    from scipy.stats import binomtest

    regressions = sum(1 for a, b in zip(passed_a, passed_b, strict=True) if a and not b)
    improvements = sum(1 for a, b in zip(passed_a, passed_b, strict=True) if b and not a)
    discordant = regressions + improvements
    p_value = 1.0 if discordant == 0 else float(binomtest(regressions, discordant).pvalue)
    return McNemar(regressions, improvements, p_value)


def _bootstrap_ci(deltas: Any, alpha: float) -> tuple[float, float]:
    import numpy as np
    from scipy.stats import DegenerateDataWarning, bootstrap

    if float(np.ptp(deltas)) == 0.0:  # every difference equal: nothing to resample
        value = float(deltas[0])
        return value, value
    method = "BCa" if len(deltas) <= BCA_MAX_ITEMS else "percentile"
    for attempt in (method, "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DegenerateDataWarning)
            warnings.simplefilter("error", RuntimeWarning)
            try:
                result = bootstrap(
                    (deltas,),
                    np.mean,
                    confidence_level=1 - alpha,
                    n_resamples=BOOTSTRAP_RESAMPLES,
                    method=attempt,
                    batch=max(1, min(100, BOOTSTRAP_BATCH_VALUES // len(deltas))),
                    rng=np.random.default_rng(BOOTSTRAP_SEED),
                )
            except (DegenerateDataWarning, RuntimeWarning):
                continue  # BCa cannot correct this sample (e.g. one outlier): percentile next
        interval = result.confidence_interval
        return float(interval.low), float(interval.high)
    value = float(np.mean(deltas))  # every method degenerate: a point interval
    return value, value


def score_test(scores_a: Sequence[float], scores_b: Sequence[float], alpha: float) -> ScoreTest:
    """Mean difference ``B - A`` with a bootstrap CI, and Wilcoxon's signed-rank p-value."""
    import numpy as np
    from scipy.stats import wilcoxon

    if not scores_a:
        return ScoreTest(0.0, 0.0, 0.0, None, 1.0)
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    deltas = b - a
    nonzero = deltas[np.abs(deltas) > EPSILON]
    p_value = 1.0 if nonzero.size == 0 else float(wilcoxon(nonzero).pvalue)
    return ScoreTest(
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        mean_delta=float(deltas.mean()),
        ci=_bootstrap_ci(deltas, alpha),
        p_value=p_value,
    )


def _wilcoxon_worse(scores_a: Sequence[float], scores_b: Sequence[float]) -> bool:
    """Whether the signed ranks lean to B below A (the direction of a Wilcoxon rejection)."""
    import numpy as np
    from scipy.stats import wilcoxon

    deltas = np.asarray(scores_b, dtype=float) - np.asarray(scores_a, dtype=float)
    nonzero = deltas[np.abs(deltas) > EPSILON]
    less = float(wilcoxon(nonzero, alternative="less").pvalue)
    greater = float(wilcoxon(nonzero, alternative="greater").pvalue)
    return less < greater


class _Test(NamedTuple):
    name: str
    p_value: float
    level: float
    worse: bool

    @property
    def significant(self) -> bool:
        return self.p_value < self.level


def _decide(
    pairs: _Pairs, mcnemar: McNemar, score: ScoreTest, alpha: float
) -> tuple[Verdict, _Test, str]:
    """The verdict, the test that decided it, and the rule applied."""
    binary = all(s in (0.0, 1.0) for s in pairs.scores_a) and all(
        s in (0.0, 1.0) for s in pairs.scores_b
    )
    mc_worse = mcnemar.regressions > mcnemar.improvements
    if binary:
        rule = f"scores are pass/fail: McNemar's exact test at alpha={alpha:g}"
        tests = [_Test("mcnemar", mcnemar.p_value, alpha, mc_worse)]
    else:
        rule = (
            f"McNemar (pass/fail) and Wilcoxon (scores), each at alpha/2={alpha / 2:g} "
            "(Bonferroni); a significant worsening wins"
        )
        wilcoxon = _Test("wilcoxon", score.p_value, alpha / 2, False)
        if wilcoxon.significant:
            wilcoxon = wilcoxon._replace(worse=_wilcoxon_worse(pairs.scores_a, pairs.scores_b))
        tests = [_Test("mcnemar", mcnemar.p_value, alpha / 2, mc_worse), wilcoxon]
    outcomes: tuple[tuple[bool, Verdict], ...] = ((True, "regressed"), (False, "improved"))
    for worse, verdict in outcomes:
        hits = [t for t in tests if t.significant and t.worse is worse]
        if hits:
            return verdict, min(hits, key=lambda t: t.p_value), rule
    return "no significant change", min(tests, key=lambda t: t.p_value), rule


def compare(
    run_a: EvalRun,
    results_a: Iterable[CaseResult],
    run_b: EvalRun,
    results_b: Iterable[CaseResult],
    *,
    alpha: float = 0.05,
    max_score_changes: int | None = MAX_SCORE_CHANGES,
) -> Comparison:
    """Compare run B against baseline run A (same dataset). Each results iterable is read
    once, in row-index order; memory holds the paired scores and the changed items only:
    every item whose verdict changed, and of those whose score alone changed the
    ``max_score_changes`` largest changes (None: all)."""
    if not 0 < alpha < 1:
        raise InvalidRequest(f"alpha must be between 0 and 1, got {alpha}", param="alpha")
    if run_a.dataset_id != run_b.dataset_id:
        raise InvalidRequest(
            f"runs {run_a.id} and {run_b.id} used different datasets ({run_a.dataset_path}, "
            f"id {run_a.dataset_id}; {run_b.dataset_path}, id {run_b.dataset_id}): only runs "
            "of the same dataset compare; re-run one of them with the other's --dataset",
            reason="dataset_mismatch",
        )
    pairs = _pair(
        _items(results_a, run_a),
        _items(results_b, run_b),
        _Pairs(max_score_changes=max_score_changes),
    )
    n = len(pairs.passed_a)
    mcnemar = mcnemar_test(pairs.passed_a, pairs.passed_b)
    score = score_test(pairs.scores_a, pairs.scores_b, alpha)
    verdict, decisive, rule = _decide(pairs, mcnemar, score, alpha)
    return Comparison(
        run_a=run_a,
        run_b=run_b,
        alpha=alpha,
        pairs=n,
        pass_rate_a=sum(pairs.passed_a) / n if n else 0.0,
        pass_rate_b=sum(pairs.passed_b) / n if n else 0.0,
        mcnemar=mcnemar,
        score=score,
        verdict=verdict,
        decided_by=decisive.name,
        p_value=decisive.p_value,
        rule=rule,
        flaky_a=pairs.flaky_a,
        flaky_b=pairs.flaky_b,
        unpaired=pairs.unpaired,
        items=pairs.changed(),
        changed=len(pairs.changes) + pairs.score_changes_seen,
        tags=pairs.tags,
        scores_a=pairs.scores_a,
        scores_b=pairs.scores_b,
        notes=_notes(run_a, run_b, pairs, n),
    )


def _notes(run_a: EvalRun, run_b: EvalRun, pairs: _Pairs, n: int) -> list[str]:
    notes = [
        f"run {run.id} is {run.status}: only its stored results are compared"
        for run in (run_a, run_b)
        if run.status != "done"
    ]
    excluded = sorted(set(pairs.flaky_a) | set(pairs.flaky_b))
    if excluded:
        notes.append(
            f"{len(excluded)} flaky item(s) excluded (rows {_rows(excluded)}): their repeats "
            "disagree; see `tether eval show RUN`"
        )
    if pairs.unpaired:
        notes.append(f"{len(pairs.unpaired)} row(s) in one run only (rows {_rows(pairs.unpaired)})")
    omitted = pairs.score_changes_seen - len(pairs.score_changes)
    if omitted:
        notes.append(
            f"{pairs.score_changes_seen} item(s) changed score but not verdict: the "
            f"{len(pairs.score_changes)} largest changes are listed, {omitted} are not"
        )
    if n == 0:
        notes.append("no item is in both runs (unflaky): nothing to test")
    return notes


def _rows(indexes: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in indexes[:limit])
    return shown if len(indexes) <= limit else f"{shown}, ... (+{len(indexes) - limit})"
