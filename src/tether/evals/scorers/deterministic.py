"""promptfoo's deterministic text asserts, with promptfoo's meaning (0.120):

==================  =====================================================================
``equals``          the answer is ``String(value)``; a mapping or list value: the answer parsed as
                    JSON deep-equals it (an answer that is not JSON fails, also under ``not-``)
``contains``        the answer contains the value (a string or a number); ``icontains``: ignoring
                    case
``contains-any``    it contains one of the values (a list, or a comma-separated string where
                    ``"a, b"`` in quotes is one value); ``icontains-any`` ignoring case
``contains-all``    it contains every value (list, or comma-separated); ``icontains-all``
``starts-with``     it starts with the value (a string)
``regex``           the value (a JavaScript-style pattern) matches somewhere in it
``levenshtein``     its edit distance to the value is at most ``threshold`` (default 5)
``cost``            the call cost at most ``threshold`` USD
``latency``         the call took at most ``threshold`` ms
==================  =====================================================================

String values are templates: ``{{ var }}`` renders with the case's vars. Every check scores 1 or
0. A value the type cannot use (a missing value, a regex that does not compile) fails when the
scorer is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tether.evals.scorers.base import Factory
from tether.evals.scorers.common import (
    FunctionScorer,
    Templates,
    bad,
    file_value,
    js_string,
    json_loads,
    outcome,
    require_threshold,
    verdict,
)
from tether.evals.types import Assertion, Case, Output, Score, Scorer, ScoringContext

ANY_SPLIT = re.compile(r'(".*?"|[^,]+)(?=\s*,|\s*\Z)')


def _scalar(assertion: Assertion, value: Any, *, numbers: bool = True) -> None:
    kinds: tuple[type, ...] = (str, int, float) if numbers else (str,)
    if isinstance(value, bool) or not isinstance(value, kinds) or value in ("", 0):
        what = "a string or number" if numbers else "a string"
        raise bad(assertion, f"needs {what} value, e.g. {{type: {assertion.base_type}, value: x}}")


def _list_value(assertion: Assertion, value: Any) -> None:
    if not value or not isinstance(value, (str, list)):
        raise bad(assertion, "needs a list value (or a comma-separated string)")


def _as_list(value: Any, *, quoted: bool) -> list[str]:
    """promptfoo's list of a ``*-any`` / ``*-all`` value (``quoted``: contains-any's CSV)."""
    if isinstance(value, str):
        if quoted:
            return [v.strip().removeprefix('"').removesuffix('"') for v in ANY_SPLIT.findall(value)]
        return [v.strip() for v in value.split(",")]
    return [js_string(v) for v in value]


def _contains(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    fold = assertion.base_type.startswith("i")
    value = file_value(assertion, ctx)
    _scalar(assertion, value)
    templates = Templates()
    templates.check(assertion, value)

    def check(case: Case, output: Output) -> Score:
        needle = js_string(templates.render(value, case.vars))
        text = output.text
        if fold:
            needle, text = needle.lower(), text.lower()
        return outcome(assertion, needle in text, f'contain "{needle}"')

    return FunctionScorer(assertion.name, check)


def _contains_many(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    base = assertion.base_type
    fold = base.startswith("i")
    every = base.endswith("-all")
    value = file_value(assertion, ctx)
    _list_value(assertion, value)
    templates = Templates()
    templates.check(assertion, value)
    quoted = base == "contains-any"

    def check(case: Case, output: Output) -> Score:
        needles = _as_list(templates.render(value, case.vars), quoted=quoted)
        text = output.text.lower() if fold else output.text
        hits = [(n.lower() if fold else n) in text for n in needles]
        if every:
            missing = [n for n, hit in zip(needles, hits, strict=True) if not hit]
            listed = f"contain all of [{', '.join(needles)}]. Missing: [{', '.join(missing)}]"
            return outcome(assertion, not missing, listed)
        return outcome(assertion, any(hits), f'contain one of "{", ".join(needles)}"')

    return FunctionScorer(assertion.name, check)


def _equals(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = file_value(assertion, ctx)
    if value is None:
        raise bad(assertion, "needs a value (the exact answer expected)")
    templates = Templates()
    templates.check(assertion, value)
    structured = isinstance(value, (dict, list))
    negated = assertion.negated

    def check(case: Case, output: Output) -> Score:
        expected = templates.render(value, case.vars) if not structured else value
        if structured:
            try:
                same = _deep_equal(json_loads(output.text), expected)
                passed = same != negated
            except ValueError:
                passed = False  # promptfoo: an answer that is not JSON fails, under not- too
            shown = js_json(expected)
        else:
            shown = js_string(expected)
            passed = (shown == output.text) != negated
        negation = "not " if negated else ""
        why = f'Expected output "{output.text}" to {negation}equal "{shown}"'
        return verdict(passed, "" if passed else why)

    return FunctionScorer(assertion.name, check)


def js_json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _deep_equal(a: Any, b: Any) -> bool:
    """Node's ``isDeepStrictEqual`` on JSON values (1 and 1.0 are equal, True and 1 are not)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _starts_with(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = file_value(assertion, ctx)
    _scalar(assertion, value, numbers=False)
    templates = Templates()
    templates.check(assertion, value)

    def check(case: Case, output: Output) -> Score:
        prefix = templates.render(value, case.vars)
        return outcome(assertion, output.text.startswith(prefix), f'start with "{prefix}"')

    return FunctionScorer(assertion.name, check)


