"""Comparing two runs of one dataset: A/A comparisons are rarely flagged (fewer than 10 in 100),
a planted 15% regression on 200 items is `regressed` with p < 0.05, an improvement `improved`,
identical runs `no significant change`; flaky items are excluded and named; runs of different
datasets are refused; the results are read once, in order."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

from tether.errors import InvalidRequest
from tether.evals.compare import compare
from tether.evals.types import CaseResult, EvalRun, Output, Score


def make_run(run_id: str, dataset: str = "ds1", variant: str = "default") -> EvalRun:
    return EvalRun(
        id=run_id,
        feature="assistant",
        variant=variant,
        config_version="cv",
        dataset_id=dataset,
        dataset_path="evals/x.jsonl",
        started_at=datetime.now(UTC),
        cases=0,
        status="done",
    )


def result(
    run_id: str, index: int, passed: bool, score: float | None = None, repeat: int = 0
) -> CaseResult:
    value = (1.0 if passed else 0.0) if score is None else score
    return CaseResult(
        run_id=run_id,
        index=index,
        repeat=repeat,
        case_id=f"c{index}",
        passed=passed,
        score=value,
        scores=[Score(value, passed, "" if passed else "missing 'paris'", name="icontains")],
        output=Output(text=f"answer {index} {'good' if passed else 'bad'}"),
        tags=("geo",),
        vars={"q": f"q{index}"},
    )


def results(run_id: str, verdicts: Sequence[bool]) -> list[CaseResult]:
    return [result(run_id, i, passed) for i, passed in enumerate(verdicts)]


def test_a_planted_15_percent_regression_on_200_items_is_regressed() -> None:
    rng = random.Random(7)
    base = [rng.random() < 0.9 for _ in range(200)]
    passing = [i for i, ok in enumerate(base) if ok]
    broken = set(rng.sample(passing, 30))  # 15% of 200 items now answered worse
    cand = [ok and i not in broken for i, ok in enumerate(base)]
    c = compare(make_run("ev_a"), results("ev_a", base), make_run("ev_b"), results("ev_b", cand))
    assert c.verdict == "regressed"
    assert c.decided_by == "mcnemar"
    assert c.p_value < 0.05 and c.mcnemar.p_value < 0.05
    assert (c.mcnemar.regressions, c.mcnemar.improvements) == (30, 0)
    assert c.pairs == 200
    assert c.pass_rate_b == pytest.approx(c.pass_rate_a - 0.15)
    assert c.score.mean_delta == pytest.approx(-0.15)
    assert c.score.ci is not None and c.score.ci[1] < 0
    changed = {item.index for item in c.items}
    assert changed == broken
    item = c.items[0]
    assert item.kind == "regression" and item.output_a.endswith("good")
    assert item.failed_b == ("icontains: missing 'paris'",)
    data = c.to_dict()
    assert data["verdict"] == "regressed" and data["mcnemar"]["regressions"] == 30
    assert len(data["items"]) == 30 and data["items"][0]["output_b"].endswith("bad")


def test_an_improvement_is_improved() -> None:
    base = [i % 3 != 0 for i in range(150)]  # 100 pass
    cand = [True] * 150
    c = compare(make_run("ev_a"), results("ev_a", base), make_run("ev_b"), results("ev_b", cand))
    assert c.verdict == "improved"
    assert c.mcnemar.improvements == 50 and c.p_value < 0.05


def test_identical_runs_are_no_significant_change() -> None:
    verdicts = [i % 4 != 0 for i in range(200)]
    c = compare(
        make_run("ev_a"), results("ev_a", verdicts), make_run("ev_b"), results("ev_b", verdicts)
    )
    assert c.verdict == "no significant change"
    assert c.items == [] and c.mcnemar.p_value == 1.0 and c.score.p_value == 1.0
    assert c.score.ci == (0.0, 0.0)


def _aa(seed: int, continuous: bool) -> str:
    """One A/A comparison: each item has its own pass probability; both runs draw it anew."""
    rng = random.Random(seed)
    probs = [rng.choice([0.02, 0.5, 0.8, 0.95, 0.99]) for _ in range(200)]

    def run(run_id: str) -> Iterator[CaseResult]:
        for i, p in enumerate(probs):
            passed = rng.random() < p
            score = None
            if continuous:  # e.g. a similarity: higher when passed, noisy
                score = min(1.0, max(0.0, (0.7 if passed else 0.3) + rng.gauss(0, 0.15)))
            yield result(run_id, i, passed, score)

    return compare(make_run("ev_a"), run("ev_a"), make_run("ev_b"), run("ev_b")).verdict


@pytest.mark.parametrize("continuous", [False, True], ids=["pass-fail", "continuous-scores"])
def test_fewer_than_10_of_100_aa_comparisons_are_flagged(continuous: bool) -> None:
    flagged = sum(_aa(seed, continuous) != "no significant change" for seed in range(100))
    assert flagged < 10


def test_continuous_scores_regression_is_found_by_the_score_test() -> None:
    """Same pass/fail, scores lower on 15% of the items: only the score test can tell."""
    rng = random.Random(3)
    base = [result("ev_a", i, True, rng.uniform(0.6, 1.0)) for i in range(200)]
    cand = [
        result("ev_b", r.index, True, r.score - (0.3 if r.index % 7 == 0 else 0.0)) for r in base
    ]
    c = compare(make_run("ev_a"), base, make_run("ev_b"), cand)
    assert c.verdict == "regressed" and c.decided_by == "wilcoxon"
    assert c.mcnemar.p_value == 1.0 and c.score.p_value < 0.025
    assert "Bonferroni" in c.rule
    assert c.score.ci is not None and c.score.ci[1] < 0 < -c.score.ci[0]


def test_flaky_items_are_excluded_and_named_and_repeats_fold() -> None:
    a: list[CaseResult] = []
    b: list[CaseResult] = []
    for i in range(20):
        for rep in range(3):
            a.append(result("ev_a", i, passed=not (i == 4 and rep == 1), repeat=rep))
            b.append(result("ev_b", i, passed=not (i in (7, 9) and rep == 2), repeat=rep))
    b = [r for r in b if r.index != 19]  # an interrupted candidate: row 19 missing
    c = compare(make_run("ev_a"), a, make_run("ev_b"), b)
    assert c.flaky_a == [4] and c.flaky_b == [7, 9] and c.excluded == [4, 7, 9]
    assert c.unpaired == [19]
    assert c.pairs == 16 and c.pass_rate_a == c.pass_rate_b == 1.0
    assert c.verdict == "no significant change"
    data = c.to_dict()
    assert data["excluded"] == [4, 7, 9]
    assert any("rows 4, 7, 9" in note for note in data["notes"])


def test_different_datasets_are_refused_naming_both() -> None:
    with pytest.raises(InvalidRequest) as info:
        compare(make_run("ev_a", "ds1"), [], make_run("ev_b", "ds2"), [])
    assert info.value.reason == "dataset_mismatch"
    assert "ds1" in info.value.message and "ds2" in info.value.message


def test_results_are_read_once_and_must_be_in_index_order() -> None:
    reads = 0

    def once(run_id: str) -> Iterator[CaseResult]:
        nonlocal reads
        reads += 1
        for i in range(10):
            yield result(run_id, i, True)

    c = compare(make_run("ev_a"), once("ev_a"), make_run("ev_b"), once("ev_b"))
    assert reads == 2 and c.pairs == 10
    shuffled = [result("ev_b", 1, True), result("ev_b", 0, True)]
    with pytest.raises(ValueError, match="not ordered by row index"):
        compare(make_run("ev_a"), results("ev_a", [True, True]), make_run("ev_b"), shuffled)


def test_no_pairs_is_no_significant_change() -> None:
    c = compare(make_run("ev_a"), [], make_run("ev_b"), [])
    assert c.verdict == "no significant change" and c.pairs == 0 and c.score.ci is None
    assert any("nothing to test" in note for note in c.notes)


def test_score_only_changes_are_capped_to_the_largest_verdict_changes_never() -> None:
    base = [result("ev_a", i, True, 0.9) for i in range(60)]
    cand = [
        result("ev_b", i, i >= 5, 0.9 - (0.01 * i if i >= 5 else 0.9)) for i in range(60)
    ]  # rows 0-4 flip to failed; rows 5-59 lose 0.01 * i of their score
    c = compare(make_run("ev_a"), base, make_run("ev_b"), cand, max_score_changes=10)
    assert c.changed == 5 + 55
    kept = [item.index for item in c.items]
    assert kept == [0, 1, 2, 3, 4, *range(50, 60)]  # every flip, then the 10 largest deltas
    data = c.to_dict()
    assert data["changed"] == 60 and data["items_omitted"] == 45
    assert any("45 are not" in note for note in c.notes)
