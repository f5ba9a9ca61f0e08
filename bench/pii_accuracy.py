"""Span-level precision and recall of the ``pii`` guard, per entity type.

Usage: ``python bench/pii_accuracy.py [--data PATH] [--errors N]``

``--data`` defaults to the 100-sentence sample in examples/data/pii_sample.json (presidio-research
format; see examples/data/README.md); the table in docs/guards.md was measured on the full
1,500-sentence ``pii_dev.json`` it was drawn from.

A predicted span counts as a true positive when it has the gold span's type and the same
start and end (exact match). ``--overlap`` also reports the looser "overlapping span of the
same type" match. Gold spans of types the guard does not detect (PERSON, STREET_ADDRESS ...)
are ignored; a predicted span that lands on one of them counts as a false positive, and the
table says which gold type it landed on so label disagreements are visible.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tether.config.guards import PII_TYPES
from tether.guards.builtin.pii import PiiDetector

DEFAULT = Path(__file__).resolve().parents[1] / "examples" / "data" / "pii_sample.json"


def gold_spans(row: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(s["entity_type"], s["start_position"], s["end_position"]) for s in row["spans"]]


def evaluate(rows: list[dict[str, Any]], show_errors: int = 0) -> dict[str, dict[str, float]]:
    detector = PiiDetector(PII_TYPES)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    overlap_tp: Counter[str] = Counter()
    fp_on: dict[str, Counter[str]] = defaultdict(Counter)
    errors: list[str] = []
    t0 = time.perf_counter()
    for row in rows:
        text = row["full_text"]
        gold = gold_spans(row)
        pred = [(f.type, f.start, f.end) for f in detector.find(text)]
        gold_set = {g for g in gold if g[0] in PII_TYPES}
        for p in pred:
            if p in gold_set:
                tp[p[0]] += 1
                continue
            fp[p[0]] += 1
            hit = [g for g in gold if g[1] < p[2] and p[1] < g[2]]
            fp_on[p[0]][hit[0][0] if hit else "-"] += 1
            if hit and hit[0][0] == p[0]:
                overlap_tp[p[0]] += 1
            if len(errors) < show_errors:
                errors.append(
                    f"FP {p[0]} {text[p[1] : p[2]]!r} gold={[text[g[1] : g[2]] for g in hit]}"
                )
        for g in gold_set:
            if g not in pred:
                fn[g[0]] += 1
                if len(errors) < show_errors:
                    errors.append(f"FN {g[0]} {text[g[1] : g[2]]!r} in {text[:120]!r}")
    elapsed = time.perf_counter() - t0
    table: dict[str, dict[str, float]] = {}
    for kind in PII_TYPES:
        precision = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 1.0
        recall = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 1.0
        table[kind] = {
            "support": tp[kind] + fn[kind],
            "tp": tp[kind],
            "fp": fp[kind],
            "fn": fn[kind],
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "fp_on": dict(fp_on[kind]),  # type: ignore[dict-item]
        }
    for line in errors:
        print(line)
    print(f"{len(rows)} rows in {elapsed * 1000:.0f} ms ({elapsed / len(rows) * 1e6:.0f} us/row)")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--errors", type=int, default=0, help="print up to N errors")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = json.loads(args.data.read_text(encoding="utf-8"))
    table = evaluate(rows, args.errors)
    if args.json:
        print(json.dumps(table, indent=2))
        return
    print(
        f"{'type':<15}{'support':>8}{'tp':>6}{'fp':>6}{'fn':>6}{'precision':>11}{'recall':>8}"
        "  false positives landed on"
    )
    for kind, m in table.items():
        print(
            f"{kind:<15}{m['support']:>8}{m['tp']:>6}{m['fp']:>6}{m['fn']:>6}"
            f"{m['precision']:>11.3f}{m['recall']:>8.3f}  {m['fp_on'] or ''}"
        )


if __name__ == "__main__":
    main()
