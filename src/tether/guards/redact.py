"""Reversible redaction: the model sees ``<EMAIL_1>``, the user gets the original back.

One :class:`Redactor` lives for one call (it travels in :class:`GuardContext`). The same entity
(compared normalised: case-folded, or digits only for numbers) always maps to the same
placeholder, so "mail a@x.io, I repeat a@x.io" becomes "mail <EMAIL_1>, I repeat <EMAIL_1>".
Output-stage redaction reuses a known placeholder (the user gave that value) and masks values
the model produced on its own as ``[EMAIL]``, which are never restored.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from tether.guards.base import Finding

LABELS = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
    "IP_ADDRESS": "IP",
    "PERSON": "NAME",
    "LOCATION": "LOCATION",
    "BANNED": "BANNED",
}
NUMERIC = {"PHONE", "CARD", "SSN", "IBAN"}


def label_for(kind: str) -> str:
    """Placeholder label of a finding type; credential types become SECRET."""
    if kind in LABELS:
        return LABELS[kind]
    return "SECRET" if kind.isupper() else re.sub(r"[^A-Z]", "", kind.upper()) or "REDACTED"


class Redactor:
    """Per-call placeholder map; ``redact`` then (on the way out) ``restore``."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: Counter[str] = Counter()
        self._placeholder = re.compile(r"<\s*([A-Z]+_\d+)\s*>")
        self._partial = re.compile(r"<[A-Z_\d\s]{0,24}\Z")

    @staticmethod
    def _normal(label: str, value: str) -> str:
        if label in NUMERIC:
            return re.sub(r"[^0-9A-Za-z]", "", value).upper()
        return value.strip().casefold()

    def placeholder(self, kind: str, value: str, text: str = "") -> str:
        """The placeholder for ``value`` (new ones skip names already present in ``text``)."""
        label = label_for(kind)
        key = (label, self._normal(label, value))
        found = self._by_key.get(key)
        if found is not None:
            return found
        while True:
            self._counts[label] += 1
            name = f"<{label}_{self._counts[label]}>"
            if name not in text:
                break
        self._by_key[key] = name
        self._originals[name[1:-1]] = value
        return name

    def known(self, kind: str, value: str) -> str | None:
        label = label_for(kind)
        return self._by_key.get((label, self._normal(label, value)))

    def redact(self, text: str, findings: Iterable[Finding], *, reversible: bool = True) -> str:
        """Replace each finding's span; overlapping findings keep the first."""
        out: list[str] = []
        pos = 0
        for f in sorted(findings, key=lambda f: (f.start, -f.end)):
            if f.start < pos or f.end <= f.start:
                continue
            value = text[f.start : f.end]
            if reversible:
                repl = self.placeholder(f.type, value, text)
            else:
                repl = self.known(f.type, value) or f"[{label_for(f.type)}]"
            out.append(text[pos : f.start])
            out.append(repl)
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """Put the originals back (tolerates ``< EMAIL_1 >`` spacing)."""
        if not self._originals or "<" not in text:
            return text
        return self._placeholder.sub(lambda m: self._originals.get(m.group(1), m.group(0)), text)

    def restore_value(self, value: Any) -> Any:
        """Restore inside a parsed JSON value or a pydantic model."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, list):
            return [self.restore_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.restore_value(v) for k, v in value.items()}
        if isinstance(value, BaseModel):
            dumped = self.restore_value(value.model_dump(mode="json"))
            return type(value).model_validate(dumped)
        return value

    def partial_tail(self, text: str) -> int:
        """Length of a trailing piece that may be the start of a placeholder (``<EMA``)."""
        m = self._partial.search(text[-26:])
        return len(m.group()) if m else 0

    @property
    def mapping(self) -> dict[str, str]:
        """Placeholder -> original. Sensitive: never log it."""
        return {f"<{k}>": v for k, v in self._originals.items()}

    def __len__(self) -> int:
        return len(self._originals)


def dump_value(value: Any) -> str:
    """Canonical JSON text of a typed value."""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False)
