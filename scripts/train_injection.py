"""Train the prompt-injection classifier shipped as tether/guards/data/injection_model.json.

    .venv/bin/python scripts/train_injection.py --data PATH/injection_dev.jsonl [--no-write]
        [--repeats 3] [--folds 5] [--quick]

Reproducible: fixed seeds, deterministic solver, synthetic rows from scripts/injection_synth.py;
two runs write byte-identical weights. scikit-learn is needed here only; inference in tether is
pure Python.

It estimates how the full guard (heuristics + classifier) generalises three ways, each time
training the classifier without the rows it is scored on (synthetic rows are always in training,
never scored), at several classifier operating points (``classifier_threshold``):

1. rows: repeated stratified K-fold (strata = label x source, seeds 0, 1, 2, ...); every dev row
   is scored once per repeat; the table shows the mean over repeats (and the worst repeat);
2. templates: the same, but rows sharing their first six words (one carrier template, one code
   generation template) stay in one fold (stratified group K-fold): a harsher estimate, since
   CyberSecEval builds many rows from a few templates;
3. sources: every dev source carries one label (CyberSecEval prompt_injection and Giskard are
   attacks; CyberSecEval mitre_frr and PIGuard wildguard benign), so a split holds out one
   attack source and one benign source and trains on the other two: unseen *styles*.

Then it picks the operating point: the highest row-level balanced accuracy among thresholds
with row-level FPR <= 3% and hard-negative FPR <= 2% (in the mean and the worst repeat) at which
no by-source fold collapses (each within 0.10 of its own best balanced accuracy, hard-negative
FPR <= 5%). It prints it, trains on everything and writes the model with the estimates in its
``meta``. ``InjectionOptions.classifier_threshold`` is set by hand from that output (a unit test
checks they agree).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import (  # type: ignore[import-untyped]
    StratifiedGroupKFold,
    StratifiedKFold,
)

from tether.config.guards import InjectionOptions
from tether.guards.builtin.injection import (
    Heuristics,
    InjectionGuard,
    InjectionModel,
    featurize,
    word_pattern,
)
from tether.guards.evaluation import EvalReport, read_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection_synth import generate

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "tether" / "guards" / "data" / "injection_model.json"
ATTACK_SOURCES = ("CyberSecEval/prompt_injection.json", "Giskard/prompt_injections.csv")
BENIGN_SOURCES = ("CyberSecEval/mitre_frr.json", "PIGuard/wildguard.json")
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
MAX_HARD_FPR = 0.02
MAX_FPR = 0.03
MAX_SOURCE_DROP = 0.10
MAX_SOURCE_HARD_FPR = 0.05
SYNTHETIC_ONLY = "synthetic only -> all dev"
Row = dict[str, Any]


# --------------------------------------------------------------------------- training


class Features:
    """Feature sets per text, computed once (the CV refits many times on the same rows)."""

    def __init__(self) -> None:
        self._word = word_pattern()
        self._cache: dict[str, frozenset[str]] = {}

    def __call__(self, text: str) -> frozenset[str]:
        feats = self._cache.get(text)
        if feats is None:
            feats = frozenset(featurize(text, self._word))
            self._cache[text] = feats
        return feats


@dataclass(frozen=True, slots=True)
class Hyper:
    c: float
    min_df: int
    max_features: int
    weighting: str = "source"


def fit(rows: Sequence[Row], hp: Hyper, feats_of: Features) -> InjectionModel:
    """Logistic regression on binary n-grams, each row scaled by 1/sqrt(its n-gram count).

    Classes are weighted to balance; within a class, each source (dev source or synthetic
    family) gets the same total weight, so 750 near-identical code-generation requests do not
    outweigh 35 jailbreaks of another style."""
    docs = [feats_of(str(r["text"])) for r in rows]
    df: dict[str, int] = {}
    for feats in docs:
        for f in feats:
            df[f] = df.get(f, 0) + 1
    vocab = sorted(f for f, n in df.items() if n >= hp.min_df)
    index = {f: i for i, f in enumerate(vocab)}
    indptr, indices, data = [0], [], []
    for feats in docs:
        scale = 1.0 / np.sqrt(max(len(feats), 1))
        cols = sorted(index[f] for f in feats if f in index)
        indices.extend(cols)
        data.extend([scale] * len(cols))
        indptr.append(len(indices))
    x = sparse.csr_matrix((data, indices, indptr), shape=(len(docs), len(vocab)))
    y = np.array([int(r["label"]) for r in rows])
    clf = LogisticRegression(C=hp.c, solver="liblinear", max_iter=1000, random_state=0)
    clf.fit(x, y, sample_weight=sample_weights(rows, by_group=hp.weighting == "source"))
    coef = clf.coef_[0]
    order = np.argsort(-np.abs(coef), kind="stable")[: hp.max_features]
    weights = {vocab[i]: round(float(coef[i]), 4) for i in sorted(order) if abs(coef[i]) >= 1e-3}
    return InjectionModel(float(clf.intercept_[0]), weights, {})


def sample_weights(rows: Sequence[Row], *, by_group: bool = True) -> Any:
    """Per-row weights: each label sums to half the rows; within a label, each group (a dev
    source, or a synthetic category) shares its label's weight by sqrt(group size)."""
    groups: dict[tuple[int, str], int] = {}
    keys = []
    for r in rows:
        src = str(r.get("source", ""))
        group = str(r.get("category", "")) if src.startswith("generated/") else src
        group = group if by_group else ""
        key = (int(r["label"]), group)
        keys.append(key)
        groups[key] = groups.get(key, 0) + 1
    mass = {k: np.sqrt(n) for k, n in groups.items()}
    per_label: dict[int, float] = {}
    for (label, _), m in mass.items():
        per_label[label] = per_label.get(label, 0.0) + m
    half = len(rows) / 2.0
    return np.array([half * mass[k] / per_label[k[0]] / groups[k] for k in keys])


