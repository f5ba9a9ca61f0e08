"""``prompt_injection``: attack-pattern heuristics plus a small shipped classifier.

The classifier is a logistic regression over binary features of NFKC-normalised, case-folded,
de-leeted text: content words, word bigrams and multilingual attack cue words (``c:ignore``,
``c:secret`` ...; ``qc:ignore`` when the cue sits inside a double-quoted span, i.e. words the
user quotes, to translate or discuss, rather than says); English function words are left out of
unigrams because they encode a source's style, not intent (char n-grams were dropped for the
same reason, measured leaving one source out). Rows are L2-normalised; the weights and a Platt
calibration are package data (``tether/guards/data/injection_model.json``), produced by
``scripts/train_injection.py``. A dense term joins the logit: the mean over the text's WordPieces
of one shipped scalar per piece (static all-MiniLM-L6-v2 embeddings times learnt weights, see
``tether.guards.builtin.wordpiece``). Inference is pure Python: a set of features, a dict lookup
per feature and per (cached) word, a sigmoid. The heuristics are regular expressions for
attack *families* (override the instructions, fake system turns, mode switches and authority
claims, persona jailbreaks and jailbreak-template wording, hypothetical or simulated worlds
where the rules lapse, prompt exfiltration, requests for held secrets or other users' data,
payload splitting, smuggled encoded text, repeated-token floods), each with a weight; they
explain a verdict with spans (the pattern tables live in ``injection_patterns``).
Each regex is gated by cheap substring tests; "it keeps ignoring the instructions" (a report
about a model, not an order to one) does not count as an override.

The verdict's score is ``max(classifier, noisy-or of the heuristics)``; it fails at
``threshold`` (default 0.5). The classifier's calibrated probability is rescaled so that its
operating point (``classifier_threshold``, default 0.8: the best leave-one-source-out mean
balanced accuracy with mean FPR and hard-negative FPR <= 5%, see
``bench/injection_generalization.py``) maps to 0.5. Texts longer than 4 KB are scored in
overlapping windows.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tether.config.guards import InjectionOptions
from tether.guards.base import Finding, GuardContext, Verdict
from tether.guards.builtin.injection_patterns import heuristic_patterns
from tether.guards.builtin.wordpiece import PieceScorer

WINDOW_CHARS = 4096
# A handful of words is too little evidence for n-gram weights learnt mostly from longer texts:
# below FULL_EVIDENCE_WORDS distinct content words (function words do not count) the logit is
# shrunk toward a benign prior (most traffic is benign), so short prompts lean on the heuristics.
# 8 was chosen on the cross-validation of scripts/train_injection.py (6 and 12 did no better).
FULL_EVIDENCE_WORDS = 8
PRIOR_LOGIT = -2.0
WINDOW_OVERLAP = 512
CHAR_NGRAMS: tuple[int, ...] = ()


def normalize(text: str) -> str:
    """NFKC, case-folded, leetspeak undone inside words (``1gn0r3`` -> ``ignore``), digits
    mapped to 0: what both the classifier and training see."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if len(text.translate(_DROP_DIGITS)) != len(text) and _HAS_LEET.search(text) is not None:
        text = _LEET_WORD.sub(_unleet, text)
    return text.translate(_DIGITS)


_DIGITS = str.maketrans("0123456789", "0000000000")
_DROP_DIGITS = str.maketrans("", "", "0123456789")
_LEET = str.maketrans("013457", "oieast")
# a leet digit next to a letter; a word with one is read as leetspeak
_HAS_LEET = re.compile(r"[a-z][013457]|[013457][a-z]")
_LEET_WORD = re.compile(r"\w*(?:[a-z][013457]|[013457][a-z])\w*")


def _unleet(m: re.Match[str]) -> str:
    return m.group().translate(_LEET)


