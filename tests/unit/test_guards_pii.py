from __future__ import annotations

import pytest

from tether.config.guards import PiiOptions
from tether.guards.base import Finding, GuardContext
from tether.guards.builtin.pii import PiiDetector, PiiGuard, iban_ok, luhn_ok, resolve_overlaps
from tether.guards.redact import Redactor


@pytest.fixture(scope="module")
def detector() -> PiiDetector:
    return PiiDetector()


def kinds(detector: PiiDetector, text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in detector.find(text)]


def test_checksums() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432")
    assert not iban_ok("GB82WEST12345698765433")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "write to ana.maria+tag@mail.example.co.uk today",
            ("EMAIL_ADDRESS", "ana.maria+tag@mail.example.co.uk"),
        ),
        ("card 4111 1111 1111 1111 exp 12/29", ("CREDIT_CARD", "4111 1111 1111 1111")),
        ("amex 378282246310005.", ("CREDIT_CARD", "378282246310005")),
        ("IBAN: DE89 3704 0044 0532 0130 00, thanks", ("IBAN_CODE", "DE89 3704 0044 0532 0130 00")),
        ("iban gb82west12345698765432", ("IBAN_CODE", "gb82west12345698765432")),
        ("my SSN is 123-45-6789", ("US_SSN", "123-45-6789")),
        ("ssn: 123456789", ("US_SSN", "123456789")),
        ("server at 192.168.10.254 is down", ("IP_ADDRESS", "192.168.10.254")),
        ("v6 2001:db8::8a2e:370:7334 ok", ("IP_ADDRESS", "2001:db8::8a2e:370:7334")),
        ("call me on +44 20 7946 0958", ("PHONE_NUMBER", "+44 20 7946 0958")),
        ("office (415) 555-0132 x204", ("PHONE_NUMBER", "(415) 555-0132 x204")),
        ("Phone: 555 0199", ("PHONE_NUMBER", "555 0199")),
        ("Desk: +41 (0)44 668 18 00", ("PHONE_NUMBER", "+41 (0)44 668 18 00")),
    ],
)
def test_detects(detector: PiiDetector, text: str, expected: tuple[str, str]) -> None:
    assert expected in kinds(detector, text)


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 is not a card (bad Luhn)",
        "IBAN GB82 WEST 1234 5698 7654 33 has a wrong checksum",
        "SSN 000-12-3456 and 666-12-3456 and 900-12-3456 are never issued",
        "version 999.1.2.3 and 300.1.1.1 are not addresses",
        "the meeting is on 2024-03-15 at 12:30",
        "it costs $1 234 567 this year",
        "pi is 3.14159265 and e is 2.7182818",
        "my driver's license number is 6940579",
        "order number 123 4567 shipped",
        "1234",
    ],
)
def test_rejects(detector: PiiDetector, text: str) -> None:
    assert kinds(detector, text) == []


def test_ssn_is_not_also_a_phone(detector: PiiDetector) -> None:
    assert kinds(detector, "SSN 123-45-6789") == [("US_SSN", "123-45-6789")]


def test_overlaps_keep_the_stronger() -> None:
    kept = resolve_overlaps([Finding("PHONE_NUMBER", 0, 10), Finding("CREDIT_CARD", 2, 18)])
    assert [f.type for f in kept] == ["CREDIT_CARD"]


def test_guard_verdict_and_entity_selection() -> None:
    guard = PiiGuard(PiiOptions(entities=["EMAIL_ADDRESS"]))
    verdict = guard.check("a@b.io and +1 415 555 0100", GuardContext())
    assert not verdict.passed
    assert [f.type for f in verdict.findings] == ["EMAIL_ADDRESS"]
    assert guard.check("nothing here", GuardContext()).passed


def test_ner_backend_is_pluggable() -> None:
    class FakeNer:
        def entities(self, text: str) -> list[tuple[str, int, int]]:
            i = text.find("Ada Lovelace")
            return [("PERSON", i, i + 12)] if i >= 0 else []

    guard = PiiGuard(PiiOptions(entities=["PERSON", "EMAIL_ADDRESS"]), ner=FakeNer())
    verdict = guard.check("Ada Lovelace wrote to x@y.org", GuardContext())
    assert [f.type for f in verdict.findings] == ["PERSON", "EMAIL_ADDRESS"]


def test_redactor_round_trip_with_repeated_entities(detector: PiiDetector) -> None:
    text = "Mail ANA@x.io or ana@x.io; card 4111-1111-1111-1111; again ana@x.io, bob@y.io"
    redactor = Redactor()
    masked = redactor.redact(text, detector.find(text))
    assert masked == "Mail <EMAIL_1> or <EMAIL_1>; card <CARD_1>; again <EMAIL_1>, <EMAIL_2>"
    assert "ana@x.io" not in masked
    # the model answers with the placeholders, sometimes slightly mangled
    answer = "I wrote to <EMAIL_1> and < EMAIL_2 >; the card <CARD_1> is blocked. <EMAIL_9>"
    assert redactor.restore(answer) == (
        "I wrote to ANA@x.io and bob@y.io; the card 4111-1111-1111-1111 is blocked. <EMAIL_9>"
    )
    assert redactor.restore_value({"to": ["<EMAIL_2>"], "n": 1}) == {"to": ["bob@y.io"], "n": 1}


def test_placeholder_never_collides_with_text() -> None:
    redactor = Redactor()
    text = "literal <EMAIL_1> then a@b.io"
    masked = redactor.redact(text, [Finding("EMAIL_ADDRESS", 23, 29)])
    assert masked == "literal <EMAIL_1> then <EMAIL_2>"


def test_output_redaction_masks_new_values_irreversibly() -> None:
    redactor = Redactor()
    redactor.redact("me: a@b.io", [Finding("EMAIL_ADDRESS", 4, 10)])
    out = "a@b.io and c@d.io"
    masked = redactor.redact(
        out, [Finding("EMAIL_ADDRESS", 0, 6), Finding("EMAIL_ADDRESS", 11, 17)], reversible=False
    )
    assert masked == "<EMAIL_1> and [EMAIL]"
    assert redactor.restore(masked) == "a@b.io and [EMAIL]"