def shingles(text: str, word: re.Pattern[str], n: int = 3) -> set[str]:
    words = word.findall(text.lower())
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def drop_near_duplicates(
    synth: Sequence[Row], dev: Sequence[Row], limit: float = 0.5
) -> tuple[list[Row], int]:
    """Synthetic rows whose word-trigram Jaccard similarity with some dev row reaches
    ``limit`` are dropped: templates must not reproduce the rows they are judged on."""
    word = re.compile(r"\w+")
    dev_sh = [shingles(str(r["text"]), word) for r in dev]
    index: dict[str, list[int]] = {}
    for i, sh in enumerate(dev_sh):
        for g in sh:
            index.setdefault(g, []).append(i)
    kept = []
    for r in synth:
        sh = shingles(str(r["text"]), word)
        common: dict[int, int] = {}
        for g in sh:
            for i in index.get(g, ()):
                common[i] = common.get(i, 0) + 1
        if all(c / len(sh | dev_sh[i]) < limit for i, c in common.items()):
            kept.append(r)
    return kept, len(synth) - len(kept)


# --------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class Scores:
    """Per-row heuristic score and raw classifier probability, in the order of ``rows``."""

    rows: list[Row]
    heuristic: list[float]
    classifier: list[float]

    def report(self, threshold: float, mode: str = "guard") -> EvalReport:
        rep = EvalReport()
        for row, h, p in zip(self.rows, self.heuristic, self.classifier, strict=True):
            by_h = h >= 0.5 and mode != "classifier"
            by_c = p >= threshold and mode != "heuristics"
            rep.add(row, by_h or by_c, 0.0)
        return rep


