"""``pii``: personal data found by pattern plus checksum, not by pattern alone.

* ``EMAIL_ADDRESS``: RFC 5322-ish local part, a dotted domain with a 2+ letter TLD.
* ``PHONE_NUMBER``: digit groups in phone formatting (``+``, ``(0)``, ``( )``, ``-``, ``.``,
  spaces, ``x123`` extensions), 7-15 digits; unformatted digit runs only when ``phonenumbers``
  says they are a valid number in one of ``phone_regions`` or a word like "phone" precedes them.
  Dates, times and spans already claimed by a stronger detector are not phones.
* ``CREDIT_CARD``: 12-19 digits with a card-network prefix and a valid Luhn checksum.
* ``IBAN_CODE``: country code, the country's IBAN length, valid ISO 7064 mod-97 checksum.
* ``US_SSN``: ``AAA-GG-SSSS`` (or spaced) outside the never-issued ranges; bare nine digits
  only right after "SSN" / "social security".
* ``IP_ADDRESS``: IPv4 and IPv6 that :mod:`ipaddress` accepts.
* ``PERSON`` / ``LOCATION``: through an optional NER backend (spaCy, or your own).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from tether.config.guards import PII_TYPES, PiiOptions
from tether.errors import ConfigError
from tether.guards.base import Finding, GuardContext, Verdict

# Lengths from the SWIFT IBAN registry; other country codes are accepted at 15-34 characters.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# Which detector wins when two spans overlap (lower first).
PRIORITY = {
    "EMAIL_ADDRESS": 0,
    "IBAN_CODE": 1,
    "CREDIT_CARD": 2,
    "US_SSN": 3,
    "IP_ADDRESS": 4,
    "PHONE_NUMBER": 5,
    "PERSON": 6,
    "LOCATION": 7,
}

PHONE_CONTEXT = (
    "phone", "tel", "call", "mobile", "cell", "fax", "desk", "office", "contact", "whatsapp",
    "sms", "text me", "ring", "reach", "dial", "landline",
)  # fmt: skip
# Words that say a number is some other identifier, not a phone.
NOT_PHONE_CONTEXT = (
    "card", "licen", "passport", "account", "order", "invoice", "ticket", "tracking", "zip",
    "postal", "postcode", "serial", "iban", "ssn", "social security", "$", "€", "£",
)  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 / ISO 7064 mod-97-10 check of a compact IBAN."""
    iban = iban.upper()
    if len(iban) < 15 or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def card_prefix_ok(digits: str) -> bool:
    """A plausible issuer prefix: Visa, Mastercard, Amex, Diners, Discover, JCB, Maestro..."""
    if digits.startswith(("1800", "2131")):
        return True
    return digits[0] in "3456" or (digits[0] == "2" and "22" <= digits[:2] <= "27")


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep the strongest of overlapping findings (type priority, then longer, then score)."""
    ranked = sorted(
        findings,
        key=lambda f: (PRIORITY.get(f.type, 50), -(f.end - f.start), -f.score, f.start),
    )
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


class NerBackend(Protocol):
    """Finds names and places: ``(label, start, end)`` with labels PERSON / LOCATION."""

    def entities(self, text: str) -> Sequence[tuple[str, int, int]]: ...


class SpacyNer:
    """:class:`NerBackend` over a spaCy pipeline (``pip install spacy`` plus its model)."""

    def __init__(self, model: str) -> None:
        self.labels = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
        try:
            import spacy  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ConfigError(
                "pii: ner: true needs spaCy; install it with `pip install spacy` and "
                f"`python -m spacy download {model}` (or drop ner)"
            ) from None
        try:
            self._nlp: Any = spacy.load(model)
        except OSError:
            raise ConfigError(
                f"pii: spaCy model {model!r} is not installed; install it as a package "
                f"(`python -m spacy download {model}`) or set ner_model"
            ) from None

    def entities(self, text: str) -> list[tuple[str, int, int]]:
        doc = self._nlp(text)
        return [
            (self.labels[ent.label_], ent.start_char, ent.end_char)
            for ent in doc.ents
            if ent.label_ in self.labels
        ]


class PiiDetector:
    """The detectors behind :class:`PiiGuard`; usable alone (``find(text)``)."""

    def __init__(
        self,
        entities: Iterable[str] = PII_TYPES,
        *,
        phone_regions: Sequence[str] = ("US", "GB", "DE", "FR"),
        ner: NerBackend | None = None,
    ) -> None:
        self.entities = frozenset(entities)
        self.phone_regions = tuple(phone_regions)
        self.ner = ner
        self._email = re.compile(
            r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
            r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
        )
        self._card = re.compile(r"(?<![\w.,+-])\d(?:[ -]?\d){11,18}(?![\d-]|[.,]\d)")
        self._iban_start = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?=[ ]?[A-Za-z0-9])")
        self._ssn = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
        self._ssn_bare = re.compile(
            r"(?i)\b(?:ssn|social security(?: number| no\.?)?)\W{0,5}(\d{9})\b"
        )
        self._ipv4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
        self._ipv6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
        group = r"(?:\(\d{1,4}\)|\d{1,14})"
        self._phone = re.compile(
            rf"(?<![\w+@/])(?<!\d[.,-])\+?{group}(?:[ .-]{group}|(?<=\))\d{{1,14}}){{0,7}}"
            r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})?(?![\w@]|[.,-]\d|:\d)"
        )
        self._date = re.compile(
            r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})\b"
        )
        self._phonenumbers: Any = None

    # ------------------------------------------------------------------ detectors

    def find(self, text: str) -> list[Finding]:
        """Every entity found, overlaps resolved, in text order."""
        found: list[Finding] = []
        steps: list[tuple[str, Callable[[str], list[Finding]]]] = [
            ("EMAIL_ADDRESS", self._emails),
            ("IBAN_CODE", self._ibans),
            ("CREDIT_CARD", self._cards),
            ("US_SSN", self._ssns),
            ("IP_ADDRESS", self._ips),
            ("PHONE_NUMBER", self._phones),
        ]
        for kind, detect in steps:
            if kind in self.entities:
                found.extend(detect(text))
        if self.ner is not None and self.entities & {"PERSON", "LOCATION"}:
            for label, start, end in self.ner.entities(text):
                if label in self.entities:
                    found.append(Finding(label, start, end, text[start:end], 0.85))
        return resolve_overlaps(found)

    def _emails(self, text: str) -> list[Finding]:
        if "@" not in text:
            return []
        return [
            Finding("EMAIL_ADDRESS", m.start(), m.end(), m.group(), 1.0)
            for m in self._email.finditer(text)
        ]

    def _cards(self, text: str) -> list[Finding]:
        out = []
        for m in self._card.finditer(text):
            raw = m.group()
            digits = raw.replace(" ", "").replace("-", "")
            if not (12 <= len(digits) <= 19 and card_prefix_ok(digits) and luhn_ok(digits)):
                continue
            if digits != raw:
                groups = re.split(r"[ -]", raw)
                if len(set(re.findall(r"[ -]", raw))) > 1 or len(groups[0]) != 4:
                    continue
            out.append(Finding("CREDIT_CARD", m.start(), m.end(), raw, 0.95))
        return out

    def _ibans(self, text: str) -> list[Finding]:
        out = []
        for m in self._iban_start.finditer(text):
            span = self._iban_at(text, m.start())
            if span is not None:
                out.append(Finding("IBAN_CODE", m.start(), span, text[m.start() : span], 1.0))
        return out

    def _iban_at(self, text: str, start: int) -> int | None:
        """The end of a valid IBAN starting at ``start`` (single spaces allowed), or None."""
        country = text[start : start + 2].upper()
        lengths = [IBAN_LENGTHS[country]] if country in IBAN_LENGTHS else range(34, 14, -1)
        chars: list[str] = []
        ends: list[int] = []
        i = start
        while i < len(text) and len(chars) < 34:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch)
                ends.append(i + 1)
            elif not (ch == " " and chars and i + 1 < len(text) and text[i + 1].isalnum()):
                break
            i += 1
        for length in lengths:
            if len(chars) < length:
                continue
            end = ends[length - 1]
            if end < len(text) and text[end].isalnum():
                continue
            if iban_ok("".join(chars[:length])):
                return end
        return None

    def _ssns(self, text: str) -> list[Finding]:
        out = []
        for m in self._ssn.finditer(text):
            area, group, serial = m.group(1), m.group(3), m.group(4)
            if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
                continue
            out.append(Finding("US_SSN", m.start(), m.end(), m.group(), 0.9))
        for m in self._ssn_bare.finditer(text):
            out.append(Finding("US_SSN", m.start(1), m.end(1), m.group(1), 0.8))
        return out

    def _ips(self, text: str) -> list[Finding]:
        out = []
        if "." in text:
            for m in self._ipv4.finditer(text):
                try:
                    ipaddress.IPv4Address(m.group())
                except ValueError:
                    continue
                out.append(Finding("IP_ADDRESS", m.start(), m.end(), m.group(), 0.9))
        if "::" in text or text.count(":") >= 5:
            for m in self._ipv6.finditer(text):
                value = m.group()
                if sum(c not in ":" for c in value) < 2:
                    continue
                try:
                    ipaddress.IPv6Address(value)
                except ValueError:
                    continue
                out.append(Finding("IP_ADDRESS", m.start(), m.end(), value, 0.9))
        return out

    # ------------------------------------------------------------------ phones

    def _phones(self, text: str) -> list[Finding]:
        dates = [m.span() for m in self._date.finditer(text)]
        out = []
        for m in self._phone.finditer(text):
            start, end = m.span()
            if any(s < end and start < e for s, e in dates):
                continue
            score = self._phone_score(text, m.group(), start)
            if score >= 0.5:
                out.append(Finding("PHONE_NUMBER", start, end, m.group(), score))
        return out

    def _phone_score(self, text: str, raw: str, start: int) -> float:
        """0.5 or more is a phone: formatting, ``phonenumbers`` validity and context words."""
        main = re.split(r"\s?(?:x|ext\.?|#)\s?\d", raw, maxsplit=1)[0]
        digits = re.sub(r"\D", "", main)
        if not 7 <= len(digits) <= 15:
            return 0.0
        groups = len(re.findall(r"\d+", main))
        if groups == 2 and re.fullmatch(r"\d+[.,]\d+", main):
            return 0.0  # a decimal number
        if re.fullmatch(r"\d{3}([- ])\d{2}\1\d{4}", main):
            return 0.0  # SSN-shaped (a valid one is claimed by the SSN detector)
        strong = main.startswith("+") or "(" in main
        if groups == 1 and not strong:
            # an unformatted digit run: only a valid 10+ digit number, or one in context
            score = 0.2 + (0.3 if len(digits) >= 10 and self._phone_valid(main) else 0.0)
        elif groups == 2 and not strong and not (digits[0] == "0" and len(digits) >= 10):
            score = 0.3  # "4 digits, space, 3 digits" is as often a house number and a zip
        else:
            score = 0.5
        before = text[max(0, start - 40) : start].lower()
        after = text[start + len(raw) : start + len(raw) + 12].lower()
        if any(word in before for word in NOT_PHONE_CONTEXT[-3:]) or any(
            word in before[-25:] for word in NOT_PHONE_CONTEXT[:-3]
        ):
            return 0.0
        if any(word in before or word in after for word in PHONE_CONTEXT):
            score += 0.3
        return min(score, 1.0)

    def _phone_valid(self, raw: str) -> bool:
        if self._phonenumbers is None:
            import phonenumbers

            self._phonenumbers = phonenumbers
        pn = self._phonenumbers
        regions: Sequence[str | None] = (None,) if raw.startswith("+") else self.phone_regions
        for region in regions:
            try:
                number = pn.parse(raw, region)
            except pn.NumberParseException:
                continue
            if pn.is_valid_number(number):
                return True
        return False


class PiiGuard:
    """Fails when personal data is present; its findings drive (reversible) redaction."""

    def __init__(self, options: PiiOptions | None = None, *, ner: NerBackend | None = None) -> None:
        options = options or PiiOptions()
        wants_ner = bool(set(options.entities) & {"PERSON", "LOCATION"}) or options.ner
        if ner is None and options.ner and wants_ner:
            ner = SpacyNer(options.ner_model)
        entities = list(options.entities)
        if options.ner:
            entities += [t for t in ("PERSON", "LOCATION") if t not in entities]
        self.detector = PiiDetector(entities, phone_regions=options.phone_regions, ner=ner)

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        findings = self.detector.find(text)
        if not findings:
            return Verdict.ok()
        kinds = sorted({f.type for f in findings})
        return Verdict.fail(
            f"personal data found: {', '.join(kinds)}",
            score=max(f.score for f in findings),
            findings=tuple(findings),
        )
