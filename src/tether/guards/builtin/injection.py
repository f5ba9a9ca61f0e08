"""``prompt_injection``: attack-pattern heuristics plus a small shipped classifier.

The classifier is a logistic regression over binary word uni/bigrams and character 4-grams,
L2-normalised; its weights are package data (``tether/guards/data/injection_model.json``),
produced by ``scripts/train_injection.py``. Inference is pure Python: a set of n-grams, a dict
lookup per n-gram, a sigmoid. The heuristics are regular expressions for attack *families*
(override the instructions, fake system turns, persona jailbreaks, prompt exfiltration,
smuggled payloads), each with a weight; they explain a verdict with spans.

The verdict's score is ``max(classifier, noisy-or of the heuristics)``; it fails at
``threshold`` (default 0.5). The classifier's probability is rescaled so that its operating
point (``classifier_threshold``, default 0.8: chosen on the by-source cross-validation, where
lower points traded a few more detected attacks for many more false alarms on benign styles
the classifier had not seen) maps to 0.5. Texts longer than 4 KB are scored in overlapping
windows.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tether.guards.base import Finding, GuardContext, Verdict
from tether.guards.config import InjectionOptions

WINDOW_CHARS = 4096
# A handful of words is too little evidence for n-gram weights learnt mostly from longer texts:
# below FULL_EVIDENCE_WORDS words the logit is shrunk toward a benign prior (most traffic is
# benign), so short prompts are judged mostly by the heuristics.
FULL_EVIDENCE_WORDS = 12
PRIOR_LOGIT = -2.0
WINDOW_OVERLAP = 512
CHAR_NGRAMS = (4,)


def normalize(text: str) -> str:
    """NFKC, case-folded, digits mapped to 0: what both the classifier and training see."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.translate(_DIGITS)


_DIGITS = str.maketrans("0123456789", "0000000000")


def featurize(text: str, word_re: re.Pattern[str]) -> set[str]:
    """The classifier's features: ``w:word``, ``b:word word`` and char n-grams of the words."""
    words = word_re.findall(normalize(text))
    feats = {"w:" + w for w in words}
    feats.update("b:" + a + " " + b for a, b in itertools.pairwise(words))
    padded = " " + " ".join(words) + " "
    for n in CHAR_NGRAMS:
        feats.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return feats


def word_pattern() -> re.Pattern[str]:
    return re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class InjectionModel:
    """Shipped logistic-regression weights."""

    bias: float
    weights: dict[str, float]
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path | None = None) -> InjectionModel:
        if path is None:
            raw = resources.files("tether.guards").joinpath("data/injection_model.json")
            data = json.loads(raw.read_text(encoding="utf-8"))
        else:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(float(data["bias"]), dict(data["weights"]), dict(data.get("meta", {})))

    def logit(self, feats: Iterable[str], n_feats: int) -> float:
        weights = self.weights
        total = sum(weights.get(f, 0.0) for f in feats)
        return self.bias + total / math.sqrt(max(n_feats, 1))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# --------------------------------------------------------------------------- heuristics

_Q = r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|all|any|"
_Q += r"your|system|developer|safety|following)"
_OBJ = r"(?:instructions?|prompts?|rules|directives?|directions|guidelines|commands|context|"
_OBJ += r"programming|constraints|restrictions|guardrails|polic(?:y|ies)|training|orders|"
_OBJ += r"tasks?|messages?|text)"
_VERB = r"(?:ignore|ignoring|disregard|forget|neglect|discard|abandon|override|overwrite|"
_VERB += r"pay no attention to|do not follow|don'?t follow|stop following|skip)"


def heuristic_patterns() -> list[tuple[str, float, str]]:
    """(family, weight, regex): attack patterns, not dataset rows. The regexes are applied to
    lower-cased text, so they avoid upper-case escapes (``\\W``, ``\\S``)."""
    return [
        (
            "override_instructions",
            0.95,
            rf"\b{_VERB}\b(?:[^\w]+\w+){{0,3}}?[^\w]+{_Q}\b(?:[^\w]+\w+){{0,3}}?[^\w]+{_OBJ}\b",
        ),
        ("override_instructions", 0.45, r"\bforget (?:about )?(?:everything|all of that|that)\b"),
        (
            "override_instructions",
            0.9,
            r"\b(?:ignor\w*|olvid\w*|vergiss\w*|oubli\w*|dimentic\w*|esque[cç]\w*)\b.{0,40}?"
            r"\b(?:instruc\w*|instrukt\w*|anweisung\w*|istruzion\w*|consign\w*|indicaz\w*|"
            r"vorgab\w*|regl\w*|regel\w*|regol\w*)",
        ),
        (
            "override_instructions",
            0.9,
            r"(?:이전|위의?).{0,6}지시|以前の指示|之前的指令|忽略|"
            r"игнорир\w*|забудь\w*",
        ),
        (
            "new_instructions",
            0.75,
            r"\b(?:new|updated|revised|real|actual|true|secret|hidden)\s+"
            r"(?:instructions?|task|directive|rules|system prompt|objective)\s*(?:is|are|:|-)",
        ),
        ("new_instructions", 0.6, r"\bfrom now on\b.{0,40}\byou\b"),
        (
            "fake_system_turn",
            0.85,
            r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?inst\]|<<sys>>|"
            r"(?:^|\n)\s*#{2,}\s*(?:system|instruction|new instructions?)\b|"
            r"(?:^|\n)\s*(?:system|assistant)\s*:\s|\[(?:system|admin)(?: message)?\]",
        ),
        (
            "mode_switch",
            0.8,
            r"\b(?:developer|dev|debug|god|sudo|admin|maintenance|unrestricted|jailbreak|dan)\s+"
            r"mode\b|\bdo anything now\b|\bjailbr(?:eak|oken)\b",
        ),
        (
            "persona_jailbreak",
            0.75,
            r"\b(?:no longer|not) (?:bound|restricted|limited) by\b|"
            r"\b(?:broken|break) free of\b|\bdoes not have to (?:abide|follow|comply)\b|"
            r"\b(?:without|free (?:of|from)|no) (?:any )?(?:ethical|moral|content) "
            r"(?:guidelines|restrictions|limitations|filters|constraints|polic(?:y|ies))\b|"
            r"\b(?:openai|anthropic|content) polic(?:y|ies)\b",
        ),
        (
            "prompt_exfiltration",
            0.85,
            r"\b(?:reveal|show|print|repeat|output|display|tell|give|share|leak|disclose|"
            r"spell|write out|what(?:'s| is| are| was| were))\b(?:[^\w]+\w+){0,4}?[^\w]+"
            r"(?:(?:your|the|my|this) (?:system|initial|original|hidden|secret|confidential) "
            r"(?:prompt|instructions|message|rules)|(?:the )?(?:text|words|instructions) "
            r"(?:above|before this)|everything (?:above|before))\b",
        ),
        (
            "secret_request",
            0.6,
            r"\b(?:reveal|tell|give|share|send|print|provide|spell|what(?:'s| is))\b"
            r"(?:[^\w]+\w+){0,4}?[^\w]+(?:your|the|our|its) "
            r"(?:password|passcode|secret (?:key|code|word)|api key|credentials|access code)\b",
        ),
        (
            "smuggled_payload",
            0.55,
            r"(?:\b[01]{8}\b\s*){12,}|(?<![a-z0-9+/])[A-Za-z0-9+/]{48,}={0,2}|(?:\\x[0-9a-f]{2}){12,}",
        ),
        ("repeated_token", 0.55, r"(\b[^\s]{1,40}\b)(?:[^\w]{1,3}\1\b){19,}"),
    ]