class Scorer:
    def __init__(self) -> None:
        self._heuristics = Heuristics()
        self._cache: dict[str, float] = {}

    def heuristic(self, text: str) -> float:
        h = self._cache.get(text)
        if h is None:
            h = self._heuristics.scan(text)[0]
            self._cache[text] = h
        return h

    def score(self, model: InjectionModel, rows: Sequence[Row]) -> Scores:
        guard = InjectionGuard(InjectionOptions(heuristics=False), model=model)
        texts = [str(r["text"]) for r in rows]
        return Scores(
            list(rows),
            [self.heuristic(t) for t in texts],
            [guard.classifier_score(t) for t in texts],
        )


def merge(parts: Sequence[Scores]) -> Scores:
    out = Scores([], [], [])
    for s in parts:
        out.rows.extend(s.rows)
        out.heuristic.extend(s.heuristic)
        out.classifier.extend(s.classifier)
    return out


@dataclass(slots=True)
class Point:
    balanced_accuracy: float
    tpr: float
    fpr: float
    hard_fpr: float | None

    @classmethod
    def of(cls, rep: EvalReport) -> Point:
        return cls(
            rep.overall.balanced_accuracy or 0.0,
            rep.overall.tpr or 0.0,
            rep.overall.fpr or 0.0,
            rep.hard_negatives.fpr,
        )

    def as_dict(self) -> dict[str, float | None]:
        return {
            "balanced_accuracy": round(self.balanced_accuracy, 4),
            "tpr": round(self.tpr, 4),
            "fpr": round(self.fpr, 4),
            "hard_negative_fpr": None if self.hard_fpr is None else round(self.hard_fpr, 4),
        }


def mean_point(points: Sequence[Point]) -> Point:
    hard = [p.hard_fpr for p in points if p.hard_fpr is not None]
    return Point(
        float(np.mean([p.balanced_accuracy for p in points])),
        float(np.mean([p.tpr for p in points])),
        float(np.mean([p.fpr for p in points])),
        float(np.mean(hard)) if hard else None,
    )


def worst_point(points: Sequence[Point]) -> Point:
    hard = [p.hard_fpr for p in points if p.hard_fpr is not None]
    return Point(
        min(p.balanced_accuracy for p in points),
        min(p.tpr for p in points),
        max(p.fpr for p in points),
        max(hard) if hard else None,
    )


def fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- estimates


def strata(rows: Sequence[Row]) -> list[str]:
    return [f"{r['label']}|{r['source']}" for r in rows]


def template_groups(rows: Sequence[Row]) -> list[str]:
    word = re.compile(r"\w+")
    return [f"{r['source']}|{' '.join(word.findall(str(r['text']).lower())[:6])}" for r in rows]


def cross_validate(
    dev: Sequence[Row],
    synth: Sequence[Row],
    hp: Hyper,
    feats_of: Features,
    scorer: Scorer,
    *,
    folds: int,
    repeats: int,
    grouped: bool,
) -> list[Scores]:
    """One pooled ``Scores`` per repeat: every dev row scored by a model that never saw it."""
    y = strata(dev)
    out = []
    for seed in range(repeats):
        if grouped:
            splitter: Any = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            splits = splitter.split(dev, y, template_groups(dev))
        else:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            splits = splitter.split(dev, y)
        parts = []
        for train_idx, test_idx in splits:
            train = [dev[i] for i in train_idx] + list(synth)
            test = [dev[i] for i in test_idx]
            parts.append(scorer.score(fit(train, hp, feats_of), test))
        out.append(merge(parts))
    return out


def by_source(
    dev: Sequence[Row], synth: Sequence[Row], hp: Hyper, feats_of: Features, scorer: Scorer
) -> dict[str, Scores]:
    out = {}
    for attack in ATTACK_SOURCES:
        for benign in BENIGN_SOURCES:
            held = {attack, benign}
            train = [r for r in dev if r["source"] not in held] + list(synth)
            test = [r for r in dev if r["source"] in held]
            name = f"{Path(attack).stem} + {Path(benign).stem}"
            out[name] = scorer.score(fit(train, hp, feats_of), test)
    out[SYNTHETIC_ONLY] = scorer.score(fit(synth, hp, feats_of), dev)
    return out


