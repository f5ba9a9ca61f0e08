"""``system_prompt_leak``: the output reproduces the system prompt, or contains a canary.

Both texts are reduced to case-folded words; the system prompt's word ``ngram_words``-grams
(shingles) are looked up in the output's. The score is the larger of the share of the prompt's
shingles found (``min_overlap`` fails) and the found count over 12 (a dozen reproduced
shingles, about 16 consecutive words, fails even for a long prompt). Reordering, case and
punctuation changes do not hide a copy; a real paraphrase does (use an LLM judge for that).
A canary (a random marker you put in the system prompt) found verbatim always fails.
"""

from __future__ import annotations

import re

from tether.config.guards import LeakOptions
from tether.guards.base import Finding, GuardContext, Verdict

ABSOLUTE_SHINGLES = 12


class LeakGuard:
    def __init__(self, options: LeakOptions | None = None) -> None:
        self.options = options or LeakOptions()
        self._word = re.compile(r"\w+")
        self._cache: tuple[str, set[tuple[str, ...]]] | None = None

    def _prompt_shingles(self, prompt: str) -> set[tuple[str, ...]]:
        if self._cache is None or self._cache[0] != prompt:
            words = [w.casefold() for w in self._word.findall(prompt)]
            n = min(self.options.ngram_words, max(len(words), 1))
            shingles = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
            self._cache = (prompt, shingles)
        return self._cache[1]

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        lowered = text.casefold()
        for canary in (*self.options.canaries, *ctx.canaries):
            at = lowered.find(canary.casefold())
            if canary and at >= 0:
                finding = Finding("CANARY", at, at + len(canary), canary)
                return Verdict.fail("output contains a canary", findings=(finding,))
        prompt = self.options.system_prompt or ctx.system_prompt
        if not prompt:
            return Verdict.ok()
        return self._overlap(text, prompt)

    def _overlap(self, text: str, prompt: str) -> Verdict:
        shingles = self._prompt_shingles(prompt)
        if not shingles:
            return Verdict.ok()
        n = len(next(iter(shingles)))
        matches = list(self._word.finditer(text))
        words = [m.group().casefold() for m in matches]
        found: set[tuple[str, ...]] = set()
        spans: list[tuple[int, int]] = []
        for i in range(len(words) - n + 1):
            gram = tuple(words[i : i + n])
            if gram in shingles:
                found.add(gram)
                start, end = matches[i].start(), matches[i + n - 1].end()
                if spans and start <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], end)
                else:
                    spans.append((start, end))
        coverage = len(found) / len(shingles)
        score = max(coverage, min(1.0, len(found) / ABSOLUTE_SHINGLES))
        if coverage < self.options.min_overlap and len(found) < ABSOLUTE_SHINGLES:
            return Verdict.ok(score)
        findings = tuple(Finding("SYSTEM_PROMPT", s, e, text[s:e]) for s, e in spans)
        return Verdict.fail(
            f"output reproduces the system prompt ({coverage:.0%} of it)",
            score=score,
            findings=findings,
        )