class Heuristics:
    """Compiled heuristic patterns; ``scan`` returns findings and a noisy-or score.

    Patterns run case-sensitively on the lower-cased text (much faster than IGNORECASE); when
    lower-casing changes the length (a few non-ASCII letters) the IGNORECASE copies are used so
    spans stay exact."""

    def __init__(self) -> None:
        specs = heuristic_patterns()
        self.patterns = [(f, w, re.compile(rx.lower(), re.DOTALL)) for f, w, rx in specs]
        self._folded = [(f, w, re.compile(rx, re.IGNORECASE | re.DOTALL)) for f, w, rx in specs]

    def scan(self, text: str) -> tuple[float, list[Finding]]:
        low = text.lower()
        patterns = self.patterns
        if len(low) != len(text):
            low, patterns = text, self._folded
        findings: list[Finding] = []
        best: dict[str, float] = {}
        for family, weight, rx in patterns:
            m = rx.search(low)
            if m is None:
                continue
            best[family] = max(best.get(family, 0.0), weight)
            if any(f.type == family and f.start == m.start() for f in findings):
                continue
            findings.append(
                Finding(family, m.start(), m.end(), text[m.start() : m.end()][:200], weight)
            )
        clean = 1.0
        for weight in best.values():
            clean *= 1.0 - weight
        return 1.0 - clean, findings


# --------------------------------------------------------------------------- the guard


class InjectionGuard:
    """Scores text for prompt injection / jailbreak; fails at ``threshold``."""

    def __init__(
        self,
        options: InjectionOptions | None = None,
        threshold: float = 0.5,
        *,
        model: InjectionModel | None = None,
    ) -> None:
        self.options = options or InjectionOptions()
        self.threshold = threshold
        self._model = model
        self._heuristics = Heuristics() if self.options.heuristics else None
        self._word = word_pattern()

    @property
    def model(self) -> InjectionModel:
        if self._model is None:
            self._model = InjectionModel.load(self.options.model_path)
        return self._model

    def classifier_score(self, text: str) -> float:
        """The classifier's probability of an attack (max over 4 KB windows)."""
        best = 0.0
        for chunk in windows(text):
            feats = featurize(chunk, self._word)
            n_words = sum(1 for f in feats if f.startswith("w:"))
            shrink = min(1.0, n_words / FULL_EVIDENCE_WORDS)
            logit = self.model.logit(feats, len(feats))
            best = max(best, sigmoid(shrink * logit + (1.0 - shrink) * PRIOR_LOGIT))
        return best

    def score(self, text: str) -> tuple[float, list[Finding]]:
        findings: list[Finding] = []
        heuristic = 0.0
        if self._heuristics is not None:
            heuristic, findings = self._heuristics.scan(text)
        classifier = 0.0
        if self.options.classifier:
            classifier = rescale(self.classifier_score(text), self.options.classifier_threshold)
        return max(heuristic, classifier), findings

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        score, findings = self.score(text)
        if score < self.threshold:
            return Verdict.ok(score)
        families = sorted({f.type for f in findings})
        why = f" ({', '.join(families)})" if families else " (classifier)"
        return Verdict.fail(
            f"looks like a prompt injection{why}, score {score:.2f} >= {self.threshold}",
            score=score,
            findings=tuple(findings),
        )


def rescale(p: float, operating_point: float) -> float:
    """Map a probability piecewise-linearly so ``operating_point`` lands on 0.5."""
    if p < operating_point:
        return 0.5 * p / operating_point
    return 0.5 + 0.5 * (p - operating_point) / (1.0 - operating_point)


def windows(text: str) -> Iterable[str]:
    if len(text) <= WINDOW_CHARS:
        yield text
        return
    step = WINDOW_CHARS - WINDOW_OVERLAP
    for start in range(0, len(text) - WINDOW_OVERLAP, step):
        yield text[start : start + WINDOW_CHARS]