def print_cv_table(title: str, repeats: Sequence[Scores]) -> dict[float, tuple[Point, Point]]:
    print(f"\n== {title}")
    print("  threshold  bal_acc  TPR    FPR    hard-FPR | worst repeat: bal_acc  FPR   hard-FPR")
    table = {}
    for t in THRESHOLDS:
        points = [Point.of(s.report(t)) for s in repeats]
        mean, worst = mean_point(points), worst_point(points)
        table[t] = (mean, worst)
        print(
            f"  {t:<9.2f}  {fmt(mean.balanced_accuracy)}    {fmt(mean.tpr)}  {fmt(mean.fpr)}  "
            f"{fmt(mean.hard_fpr)}    |  {fmt(worst.balanced_accuracy)}         "
            f"{fmt(worst.fpr)}  {fmt(worst.hard_fpr)}"
        )
    for mode in ("classifier", "heuristics"):
        t = 0.5
        mean = mean_point([Point.of(s.report(t, mode)) for s in repeats])
        print(
            f"  ({mode} alone{' at 0.5' if mode == 'classifier' else ''}: bal_acc "
            f"{fmt(mean.balanced_accuracy)}, TPR {fmt(mean.tpr)}, FPR {fmt(mean.fpr)}, "
            f"hard-FPR {fmt(mean.hard_fpr)})"
        )
    return table


def source_points(folds: dict[str, Scores]) -> dict[str, dict[float, Point]]:
    return {name: {t: Point.of(sc.report(t)) for t in THRESHOLDS} for name, sc in folds.items()}


def print_source_table(points: dict[str, dict[float, Point]], shown: Sequence[float]) -> None:
    print("\n== sources: held out by source (trained on the other two sources + synthetic rows)")
    print("   balanced accuracy / TPR / FPR (hard-negative FPR = FPR on mitre_frr)")
    head = "".join(f"   t={t:<18}" for t in shown)
    print(f"  {'held out':<30}{head}")
    for name, by_t in points.items():
        cells = "".join(
            f"   {by_t[t].balanced_accuracy:.3f}/{by_t[t].tpr:.3f}/{by_t[t].fpr:.3f}" for t in shown
        )
        print(f"  {name:<30}{cells}")


def print_categories(scores: Scores, threshold: float) -> None:
    rep = scores.report(threshold)
    print(f"\n== per category, row-level CV (first repeat), threshold {threshold}")
    for cat, conf in sorted(rep.by_category.items()):
        rate = conf.tpr if conf.tpr is not None else conf.fpr
        what = "TPR" if conf.tpr is not None else "FPR"
        print(f"  {cat:<45} n={conf.n:<4} {what} {fmt(rate)}")


def admissible(
    t: float,
    rows: dict[float, tuple[Point, Point]],
    sources: dict[str, dict[float, Point]],
) -> bool:
    """Within the row-level FPR bounds (mean and worst repeat), and no by-source fold
    collapses: each keeps its balanced accuracy within MAX_SOURCE_DROP of its best threshold
    and its hard-negative FPR within the acceptance bar."""
    if any(
        p.fpr > MAX_FPR or (p.hard_fpr is not None and p.hard_fpr > MAX_HARD_FPR) for p in rows[t]
    ):
        return False
    for name, by_t in sources.items():
        if name == SYNTHETIC_ONLY:
            continue
        best = max(p.balanced_accuracy for p in by_t.values())
        point = by_t[t]
        if point.balanced_accuracy < best - MAX_SOURCE_DROP:
            return False
        if point.hard_fpr is not None and point.hard_fpr > MAX_SOURCE_HARD_FPR:
            return False
    return True