JS_SPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def _js_spaces(pattern: str) -> str:
    """JavaScript's ``\\s`` (Unicode spaces, while the pattern is otherwise ASCII) spelled out."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i + 1]
            if escape == "s":
                out.append(JS_SPACE if in_class else f"[{JS_SPACE}]")
            elif escape == "S" and not in_class:
                out.append(f"[^{JS_SPACE}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        in_class = (char == "[") or (in_class and char != "]")
        out.append(char)
        i += 1
    return "".join(out)


def js_regex(pattern: str) -> re.Pattern[str]:
    """A JavaScript pattern (no flags) as a Python one: named groups ``(?<n>...)`` and their
    references ``\\k<n>`` become ``(?P<n>...)`` and ``(?P=n)``, ``$`` means the end of the
    text only; ``\\d``, ``\\w``, ``\\b`` are ASCII and ``\\s`` Unicode, as in JavaScript.
    Raises re.error."""
    pattern = re.sub(r"\(\?<(?![=!])", "(?P<", pattern)
    pattern = re.sub(r"(?<!\\)\\k<(\w+)>", r"(?P=\1)", pattern)
    pattern = re.sub(r"(?<!\\)\$(?=\)|\||$)", r"\\Z", pattern)
    return re.compile(_js_spaces(pattern), re.ASCII)


def _regex(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = file_value(assertion, ctx)
    _scalar(assertion, value, numbers=False)
    templates = Templates()
    templates.check(assertion, value)
    compiled: re.Pattern[str] | None = None
    if not templates.has(value):
        try:
            compiled = js_regex(value)
        except re.error as exc:
            raise bad(assertion, f"the pattern {value!r} does not compile: {exc}") from exc

    def check(case: Case, output: Output) -> Score:
        pattern = templates.render(value, case.vars)
        try:
            regex = compiled or js_regex(pattern)
        except re.error as exc:
            return verdict(False, f"Invalid regex pattern: {exc}")
        found = regex.search(output.text) is not None
        return outcome(assertion, found, f'match regex "{pattern}"')

    return FunctionScorer(assertion.name, check)


def _levenshtein(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = file_value(assertion, ctx)
    _scalar(assertion, value, numbers=False)
    templates = Templates()
    templates.check(assertion, value)
    threshold = 5.0 if assertion.threshold is None else assertion.threshold

    def check(case: Case, output: Output) -> Score:
        from rapidfuzz.distance import Levenshtein

        distance = Levenshtein.distance(output.text, templates.render(value, case.vars))
        passed = distance <= threshold
        why = f"Levenshtein distance {distance} is greater than threshold {threshold:g}"
        return verdict(passed, "" if passed else why)

    return FunctionScorer(assertion.name, check)


def _limit(what: str, unit: str, get: Callable[[Output], float]) -> Factory:
    def factory(assertion: Assertion, ctx: ScoringContext) -> Scorer:
        limit = require_threshold(assertion, f"the maximum {what} in {unit}")

        def check(case: Case, output: Output) -> Score:
            got = get(output)
            passed = got <= limit
            why = f"{what.capitalize()} {got:.2g} is greater than threshold {limit:g} {unit}"
            return verdict(passed, "" if passed else why)

        return FunctionScorer(assertion.name, check)

    return factory


FACTORIES: dict[str, Factory] = {
    "equals": _equals,
    "contains": _contains,
    "icontains": _contains,
    "contains-any": _contains_many,
    "contains-all": _contains_many,
    "icontains-any": _contains_many,
    "icontains-all": _contains_many,
    "starts-with": _starts_with,
    "regex": _regex,
    "levenshtein": _levenshtein,
    "cost": _limit("cost", "USD", lambda o: o.cost_usd),
    "latency": _limit("latency", "ms", lambda o: o.latency_ms),
}
