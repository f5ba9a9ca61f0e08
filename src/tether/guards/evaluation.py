"""Accuracy and latency of a guard on labelled rows (``{text, label, category?, source?, types?}``).

Used by ``tether guards eval``, ``scripts/train_injection.py`` and the benches. Labels: 1 means
the guard should flag the row, 0 that it should pass; anything else is a :class:`DatasetError`
naming the rows (or mapped to 0/1 with ``label_map``). A category starting with
``hard_negative`` is reported apart: benign rows built to look like attacks. Rows with a
``source`` are also reported per source, with that source's hard negatives apart.

Entity types: a row may say which entity types it holds (``types: [...]``, or ``spans:
[{entity_type ...}]``; presidio-research records ``{full_text, spans}`` are read as rows whose
label is 1 when they hold any span). When the guard declares the types it detects
(:func:`declared_types`), a row whose every type is outside them is a positive the guard was never
built to find: the report scores all rows (such a row counts, usually as a miss) and, apart, only
the covered types (such a row is left out and counted), and :meth:`EvalReport.warnings` names the
uncovered types with their row and span counts. No row is dropped without being counted.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Confusion",
    "DatasetError",
    "EvalReport",
    "TypeCount",
    "declared_types",
    "evaluate",
    "evaluate_concurrently",
    "percentile",
    "read_rows",
]

#: Dataset entity types that a guard's type of another name detects (presidio's GPE are the
#: cities and countries the pii guard's NER reports as LOCATION).
TYPE_ALIASES = {"GPE": "LOCATION"}
NER_ONLY_TYPES = frozenset({"PERSON", "LOCATION"})
NO_SOURCE = "(no source)"
NAMED_ROWS = 5  # how many bad rows an error message names
DEFAULT_FIX = (
    "Configure the guard to detect those types, or remove them from the dataset to score it on "
    "what it covers."
)


class DatasetError(ValueError):
    """Rows that cannot be scored; the message names them and says how to fix them."""


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


@dataclass(slots=True)
class TypeCount:
    """Rows and spans of one entity type, and how many of those rows the guard flagged."""

    rows: int = 0
    spans: int = 0
    flagged: int = 0

    @property
    def recall(self) -> float | None:
        return self.flagged / self.rows if self.rows else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def is_hard_negative(category: str) -> bool:
    return category.startswith("hard_negative")


@dataclass(slots=True)
class EvalReport:
    """Confusion counts overall, per category, per source and on the covered entity types.

    ``covered_types`` are the entity types the guard detects (None: it does not say); with it,
    ``covered`` scores only the covered types and ``outside`` counts the rows left out of that
    score because every type they hold is uncovered."""

    covered_types: frozenset[str] | None = None
    overall: Confusion = field(default_factory=Confusion)
    hard_negatives: Confusion = field(default_factory=Confusion)
    easy: Confusion = field(default_factory=Confusion)
    by_category: dict[str, Confusion] = field(default_factory=lambda: defaultdict(Confusion))
    by_source: dict[str, Confusion] = field(default_factory=lambda: defaultdict(Confusion))
    by_source_hard: dict[str, Confusion] = field(default_factory=lambda: defaultdict(Confusion))
    by_type: dict[str, TypeCount] = field(default_factory=lambda: defaultdict(TypeCount))
    covered: Confusion = field(default_factory=Confusion)
    outside: int = 0
    hard_positives: int = 0  # rows in a hard_negative category labelled 1
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, row: dict[str, Any], flagged: bool, latency_ms: float) -> None:
        label = int(row["label"])
        category = str(row.get("category") or ("attack" if label else "benign"))
        hard = is_hard_negative(category)
        self.overall.add(label, flagged)
        (self.hard_negatives if hard else self.easy).add(label, flagged)
        self.hard_positives += int(hard and label == 1)
        self.by_category[category].add(label, flagged)
        source = str(row.get("source") or NO_SOURCE)
        self.by_source[source].add(label, flagged)
        if hard:
            self.by_source_hard[source].add(label, flagged)
        types = [str(t) for t in row.get("types") or ()]
        for kind, spans in Counter(types).items():
            count = self.by_type[kind]
            count.rows += 1
            count.spans += spans
            count.flagged += int(flagged)
        covered_label = self.covered_label(label, types)
        if covered_label is None:
            self.outside += 1
        else:
            self.covered.add(covered_label, flagged)
        self.latencies_ms.append(latency_ms)

    def sources(self) -> dict[str, Confusion]:
        """Rates per source, rows without one under ``(no source)``; empty when no row has one."""
        if set(self.by_source) <= {NO_SOURCE}:
            return {}
        return dict(sorted(self.by_source.items()))

    def covers(self, kind: str) -> bool:
        """Whether the guard detects entity type ``kind`` (True when it does not say)."""
        if self.covered_types is None:
            return True
        return kind in self.covered_types or TYPE_ALIASES.get(kind) in self.covered_types

    def covered_label(self, label: int, types: Sequence[str]) -> int | None:
        """The row's label counting only covered types; None when it holds only uncovered ones."""
        if not label or not types or self.covered_types is None:
            return label
        return 1 if any(self.covers(t) for t in types) else None

    @property
    def uncovered_types(self) -> list[str]:
        return sorted(t for t in self.by_type if not self.covers(t))

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def warnings(self, guard: str = "the guard", fix: str = "") -> list[str]:
        """What the numbers do not say on their own: uncovered entity types (with the score on
        all rows and on the covered types), undeclared coverage, hard negatives labelled 1."""
        out: list[str] = []
        if self.by_type and self.covered_types is None:
            out.append(
                f"the rows hold entity types ({', '.join(sorted(self.by_type))}) but `{guard}` "
                "does not declare which types it detects: scored on the labels only"
            )
        missing = self.uncovered_types
        if missing:
            counts = ", ".join(
                f"{t} ({plural(self.by_type[t].spans, 'span')} in "
                f"{plural(self.by_type[t].rows, 'row')})"
                for t in missing
            )
            covered = ", ".join(sorted(self.covered_types or ())) or "none"
            out.append(
                f"`{guard}` does not detect {len(missing)} entity type(s) in the dataset: "
                f"{counts}; {self.outside} rows hold only such types. Balanced accuracy on all "
                f"{self.overall.n} rows, those types included: "
                f"{rate(self.overall.balanced_accuracy)}; on the covered types ({covered}): "
                f"{rate(self.covered.balanced_accuracy)} over {self.covered.n} rows, "
                f"{self.outside} rows left out. {fix or DEFAULT_FIX}"
            )
        if self.hard_positives:
            out.append(
                f"{plural(self.hard_positives, 'row')} in a hard_negative category "
                f"{'is' if self.hard_positives == 1 else 'are'} labelled 1; a hard negative is a "
                "benign row (label 0): fix the label or the category"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        by_source = {}
        for source, conf in self.sources().items():
            hard = self.by_source_hard.get(source, Confusion())
            by_source[source] = {
                **conf.as_dict(),
                "hard_negatives_n": hard.n,
                "hard_negative_fpr": hard.fpr,
            }
        out: dict[str, Any] = {
            "overall": self.overall.as_dict(),
            "without_hard_negatives": self.easy.as_dict(),
            "hard_negatives": self.hard_negatives.as_dict(),
            "by_category": {k: v.as_dict() for k, v in sorted(self.by_category.items())},
            "by_source": by_source,
            "by_type": {
                k: {
                    "rows": v.rows,
                    "spans": v.spans,
                    "flagged_rows": v.flagged,
                    "recall": v.recall,
                    "covered": self.covers(k),
                }
                for k, v in sorted(self.by_type.items())
            },
            "covered_types": None,
            "latency_ms": {"p50": round(self.p50_ms, 4), "p99": round(self.p99_ms, 4)},
        }
        if self.by_type and self.covered_types is not None:
            out["covered_types"] = {
                "types": sorted(self.covered_types),
                "rows_left_out": self.outside,
                **self.covered.as_dict(),
            }
        return out


def evaluate(
    rows: Iterable[dict[str, Any]],
    flag: Callable[[str], bool],
    progress: Callable[[], None] | None = None,
    covered_types: Iterable[str] | None = None,
) -> EvalReport:
    """Run ``flag(text)`` over labelled rows, timing each call. ``covered_types``: the entity
    types the guard detects, when it declares them (see :func:`declared_types`)."""
    report = EvalReport(None if covered_types is None else frozenset(covered_types))
    for row in rows:
        t0 = time.perf_counter()
        flagged = flag(str(row["text"]))
        report.add(row, flagged, (time.perf_counter() - t0) * 1000.0)
        if progress is not None:
            progress()
    return report


async def evaluate_concurrently(
    rows: Iterable[dict[str, Any]],
    flag: Callable[[str], Awaitable[bool]],
    concurrency: int,
    progress: Callable[[], None] | None = None,
    covered_types: Iterable[str] | None = None,
) -> EvalReport:
    """:func:`evaluate` with up to ``concurrency`` checks in flight, for a guard that waits on a
    model (a judge, a batched classifier). Each row's latency runs from the start of its check
    to its verdict; rows enter the report in their order."""
    todo = list(rows)
    done: list[tuple[bool, float]] = [(False, 0.0)] * len(todo)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int, row: dict[str, Any]) -> None:
        async with gate:
            t0 = time.perf_counter()
            flagged = await flag(str(row["text"]))
            done[i] = (flagged, (time.perf_counter() - t0) * 1000.0)
        if progress is not None:
            progress()

    await asyncio.gather(*(one(i, row) for i, row in enumerate(todo)))
    report = EvalReport(None if covered_types is None else frozenset(covered_types))
    for row, (flagged, latency_ms) in zip(todo, done, strict=True):
        report.add(row, flagged, latency_ms)
    return report