# Attack cue words in several languages, mapped to one feature each (``c:ignore``,
# ``c:secret`` ...), so that weights learnt on English rows carry over to other languages.
# Word stems (matched at the start of a word), whole words, and substrings for scripts written
# without spaces and for multi-word terms.
_CUE_STEM_TEXT = {
    "ignore": "ignor disregard olvid oubli vergiss dimentic esquec esqueç negeer abaikan zignoruj "
    "игнор забуд αγνό",
    "instructions": "instruc instrukt instruks anweisung istruzion consign instructie инструкц "
    "указани talimat polecen οδηγί",
    "previous": "previous prior preceding anterior précédent precedent vorherig vorige "
    "предыдущ sebelumnya önceki poprzedni προηγούμεν",
    "secret": "password passcode passphrase contraseña contrasena passwort kennwort senha "
    "wachtwoord пароль şifre hasło hasła κωδικ",
    "reveal": "reveal disclose leak revela révèle revele verrat rivela скажи покажи назови "
    "sebutkan söyle podaj",
    "system_prompt": "systemprompt systemanweisung",
}
_CUE_WORDS = {"dime": "reveal", "dimmi": "reveal", "πες": "reveal", "haslo": "secret"}
_CUE_WORDS |= {w: "mode" for w in ("mode", "modo", "modus", "режим")}
_CUE_PHRASES = {
    "mot de passe": "secret",
    "kata sandi": "secret",
    "system prompt": "system_prompt",
    "prompt système": "system_prompt",
    "prompt du système": "system_prompt",
    "системный промпт": "system_prompt",
}
_CUE_SUBSTRINGS = {
    "忽略": "ignore",
    "無視": "ignore",
    "무시": "ignore",
    "تجاهل": "ignore",
    "अनदेखा": "ignore",
    "指令": "instructions",
    "指示": "instructions",
    "지시": "instructions",
    "التعليمات": "instructions",
    "निर्देश": "instructions",
    "之前": "previous",
    "以前": "previous",
    "이전": "previous",
    "السابقة": "previous",
    "पिछले": "previous",
    "密码": "secret",
    "密碼": "secret",
    "パスワード": "secret",
    "暗証番号": "secret",
    "비밀번호": "secret",
    "كلمة المرور": "secret",
    "كلمة السر": "secret",
    "पासवर्ड": "secret",
    "告诉": "reveal",
    "教えて": "reveal",
    "알려": "reveal",
    "أخبرني": "reveal",
    "बताओ": "reveal",
    "系统提示": "system_prompt",
    "モード": "mode",
    "模式": "mode",
    "모드": "mode",
}
_STEMS_BY_HEAD: dict[str, list[tuple[str, str]]] = {}
for _cue, _stems in _CUE_STEM_TEXT.items():
    for _stem in _stems.split():
        _STEMS_BY_HEAD.setdefault(_stem[:4], []).append((_stem, _cue))


def cues(normalized: str, words: Iterable[str]) -> set[str]:
    """``c:<cue>`` for each attack cue word in normalised text (``words`` are its words)."""
    found: set[str] = set()
    for w in set(words):
        cue = _CUE_WORDS.get(w)
        if cue is not None:
            found.add(cue)
        for stem, cue in _STEMS_BY_HEAD.get(w[:4], ()):
            if w.startswith(stem):
                found.add(cue)
    for table in (_CUE_PHRASES, _CUE_SUBSTRINGS) if not normalized.isascii() else (_CUE_PHRASES,):
        for text, cue in table.items():
            if text in normalized:
                found.add(cue)
    return {"c:" + c for c in found}


