"""``secrets``: credentials pasted into prompts or leaking out of outputs.

Provider-specific key formats (they carry fixed prefixes, so they are precise), JWTs, private key
blocks (a block still open at the end of the text is a finding too: half a key is a leak), and
``password = "..."``-style assignments of random-looking strings.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from tether.config.guards import SecretsOptions
from tether.guards.base import Finding, GuardContext, Verdict
from tether.guards.builtin.pii import resolve_overlaps


def known_patterns() -> dict[str, str]:
    """Secret type -> regex. Prefixes are the providers' documented ones."""
    return {
        "PRIVATE_KEY": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
        "AWS_ACCESS_KEY": r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
        "GITHUB_TOKEN": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b",
        "OPENAI_API_KEY": r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}\b",
        "ANTHROPIC_API_KEY": r"\bsk-ant-[A-Za-z0-9_-]{20,}\b",
        "SLACK_TOKEN": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
        "SLACK_WEBHOOK": r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}",
        "STRIPE_KEY": r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b",
        "GOOGLE_API_KEY": r"\bAIza[0-9A-Za-z_-]{35}\b",
        "GITLAB_TOKEN": r"\bglpat-[A-Za-z0-9_-]{20,}\b",
        "HUGGINGFACE_TOKEN": r"\bhf_[A-Za-z0-9]{30,}\b",
        "NPM_TOKEN": r"\bnpm_[A-Za-z0-9]{36}\b",
        "SENDGRID_KEY": r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\b",
        "TWILIO_KEY": r"\bSK[0-9a-fA-F]{32}\b",
        "JWT": r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        "URL_CREDENTIALS": r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:[^\s:/@]{3,}@[^\s/]+",
    }


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


class SecretsGuard:
    """Fails when a credential is present; findings drive redaction."""

    def __init__(self, options: SecretsOptions | None = None) -> None:
        options = options or SecretsOptions()
        patterns = {**known_patterns(), **options.patterns}
        self._patterns = [(name, re.compile(rx, re.DOTALL)) for name, rx in patterns.items()]
        self._assign = (
            re.compile(
                r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|token|access[_-]?key|"
                r"client[_-]?secret|auth)\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})"
            )
            if options.generic_assignments
            else None
        )

    def find(self, text: str) -> list[Finding]:
        found = []
        for name, rx in self._patterns:
            for m in rx.finditer(text):
                found.append(Finding(name, m.start(), m.end(), m.group(), 0.95))
        if self._assign is not None:
            for m in self._assign.finditer(text):
                value = m.group(1)
                if entropy(value) >= 3.0 and any(c.isdigit() for c in value):
                    found.append(Finding("GENERIC_SECRET", m.start(1), m.end(1), value, 0.7))
        return resolve_overlaps(found)

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        findings = self.find(text)
        if not findings:
            return Verdict.ok()
        kinds = sorted({f.type for f in findings})
        return Verdict.fail(
            f"credentials found: {', '.join(kinds)}",
            score=max(f.score for f in findings),
            findings=tuple(findings),
        )
