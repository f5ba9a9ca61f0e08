"""Accuracy and latency of a guard on labelled rows (``{text, label, category?, source?}``).

Used by ``tether guards eval``, ``scripts/train_injection.py`` and the benches. Labels: 1 means
the guard should flag the row, 0 that it should pass. A category starting with
``hard_negative`` is reported apart: benign rows built to look like attacks.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, label: int, flagged: bool) -> None:
        if label:
            if flagged:
                self.tp += 1
            else:
                self.fn += 1
        elif flagged:
            self.fp += 1
        else:
            self.tn += 1

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def tpr(self) -> float | None:
        pos = self.tp + self.fn
        return self.tp / pos if pos else None

    @property
    def fpr(self) -> float | None:
        neg = self.fp + self.tn
        return self.fp / neg if neg else None

    @property
    def balanced_accuracy(self) -> float | None:
        tpr, fpr = self.tpr, self.fpr
        if tpr is None or fpr is None:
            return None
        return (tpr + (1.0 - fpr)) / 2.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "balanced_accuracy": self.balanced_accuracy,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


@dataclass(slots=True)
class EvalReport:
    overall: Confusion = field(default_factory=Confusion)
    hard_negatives: Confusion = field(default_factory=Confusion)
    easy: Confusion = field(default_factory=Confusion)
    by_category: dict[str, Confusion] = field(default_factory=lambda: defaultdict(Confusion))
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, row: dict[str, Any], flagged: bool, latency_ms: float) -> None:
        label = int(row["label"])
        category = str(row.get("category") or ("attack" if label else "benign"))
        self.overall.add(label, flagged)
        if category.startswith("hard_negative"):
            self.hard_negatives.add(label, flagged)
        else:
            self.easy.add(label, flagged)
        self.by_category[category].add(label, flagged)
        self.latencies_ms.append(latency_ms)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def as_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall.as_dict(),
            "without_hard_negatives": self.easy.as_dict(),
            "hard_negatives": self.hard_negatives.as_dict(),
            "by_category": {k: v.as_dict() for k, v in sorted(self.by_category.items())},
            "latency_ms": {"p50": round(self.p50_ms, 4), "p99": round(self.p99_ms, 4)},
        }


def evaluate(
    rows: Iterable[dict[str, Any]],
    flag: Callable[[str], bool],
    progress: Callable[[], None] | None = None,
) -> EvalReport:
    """Run ``flag(text)`` over labelled rows, timing each call."""
    report = EvalReport()
    for row in rows:
        t0 = time.perf_counter()
        flagged = flag(str(row["text"]))
        report.add(row, flagged, (time.perf_counter() - t0) * 1000.0)
        if progress is not None:
            progress()
    return report


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """JSONL rows (or a JSON list) with at least ``text`` and ``label``."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "text" not in row or "label" not in row:
            raise ValueError(f"{path}: row {i + 1} needs 'text' and 'label' fields")
        out.append(row)
    return out