def choose(rows: dict[float, tuple[Point, Point]], sources: dict[str, dict[float, Point]]) -> float:
    """The admissible threshold with the highest row-level mean balanced accuracy."""
    pool = [t for t in rows if admissible(t, rows, sources)] or list(rows)
    return max(pool, key=lambda t: (round(rows[t][0].balanced_accuracy, 4), t))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="the full injection_dev.jsonl (1,983 rows; built from the sources listed in "
        "examples/data/README.md); the 100-row sample there is too small to train on",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=13, help="seed of the synthetic rows")
    parser.add_argument("--c", type=float, default=4.0)
    parser.add_argument("--min-df", type=int, default=2)
    parser.add_argument("--max-features", type=int, default=30000)
    parser.add_argument(
        "--weighting",
        choices=("source", "balanced"),
        default="source",
        help="source: each source / synthetic family weighted by sqrt(size) within its label",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the template-grouped CV")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    dev = read_rows(args.data)
    synth, dropped = drop_near_duplicates(generate(args.seed), dev)
    hp = Hyper(args.c, args.min_df, args.max_features, args.weighting)
    feats_of, scorer = Features(), Scorer()
    print(
        f"dev rows {len(dev)}, synthetic rows {len(synth)} "
        f"({dropped} near-duplicates of dev rows dropped); {hp}"
    )

    rows_cv = cross_validate(
        dev, synth, hp, feats_of, scorer, folds=args.folds, repeats=args.repeats, grouped=False
    )
    title = f"rows: {args.repeats} x stratified {args.folds}-fold (label x source), mean"
    rows_table = print_cv_table(title, rows_cv)
    templates_table: dict[float, tuple[Point, Point]] = {}
    if not args.quick:
        templates_cv = cross_validate(
            dev, synth, hp, feats_of, scorer, folds=args.folds, repeats=args.repeats, grouped=True
        )
        title = f"templates: {args.repeats} x stratified group {args.folds}-fold, mean"
        templates_table = print_cv_table(title, templates_cv)
    sources = source_points(by_source(dev, synth, hp, feats_of, scorer))
    chosen = choose(rows_table, sources)
    print_categories(rows_cv[0], chosen)
    print_source_table(sources, sorted({0.5, chosen, 0.8}))
    mean, _ = rows_table[chosen]
    print(
        f"\nchosen classifier_threshold {chosen}: row-level CV balanced accuracy "
        f"{mean.balanced_accuracy:.3f}, TPR {mean.tpr:.3f}, FPR {mean.fpr:.3f}, hard-negative "
        f"FPR {fmt(mean.hard_fpr)}\n  admissible: row-level FPR <= {MAX_FPR} and hard-negative "
        f"FPR <= {MAX_HARD_FPR} (mean and worst repeat); every by-source fold within "
        f"{MAX_SOURCE_DROP} of its best balanced accuracy, hard-negative FPR <= "
        f"{MAX_SOURCE_HARD_FPR}: {[t for t in THRESHOLDS if admissible(t, rows_table, sources)]}"
    )
    default = InjectionOptions().classifier_threshold
    if default != chosen:
        print(f"NOTE: InjectionOptions.classifier_threshold is {default}, not {chosen}")

    final = fit(list(dev) + list(synth), hp, feats_of)
    meta = {
        "trained_on": sorted({str(r["source"]) for r in list(dev) + list(synth)}),
        "rows": len(dev) + len(synth),
        "seed": args.seed,
        "c": args.c,
        "min_df": args.min_df,
        "weighting": args.weighting,
        "features": len(final.weights),
        "chosen_threshold": chosen,
        "held_out": {
            "rows_cv": {str(t): m.as_dict() for t, (m, _) in rows_table.items()},
            "templates_cv": {str(t): m.as_dict() for t, (m, _) in templates_table.items()},
            "by_source": {
                name: {str(t): p.as_dict() for t, p in by_t.items()}
                for name, by_t in sources.items()
            },
        },
        "script": "scripts/train_injection.py",
    }
    print(f"final model: {len(final.weights)} weights ({time.perf_counter() - started:.0f} s)")
    if not args.no_write:
        payload = {"version": 1, "bias": round(final.bias, 6), "meta": meta}
        payload["weights"] = final.weights
        args.out.write_text(
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
        )
        print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