def declared_types(guard: object) -> frozenset[str] | None:
    """The entity types a guard detects: its ``entity_types`` attribute when it has one, the
    ``pii`` guard's configured entities (PERSON/LOCATION only with a NER backend), else None."""
    from tether.guards.builtin.pii import PiiGuard  # the pii module loads its backends lazily

    declared = getattr(guard, "entity_types", None)
    if declared is not None:
        return frozenset(str(t) for t in declared)
    if isinstance(guard, PiiGuard):
        detector = guard.detector
        types = frozenset(detector.entities)
        return types if detector.ner is not None else types - NER_ONLY_TYPES
    return None


# ---------------------------------------------------------------- reading datasets


def read_rows(path: str | Path, label_map: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Rows ``{text, label, ...}`` from JSONL or a JSON list; presidio-research records
    ``{full_text, spans}`` become ``{text, label, category, types}``. ``label_map`` maps other
    label values (a string, or the JSON of a number) to 0/1. Raises :class:`DatasetError` naming
    the rows that cannot be scored."""
    items = _items(path)
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for where, row in items:
        try:
            out.append(_normalise(row, label_map))
        except DatasetError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        named = "; ".join(problems[:NAMED_ROWS])
        more = f" (and {len(problems) - NAMED_ROWS} more)" if len(problems) > NAMED_ROWS else ""
        raise DatasetError(
            f"{path}: {len(problems)} of {len(items)} rows cannot be scored: {named}{more}. "
            "A row needs a string 'text' and a 'label' of 1 (the guard should flag it) or 0 "
            "(it should pass); map other label values to 0/1 (`tether guards eval --label-map "
            '\'{"jailbreak": 1, "benign": 0}\'`)'
        )
    return out


def _items(path: str | Path) -> list[tuple[str, Any]]:
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc}); fix the file") from None
        if not isinstance(rows, list):
            raise DatasetError(f"{path}: expected a JSON list of rows")
        return [(f"item {i}", row) for i, row in enumerate(rows, 1)]
    items: list[tuple[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {n} is not JSON ({exc}); fix or remove it") from None
    return items


def _normalise(row: Any, label_map: Mapping[str, int] | None) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DatasetError(f"expected a JSON object, got {type(row).__name__}")
    if "text" not in row and "full_text" in row and "spans" in row:
        types = _span_types(row["spans"])
        return {
            **{k: v for k, v in row.items() if k not in ("full_text", "spans")},
            "text": str(row["full_text"]),
            "label": int(bool(types)),
            "category": "pii" if types else "no_pii",
            "types": types,
        }
    if not isinstance(row.get("text"), str):
        raise DatasetError("no string 'text' field")
    if "label" not in row:
        raise DatasetError("no 'label' field")
    out = {**row, "label": _label(row["label"], label_map)}
    if "types" in row or "spans" in row:
        out["types"] = _types(row)
    return out


def _label(raw: Any, label_map: Mapping[str, int] | None) -> int:
    if label_map:
        key = raw if isinstance(raw, str) else json.dumps(raw)
        if key in label_map:
            return int(label_map[key])
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int | float) and raw in (0, 1):
        return int(raw)
    raise DatasetError(f"label {raw!r} is not 0 or 1")


def _types(row: dict[str, Any]) -> list[str]:
    types = row.get("types")
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise DatasetError("'types' must be a list of entity type names")
        return list(types)
    return _span_types(row["spans"])


def _span_types(spans: Any) -> list[str]:
    if not isinstance(spans, list):
        raise DatasetError("'spans' must be a list")
    out: list[str] = []
    for span in spans:
        kind = span.get("entity_type", span.get("type")) if isinstance(span, dict) else None
        if not isinstance(kind, str):
            raise DatasetError("each span needs a string 'entity_type'")
        out.append(kind)
    return out
