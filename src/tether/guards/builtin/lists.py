"""``topics`` (allow list), ``banned`` (deny list) and ``max_length``.

Keywords match case-insensitively on word boundaries (``case_sensitive: true`` to change);
regexes are Python regular expressions. ``topics`` fails when *none* of its entries match,
``banned`` when *any* does. ``max_length`` counts characters, and tokens approximately
(``ceil(chars / 4)``, the usual rule of thumb for English BPE tokenizers).
"""

from __future__ import annotations

import math
import re

from tether.config.guards import ListOptions, MaxLengthOptions
from tether.guards.base import Finding, GuardContext, Verdict


def compile_list(options: ListOptions) -> list[tuple[str, re.Pattern[str]]]:
    flags = 0 if options.case_sensitive else re.IGNORECASE
    out = [(kw, re.compile(rf"(?<!\w){re.escape(kw)}(?!\w)", flags)) for kw in options.keywords]
    out += [(rx, re.compile(rx, flags)) for rx in options.regex]
    return out


class BannedGuard:
    """Fails when any keyword or regex matches; findings are the matches (redactable)."""

    def __init__(self, options: ListOptions) -> None:
        self._entries = compile_list(options)

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        findings = [
            Finding("BANNED", m.start(), m.end(), m.group())
            for _, rx in self._entries
            for m in rx.finditer(text)
            if m.end() > m.start()
        ]
        if not findings:
            return Verdict.ok()
        findings.sort(key=lambda f: f.start)
        return Verdict.fail(
            f"banned content: {', '.join(sorted({f.text for f in findings})[:5])}",
            findings=tuple(findings),
        )


class TopicsGuard:
    """Fails when the text matches none of the allowed keywords or regexes."""

    streaming = "final"  # a stream window may not mention the topic yet: judge the whole text

    def __init__(self, options: ListOptions) -> None:
        self._entries = compile_list(options)

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        for _, rx in self._entries:
            m = rx.search(text)
            if m is not None:
                return Verdict.ok(findings=(Finding("TOPIC", m.start(), m.end(), m.group()),))
        return Verdict.fail("off topic: the text matches none of the allowed topics")


class MaxLengthGuard:
    """Fails above ``max_chars`` characters or about ``max_tokens`` tokens."""

    streaming = "final"  # a stream window is never the whole length: judge the whole text

    def __init__(self, options: MaxLengthOptions) -> None:
        self.max_chars = options.max_chars
        self.max_tokens = options.max_tokens

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        if self.max_chars is not None and len(text) > self.max_chars:
            return Verdict.fail(f"too long: {len(text)} characters > {self.max_chars}")
        tokens = math.ceil(len(text) / 4)
        if self.max_tokens is not None and tokens > self.max_tokens:
            return Verdict.fail(f"too long: about {tokens} tokens > {self.max_tokens}")
        return Verdict.ok()