# English function words carry style, not intent: trained on sources that each have one label,
# a classifier learns "you", "the", "were" as attack words and flags every chatty prompt of a
# style it has not seen. They are left out of unigrams and char n-grams (bigrams of two
# function words too); bigrams with one content word keep them ("ignore all", "you are now").
_STOPWORD_TEXT = """a an the and or but if then so of to in on at by for with from as into onto
about than i me my mine we us our ours you your yours he him his she her hers it its they them
their theirs this that these those is am are was were be been being do does did have has had will
would shall should can could may might must not no s t d ll re ve m o just also very too there here
what which who whom whose when where why how all any some each every more most other such only own
same up down out over under again further once"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def featurize(text: str, word_re: re.Pattern[str]) -> set[str]:
    """The classifier's features: ``w:word`` (content words), ``b:word word``, char n-grams
    within content words (``<ign``, ``igno`` ... ``ore>``), ``c:cue`` words and ``qc:cue``
    for cue words found only inside double quotes."""
    norm = normalize(text)
    words = word_re.findall(norm)
    feats = {"w:" + w for w in words if w not in STOPWORDS}
    feats.update(
        "b:" + a + " " + b
        for a, b in itertools.pairwise(words)
        if a not in STOPWORDS or b not in STOPWORDS
    )
    for w in set(words):
        if w in STOPWORDS:
            continue
        padded = "<" + w + ">"
        for n in CHAR_NGRAMS:
            feats.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    quoted = [m.group(1) for m in _QUOTED.finditer(norm)]
    inner = cues(" ".join(quoted), word_re.findall(" ".join(quoted))) if quoted else set()
    feats.update(cues(norm, words) - inner)
    feats.update("q" + c for c in inner)
    return feats


# a double-quoted span (straight, curly or guillemets) of 8 to 400 characters on one line
_QUOTED = re.compile(r"[\"“„«]([^\"”“»\n]{8,400})[\"”»]")


def word_pattern() -> re.Pattern[str]:
    return re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class InjectionModel:
    """Shipped logistic-regression weights. ``calibration`` ``(a, b)`` maps the classifier's
    logit ``z`` to ``sigmoid(a * z + b)``: Platt scaling fitted on predictions for sources the
    classifier never saw (leave one source out), so the probability holds across styles.
    ``pieces``: per-WordPiece scalars whose mean over a text is added to the logit (the dense
    embedding part, see ``tether.guards.builtin.wordpiece``); empty for a sparse-only model."""

    bias: float
    weights: dict[str, float]
    meta: dict[str, Any]
    calibration: tuple[float, float] = (1.0, 0.0)
    pieces: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> InjectionModel:
        if path is None:
            raw = resources.files("tether.guards").joinpath("data/injection_model.json")
            data = json.loads(raw.read_text(encoding="utf-8"))
        else:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        a, b = data.get("calibration", (1.0, 0.0))
        meta = dict(data.get("meta", {}))
        pieces = dict(data.get("pieces", {}))
        return cls(float(data["bias"]), dict(data["weights"]), meta, (float(a), float(b)), pieces)

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

# a base64 run: these characters only, 48 or more of them (checked in code, see _base64_run)
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{48,}={0,2}")
# hex of printable ASCII: every byte's first digit is 2-7, which keeps the scan fast
_HEX_TEXT = re.compile(r"(?<![0-9a-f])(?:[2-7][0-9a-f][ ]?){16,}(?![0-9a-f])")
_TOKEN = re.compile(r"\S+")


def hidden_text(text: str) -> tuple[int, int] | None:
    """The span of a hex run (``48656c6c6f`` or ``48 65 6c``) that decodes to readable ASCII
    words: instructions smuggled past a reader. Hashes and ids decode to binary noise."""
    if len(text) - len(text.translate(_NO_DIGITS)) < 16:
        return None
    for m in _HEX_TEXT.finditer(text):
        raw = bytes.fromhex(m.group().replace(" ", ""))
        printable = sum(1 for b in raw if 32 <= b < 127)
        letters = sum(1 for b in raw if 65 <= b <= 90 or 97 <= b <= 122)
        if printable == len(raw) and letters >= 0.6 * len(raw) and b" " in raw:
            return m.start(), m.end()
    return None


def repeated_run(text: str, *, times: int = 20, max_period: int = 4) -> tuple[int, int] | None:
    """The span of a token or short phrase repeated ``times`` times in a row (a flood that
    pushes the instructions out of the context or makes the model diverge)."""
    words = text.translate(_PUNCT).split()
    for period in range(1, max_period + 1):
        need = (times - 1) * period
        if len(words) <= need:
            break
        same = "".join(
            ["1" if a == b else "0" for a, b in zip(words, words[period:], strict=False)]
        )
        at = same.find("1" * need)
        if at >= 0:
            spans = [m.span() for m in _TOKEN.finditer(text.translate(_PUNCT))]
            return spans[at][0], spans[min(at + need + period, len(spans) - 1)][1]
    return None


_PUNCT = str.maketrans({c: " " for c in ".,;:!?\"'()[]{}"})
_NO_DIGITS = str.maketrans("", "", "0123456789")


class Heuristics:
    """Compiled heuristic patterns; ``scan`` returns findings and a noisy-or score.

    Patterns run case-sensitively on the lower-cased text (much faster than IGNORECASE); when
    lower-casing changes the length (a few non-ASCII letters) the IGNORECASE copies are used so
    spans stay exact. Code checks add smuggled base64 / hex text and repeated-token floods."""

    def __init__(self) -> None:
        specs = heuristic_patterns()
        self.patterns = [
            (p.family, p.weight, re.compile(p.regex.lower(), re.DOTALL), p.gates) for p in specs
        ]
        self._folded = [
            (p.family, p.weight, re.compile(p.regex, re.IGNORECASE | re.DOTALL), p.gates)
            for p in specs
        ]

    def scan(self, text: str) -> tuple[float, list[Finding]]:
        low = text.lower()
        patterns = self.patterns
        if len(low) != len(text):
            low, patterns = text, self._folded
        gate_text = low if patterns is self.patterns else text.lower()
        findings: list[Finding] = []
        best: dict[str, float] = {}

        def hit(family: str, weight: float, start: int, end: int) -> None:
            best[family] = max(best.get(family, 0.0), weight)
            if not any(f.type == family and f.start == start for f in findings):
                findings.append(Finding(family, start, end, text[start:end][:200], weight))

        for family, weight, rx, gates in patterns:
            if gates and not any(map(gate_text.__contains__, gates)):
                continue
            m = rx.search(low)
            if m is not None:
                hit(family, weight, m.start(), m.end())
        for family, weight, span in (
            ("smuggled_payload", 0.55, _base64_run(text)),
            ("smuggled_payload", 0.7, hidden_text(low)),
            ("repeated_token", 0.55, repeated_run(low)),
        ):
            if span is not None:
                hit(family, weight, *span)
        clean = 1.0
        for weight in best.values():
            clean *= 1.0 - weight
        return 1.0 - clean, findings


def _base64_run(text: str) -> tuple[int, int] | None:
    if len(text) < 48:
        return None
    m = _B64_RUN.search(text)
    return None if m is None else (m.start(), m.end())


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
        self._pieces: PieceScorer | None = None

    @property
    def model(self) -> InjectionModel:
        if self._model is None:
            self._model = InjectionModel.load(self.options.model_path)
        return self._model

    def _dense(self, text: str) -> float:
        if not self.model.pieces:
            return 0.0
        if self._pieces is None:
            self._pieces = PieceScorer(self.model.pieces)
        return self._pieces.mean(text)

    def classifier_score(self, text: str) -> float:
        """The classifier's probability of an attack (max over 4 KB windows)."""
        best = 0.0
        for chunk in windows(text):
            feats = featurize(chunk, self._word)
            n_words = sum(1 for f in feats if f.startswith("w:"))
            shrink = min(1.0, n_words / FULL_EVIDENCE_WORDS)
            z = self.model.logit(feats, len(feats)) + self._dense(chunk)
            z = shrink * z + (1.0 - shrink) * PRIOR_LOGIT
            a, b = self.model.calibration
            best = max(best, sigmoid(a * z + b))
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
