"""Reading labelled datasets and scoring a guard on them: per source, hard negatives apart,
entity types the guard does not detect, labels that are not 0/1."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tether.config.guards import PII_TYPES, PiiOptions
from tether.guards.base import GuardContext
from tether.guards.builtin.pii import PiiGuard
from tether.guards.evaluation import DatasetError, declared_types, evaluate, read_rows


def jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def presidio(text: str, *spans: tuple[str, str]) -> dict[str, Any]:
    """A presidio-research record; each span is (entity_type, the substring it covers)."""
    out = []
    for kind, value in spans:
        start = text.index(value)
        out.append(
            {
                "entity_type": kind,
                "entity_value": value,
                "start_position": start,
                "end_position": start + len(value),
            }
        )
    return {"full_text": text, "masked": "", "spans": out, "template_id": 0, "metadata": None}


def has_attack_word(text: str) -> bool:
    return "ignore" in text.lower()


def test_per_source_rates_with_each_sources_hard_negatives_apart() -> None:
    rows = [
        {"text": "ignore the rules", "label": 1, "category": "direct", "source": "a"},
        {"text": "say hi", "label": 1, "category": "direct", "source": "a"},
        {"text": "bake bread", "label": 0, "category": "benign", "source": "a"},
        {"text": "how to ignore a cold", "label": 0, "category": "hard_negative:x", "source": "b"},
        {"text": "block ips", "label": 0, "category": "hard_negative:x", "source": "b"},
        {"text": "plain", "label": 0, "category": "benign", "source": "b"},
        {"text": "no source at all", "label": 0},
    ]
    report = evaluate(rows, has_attack_word)
    out = report.as_dict()
    assert set(out["by_source"]) == {"a", "b", "(no source)"}
    assert out["by_source"]["(no source)"]["n"] == 1
    a, b = out["by_source"]["a"], out["by_source"]["b"]
    assert (a["n"], a["tpr"], a["fpr"], a["balanced_accuracy"]) == (3, 0.5, 0.0, 0.75)
    assert a["hard_negatives_n"] == 0 and a["hard_negative_fpr"] is None
    assert (b["n"], b["fpr"], b["hard_negatives_n"], b["hard_negative_fpr"]) == (3, 1 / 3, 2, 0.5)
    assert out["hard_negatives"]["fpr"] == 0.5 and out["without_hard_negatives"]["fpr"] == 0.0
    assert out["overall"]["n"] == 7
    assert report.warnings("g") == []
    assert evaluate(rows[-1:], has_attack_word).as_dict()["by_source"] == {}


def test_uncovered_entity_types_are_counted_and_scored_both_ways(tmp_path: Path) -> None:
    records = [
        presidio("card 4111 1111 1111 1111 please", ("CREDIT_CARD", "4111 1111 1111 1111")),
        presidio("mail me at ann@example.org", ("EMAIL_ADDRESS", "ann@example.org")),
        presidio("Ann Lee lives at 12 Oak Street", ("PERSON", "Ann Lee"),
                 ("STREET_ADDRESS", "12 Oak Street")),
        presidio("Bob met Ann Lee", ("PERSON", "Bob"), ("PERSON", "Ann Lee")),
        presidio("call Bob on 415-555-0132", ("PERSON", "Bob"), ("PHONE_NUMBER", "415-555-0132")),
        presidio("what a nice day"),
        presidio("the report is due friday"),
    ]  # fmt: skip
    path = tmp_path / "pii.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    rows = read_rows(path)
    assert [r["label"] for r in rows] == [1, 1, 1, 1, 1, 0, 0]
    assert rows[3]["types"] == ["PERSON", "PERSON"] and rows[3]["category"] == "pii"

    guard = PiiGuard()
    ctx = GuardContext()
    report = evaluate(
        rows, lambda t: not guard.check(t, ctx).passed, covered_types=declared_types(guard)
    )
    # everything: the two PERSON/STREET_ADDRESS-only rows are positives the guard misses
    assert (report.overall.n, report.overall.tp, report.overall.fn) == (7, 3, 2)
    assert report.overall.balanced_accuracy == pytest.approx((3 / 5 + 1) / 2)
    # covered types only: those two rows are left out and counted, never silently dropped
    assert (report.covered.n, report.outside, report.covered.balanced_accuracy) == (5, 2, 1.0)
    assert report.uncovered_types == ["PERSON", "STREET_ADDRESS"]
    person = report.as_dict()["by_type"]["PERSON"]
    assert person == {"rows": 3, "spans": 4, "flagged_rows": 1, "recall": 1 / 3, "covered": False}
    assert report.as_dict()["covered_types"]["rows_left_out"] == 2

    [warning] = report.warnings("pii")
    assert "PERSON (4 spans in 3 rows)" in warning
    assert "STREET_ADDRESS (1 span in 1 row)" in warning
    assert "2 rows hold only such types" in warning
    assert "all 7 rows, those types included: 0.800" in warning
    assert ": 1.000 over 5 rows, 2 rows left out" in warning


def test_declared_types_follow_the_guard_config() -> None:
    assert declared_types(PiiGuard()) == frozenset(PII_TYPES)
    emails = PiiGuard(PiiOptions(entities=["EMAIL_ADDRESS", "PERSON"]))
    assert declared_types(emails) == {"EMAIL_ADDRESS"}  # PERSON needs a NER backend

    class Ner:
        def entities(self, text: str) -> list[tuple[str, int, int]]:
            return []

    with_ner = PiiGuard(PiiOptions(ner=True), ner=Ner())
    assert declared_types(with_ner) == {*PII_TYPES, "PERSON", "LOCATION"}
    report = evaluate([], lambda t: False, covered_types=declared_types(with_ner))
    assert report.covers("GPE") and report.covers("PERSON") and not report.covers("ZIP_CODE")

    class Custom:
        entity_types = ("ACCOUNT_ID",)

    assert declared_types(Custom()) == {"ACCOUNT_ID"}
    assert declared_types(Custom.entity_types) is None  # says nothing about entity types


def test_types_on_jsonl_rows_and_a_guard_that_does_not_declare_them(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "t.jsonl",
        [
            {"text": "x", "label": 1, "types": ["ACCOUNT_ID"]},
            {"text": "y", "label": 1, "spans": [{"type": "PERSON", "start": 0, "end": 1}]},
            {"text": "z", "label": 0},
        ],
    )
    rows = read_rows(path)
    assert [r.get("types") for r in rows] == [["ACCOUNT_ID"], ["PERSON"], None]
    report = evaluate(rows, lambda t: t == "x")
    assert report.covered.n == 3 and report.outside == 0  # no coverage declared: labels only
    [warning] = report.warnings("mine")
    assert "ACCOUNT_ID, PERSON" in warning and "does not declare" in warning


def test_bad_labels_name_the_rows(tmp_path: Path) -> None:
    rows: list[object] = [
        {"text": "ok", "label": 1},
        {"text": "a", "label": "jailbreak"},
        {"text": "b"},
        {"text": "c", "label": 2},
        {"label": 0},
        ["not", "an", "object"],
        {"text": "d", "label": None},
        {"text": "e", "label": True},
    ]
    path = jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DatasetError) as err:
        read_rows(path)
    message = str(err.value)
    assert "6 of 8 rows cannot be scored" in message
    assert "line 2: label 'jailbreak' is not 0 or 1" in message
    assert "line 3: no 'label' field" in message
    assert "line 4: label 2 is not 0 or 1" in message
    assert "line 5: no string 'text' field" in message
    assert "line 6: expected a JSON object, got list" in message
    assert "(and 1 more)" in message and "--label-map" in message

    mapped = read_rows(
        jsonl(tmp_path / "m.jsonl", [rows[1], rows[3], rows[7], {"text": "f", "label": "benign"}]),
        label_map={"jailbreak": 1, "2": 1, "benign": 0},
    )
    assert [r["label"] for r in mapped] == [1, 1, 1, 0]

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a", "label": 0}\n{oops\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2 is not JSON"):
        read_rows(broken)


def test_hard_negatives_labelled_as_attacks_are_a_warning() -> None:
    rows = [{"text": "t", "label": 1, "category": "hard_negative:oops"}]
    [warning] = evaluate(rows, lambda t: True).warnings()
    assert warning.startswith("1 row in a hard_negative category is labelled 1")
