"""Text similarity, with promptfoo's meaning: ``rouge-n`` and ``similar``.

``rouge-n`` is what promptfoo computes (js-rouge's ``n`` with its defaults): ROUGE-1, the F1 of
the clipped unigram overlap between the answer and the value, case-sensitive, tokenised the Penn
Treebank way sentence by sentence. It passes when the score is at least ``threshold`` (default
0.75); under ``not-`` when it is below, scoring ``1 - score``. An empty answer fails.

``similar`` (also ``similar:cosine``, ``similar:dot``, ``similar:euclidean``) embeds the value
and the answer through an embedding feature of the tether config (``kind: embedding``): the one
the assert's ``provider`` option names, else the config's only embedding feature. Cosine and dot
pass at ``>= threshold`` (default 0.75) and score the similarity; euclidean passes at a distance
``<= threshold`` and scores ``1 / (1 + distance)``. A list value passes when one item does.
What the embeddings cost is reported with the judge's cost, apart from the feature's.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tether.errors import TetherError
from tether.evals.scorers.base import Factory
from tether.evals.scorers.common import FunctionScorer, Templates, bad, file_value, verdict
from tether.evals.types import (
    Assertion,
    Case,
    JudgeUsage,
    Output,
    Score,
    Scorer,
    ScoringContext,
)

EPSILON = 2.220446049250313e-16  # JavaScript's Number.EPSILON
WORD = r"[\w\u200c\u200d]"
CONTRACTIONS = tuple(
    re.compile(rf"(?<!{WORD}){pattern}(?!{WORD})", re.IGNORECASE)
    for pattern in (
        "(can)(not)",
        "(d)('ye)",
        "(gim)(me)",
        "(gon)(na)",
        "(got)(ta)",
        "(lem)(me)",
        "(more)('n)",
        "(wan)(na)(?= )",
        "('t)(is)",
        "('t)(was)",
    )
)
# js-rouge's sentence segmenter's abbreviations (lower case, without the final dot)
ABBREVIATION_WORDS = """jr mr mrs ms dr prof sr sen corp rep gov atty supt det rev col gen lt
cmdr adm capt sgt cpl maj miss misses mister sir esq mstr phd adj adv asst bldg brig comdr hon
messrs mlle mme op ord pvt reps res sens sfc surg arc al exp rd st dist mt fy pd pl plz tce llb
md bl ma ba lit ex e.g i.e circa ca cca vs v.s etc esp ft b.c a.d jan feb mar apr jun jul aug
sep sept oct nov dec co yahoo joomla jeopardy dept univ assn bros inc ltd ala ariz ark cal calif
colo conn del fed fla fl ga ida ind ia la kan kans ken ky mich minn mont neb nebr nev okla penna
penn pa dak tenn tex ut vt va wash wis wisc wy wyo usafa alta ont que sask yuk ave blvd cl ct
cres hwy u.s u.s.a e.u n° a.m p.m"""
ABBREVIATIONS = frozenset(ABBREVIATION_WORDS.split())
CLOCK = frozenset({"a.m", "p.m"})
SENTENCE_END = re.compile(r"((?<!\.)\.(?!\.)|[!?]+)([\"'”’)\]]*)\s+(?=[^\s(\[])")


def _punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def _quotes(text: str) -> str:
    """Opening double quotes become `````` and closing ones ``''`` (treebank style)."""
    out: list[str] = []
    opened = False
    pos = 0
    for match in re.finditer(r"``|''|\"", text):
        i, quote = match.start(), match.group()
        before = text[i - 1] if i > 0 else ""
        boundary = i == 0 or before.isspace() or _punctuation(before) or before == "<"
        after = text[i + 2] if i + 2 < len(text) else ""
        opened = quote == "``" or (
            (i + len(quote) < len(text) or i == 0 or before.isspace() or before == "<")
            and not opened
            and boundary
            and before not in ".!?"
            and (quote == '"' or (i > 0 and after.isalnum() and "''" in text[i + 2 :]))
        )
        out.append(text[pos:i])
        out.append(" `` " if opened else " '' ")
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def treebank_tokens(text: str) -> list[str]:
    """js-rouge's Penn Treebank tokeniser of one sentence."""
    t = re.sub(r"[\s\u0085]+", " ", text).strip()
    if not t:
        return []
    r = _quotes(t)
    r = r.replace("...", " ... ")
    r = re.sub(r"[:,](?!\d)", r" \g<0> ", r)
    r = re.sub(r"[;@#$%&]", r" \g<0> ", r)
    r = re.sub(r"([^.])(?<!\b[A-Za-z]\.[A-Za-z])(\.)([\])}>'\s]*)\Z", r"\1 \2\3 ", r)
    r = re.sub(r"[?!]", r" \g<0> ", r)
    r = re.sub(r"[\][(){}<>]", r" \g<0> ", r)
    r = r.replace("--", " -- ")
    r = f" {r} "
    r = re.sub(r"([^'])' ", r"\1 ' ", r)
    r = re.sub(r"'([sSmMdD]) ", r" '\1 ", r)
    r = re.sub(r"('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r" \1 ", r)
    for pattern in CONTRACTIONS:
        r = pattern.sub(lambda m: " " + " ".join(g for g in m.groups()) + " ", r)
    r = re.sub(r" {2,}", " ", r).strip(" ")
    return r.split(" ")


def sentences(text: str) -> list[str]:
    """Sentences as js-rouge's segmenter cuts them, near enough: at each line break, and after
    ``.``, ``!`` or ``?`` (not ``..``) followed by a space, except after a known abbreviation
    (``Dr.``, ``e.g.``; ``p.m.`` only before a lower-case word) or a closing quote followed by a
    lower-case word."""
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in SENTENCE_END.finditer(line):
            following = line[match.end()]
            if match.group(2) and following.islower():
                continue
            words = line[start : match.start()].split()
            last = words[-1].lower().lstrip("\"'“‘([") if words else ""
            clock = last in CLOCK and following.isupper()  # "5 p.m. Then": a new sentence
            if match.group(1) == "." and last in ABBREVIATIONS and not clock:
                continue
            out.append(line[start : match.end()])
            start = match.end()
        out.append(line[start:])
    return [s for s in out if s.strip()]


def tokens(text: str) -> list[str]:
    return [token for sentence in sentences(text) for token in treebank_tokens(sentence)]


def rouge_1(candidate: str, reference: str) -> float:
    """ROUGE-1 F1 of ``candidate`` against ``reference`` (js-rouge ``n`` defaults)."""
    got, want = tokens(candidate), tokens(reference)
    if not got or not want:
        return 0.0
    overlap = sum((Counter(got) & Counter(want)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(got), overlap / len(want)
    if precision == recall:
        return precision
    # js-rouge's fMeasure with beta 1, operation for operation (scores meet thresholds alike)
    if precision > recall:
        return min(precision, recall * (2 / (1 + recall / precision)))
    return min(recall, precision * (2 / (1 + precision / recall)))


def _rouge(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = file_value(assertion, ctx)
    if not isinstance(value, str) or not value.strip():
        raise bad(assertion, "needs a string value (the reference text)")
    templates = Templates()
    templates.check(assertion, value)
    threshold = 0.75 if assertion.threshold is None else assertion.threshold
    negated = assertion.negated

    def check(case: Case, output: Output) -> Score:
        reference = templates.render(value, case.vars)
        if not output.text.strip() or not reference.strip():
            empty = "answer" if not output.text.strip() else "reference"
            return verdict(False, f"ROUGE-N cannot score an empty {empty}")
        score = rouge_1(output.text, reference)
        passed = (score >= threshold) != negated
        side = "greater than or equal to" if score >= threshold else "less than"
        reason = f"ROUGE-N score {score:.2f} is {side} threshold {threshold:g}"
        return Score(1.0 - score if negated else score, passed, reason)

    return FunctionScorer(assertion.name, check)


def embedding_feature(assertion: Assertion, ctx: ScoringContext) -> str:
    """The embedding feature ``similar`` uses. Raises DatasetError naming how to configure one."""
    if ctx.tether is None:
        raise bad(assertion, "needs a tether config with an embedding feature (kind: embedding)")
    features = ctx.tether.config.features
    embedding = sorted(name for name, f in features.items() if f.kind == "embedding")
    provider = assertion.options.get("provider")
    if isinstance(provider, dict):
        provider = provider.get("id")
    if provider is not None:
        if provider in embedding:
            return str(provider)
        raise bad(
            assertion,
            f"provider {provider!r} is not an embedding feature of the config; tether embeds "
            f"through its own features: name one of {embedding or '(none declared)'}",
        )
    if len(embedding) == 1:
        return embedding[0]
    if not embedding:
        raise bad(
            assertion,
            "the config declares no embedding feature; add one (features: {embed: {kind: "
            "embedding, model: PROVIDER:MODEL}}) or give the assert provider: FEATURE",
        )
    raise bad(assertion, f"several embedding features ({', '.join(embedding)}): set provider")


def similarity(metric: str, a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise ValueError("vectors of different lengths")
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    if metric == "dot":
        return dot
    if metric == "euclidean":
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


@dataclass(slots=True)
class SimilarScorer:
    """``similar``: the answer's embedding against the value's (each item of a list value)."""

    name: str
    feature: str
    value: Any
    metric: str
    threshold: float
    negated: bool
    templates: Templates
    ctx: ScoringContext
    handles_not: bool = True

    async def score(self, case: Case, output: Output) -> Score:
        rendered = self.templates.render(self.value, case.vars)
        expected = rendered if isinstance(rendered, list) else [rendered]
        if not output.text.strip():
            return verdict(False, "cannot embed an empty answer")
        assert self.ctx.tether is not None  # checked when built
        try:
            result = await self.ctx.tether.embed(self.feature, [output.text, *expected])
        except TetherError as exc:
            return verdict(False, f"embedding feature {self.feature!r} failed: {exc}")
        usage = JudgeUsage(1, 0, result.usage.input_tokens, 0, result.cost_usd)
        answer, *references = result.vectors
        lowest = math.inf
        last: tuple[bool, float, str] = (False, 0.0, "")
        for vector in references:
            last = self._verdict(similarity(self.metric, vector, answer))
            if last[0]:
                break
            lowest = min(lowest, last[1])
        passed, score, reason = last
        if not passed and len(references) > 1:
            score, reason = lowest, "None of the provided values met the similarity threshold"
        return Score(score, passed, reason, judge=usage)

    def _verdict(self, value: float) -> tuple[bool, float, str]:
        t, negated = self.threshold, self.negated
        if self.metric == "euclidean":
            passed = value >= t - EPSILON if negated else value <= t + EPSILON
            score = 1 / (1 + value)
            below = value <= t + EPSILON
            reason = (
                f"Distance {value:.2f} is {'less than or equal to' if below else 'greater than'}"
            )
            return passed, 1 - score if negated else score, f"{reason} threshold {t:g}"
        passed = value <= t + EPSILON if negated else value >= t - EPSILON
        above = value >= t - EPSILON
        reason = f"Similarity {value:.2f} is {'greater than or equal to' if above else 'less than'}"
        return passed, 1 - value if negated else value, f"{reason} threshold {t:g}"


def _similar(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = file_value(assertion, ctx)
    ok = isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    )
    if not ok:
        raise bad(assertion, "needs a string value or a list of strings (the expected texts)")
    metric = assertion.base_type.partition(":")[2] or "cosine"
    templates = Templates()
    templates.check(assertion, value)
    threshold = 0.75 if assertion.threshold is None else assertion.threshold
    feature = embedding_feature(assertion, ctx)
    return SimilarScorer(
        assertion.name, feature, value, metric, threshold, assertion.negated, templates, ctx
    )


FACTORIES: dict[str, Factory] = {
    "rouge-n": _rouge,
    "similar": _similar,
    "similar:cosine": _similar,
    "similar:dot": _similar,
    "similar:euclidean": _similar,
}
