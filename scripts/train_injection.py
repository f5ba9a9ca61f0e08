"""Train the prompt-injection classifier shipped as tether/guards/data/injection_model.json.

    .venv/bin/python scripts/train_injection.py [--data PATH/injection_dev.jsonl] [--no-write]

Reproducible: fixed seeds, deterministic solver, synthetic rows from scripts/injection_synth.py.
Every source in the dev set carries one label (CyberSecEval prompt_injection and Giskard are
attacks; CyberSecEval mitre_frr and PIGuard wildguard are benign), so held-out splits hold out
one attack source and one benign source at a time and train on the rest plus synthetic rows.
It prints, for each split, the full guard (heuristics + classifier at threshold 0.5), the
classifier alone and the heuristics alone; then it trains on everything and writes the model.
scikit-learn is needed here only; inference in tether is pure Python.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from tether.guards.base import GuardContext
from tether.guards.builtin.injection import InjectionGuard, InjectionModel, featurize, word_pattern
from tether.guards.config import InjectionOptions
from tether.guards.evaluation import EvalReport, evaluate, read_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection_synth import generate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "guardrails" / "injection_dev.jsonl"
OUT = ROOT / "src" / "tether" / "guards" / "data" / "injection_model.json"
ATTACK_SOURCES = ("CyberSecEval/prompt_injection.json", "Giskard/prompt_injections.csv")
BENIGN_SOURCES = ("CyberSecEval/mitre_frr.json", "PIGuard/wildguard.json")
Row = dict[str, Any]


def fit(rows: Sequence[Row], *, c: float, min_df: int, max_features: int) -> InjectionModel:
    """Logistic regression on binary n-grams, each row scaled by 1/sqrt(its n-gram count)."""
    word = word_pattern()
    docs = [featurize(str(r["text"]), word) for r in rows]
    df: dict[str, int] = {}
    for feats in docs:
        for f in feats:
            df[f] = df.get(f, 0) + 1
    vocab = sorted(f for f, n in df.items() if n >= min_df)
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
    clf = LogisticRegression(
        C=c, class_weight="balanced", solver="liblinear", max_iter=1000, random_state=0
    )
    clf.fit(x, y)
    coef = clf.coef_[0]
    order = np.argsort(-np.abs(coef))[:max_features]
    weights = {vocab[i]: round(float(coef[i]), 4) for i in sorted(order) if abs(coef[i]) >= 1e-3}
    return InjectionModel(float(clf.intercept_[0]), weights, {})


def report_for(model: InjectionModel, rows: Sequence[Row], mode: str) -> EvalReport:
    options = InjectionOptions(heuristics=mode != "classifier", classifier=mode != "heuristics")
    guard = InjectionGuard(options, threshold=0.5, model=model)
    ctx = GuardContext()
    return evaluate(rows, lambda text: not guard.check(text, ctx).passed)


def fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def print_split(name: str, model: InjectionModel, test: Sequence[Row]) -> dict[str, Any]:
    out: dict[str, Any] = {"test_rows": len(test)}
    print(f"\n== {name}: {len(test)} held-out rows")
    for mode in ("guard", "classifier", "heuristics"):
        rep = report_for(model, test, mode)
        hard = rep.hard_negatives
        print(
            f"  {mode:<11} balanced_acc {fmt(rep.overall.balanced_accuracy)}  "
            f"TPR {fmt(rep.overall.tpr)}  FPR {fmt(rep.overall.fpr)}  "
            f"hard-neg FPR {fmt(hard.fpr)} (n={hard.n})  p50 {rep.p50_ms:.3f} ms"
        )
        out[mode] = {
            "balanced_accuracy": rep.overall.balanced_accuracy,
            "tpr": rep.overall.tpr,
            "fpr": rep.overall.fpr,
            "hard_negative_fpr": hard.fpr,
        }
        if mode == "guard":
            for cat, conf in sorted(rep.by_category.items()):
                rate = conf.tpr if conf.tpr is not None else conf.fpr
                what = "TPR" if conf.tpr is not None else "FPR"
                print(f"      {cat:<45} n={conf.n:<4} {what} {fmt(rate)}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--c", type=float, default=4.0)
    parser.add_argument("--min-df", type=int, default=2)
    parser.add_argument("--max-features", type=int, default=30000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    dev = read_rows(args.data)
    synth = generate(args.seed)
    kw = {"c": args.c, "min_df": args.min_df, "max_features": args.max_features}
    print(f"dev rows {len(dev)}, synthetic rows {len(synth)}")
    splits: dict[str, Any] = {}

    # 1. held out by source: every pairing of one attack source with one benign source
    for attack in ATTACK_SOURCES:
        for benign in BENIGN_SOURCES:
            held = {attack, benign}
            train = [r for r in dev if r["source"] not in held] + synth
            test = [r for r in dev if r["source"] in held]
            name = f"held out {attack.split('/')[0]}:{Path(attack).stem} + {Path(benign).stem}"
            splits[name] = print_split(name, fit(train, **kw), test)
    # 2. synthetic rows only: the whole dev set is unseen
    splits["synthetic only -> all dev"] = print_split(
        "trained on synthetic rows only, tested on all dev rows", fit(synth, **kw), dev
    )

    final = fit(dev + synth, **kw)
    meta = {
        "trained_on": sorted({str(r["source"]) for r in dev + synth}),
        "rows": len(dev) + len(synth),
        "seed": args.seed,
        "c": args.c,
        "min_df": args.min_df,
        "features": len(final.weights),
        "held_out": splits,
        "script": "scripts/train_injection.py",
    }
    print(f"\nfinal model: {len(final.weights)} weights")
    if not args.no_write:
        payload = {
            "version": 1,
            "bias": round(final.bias, 6),
            "meta": meta,
            "weights": final.weights,
        }
        args.out.write_text(
            json.dumps(payload, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
        )
        print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
