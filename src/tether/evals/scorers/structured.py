"""JSON and number scorers: promptfoo's ``is-json`` and ``contains-json``, and tether's own
``json_schema``, ``json_field``, ``numeric`` and ``exact``.

==================  =====================================================================
``is-json``         the whole answer is JSON (``JSON.parse``); with a value (a JSON schema:
                    mapping, YAML/JSON text or ``file://``) it also matches the schema
``contains-json``   the answer holds a JSON object somewhere (promptfoo's extraction: each ``{``
                    scanned to its balancing ``}``); with a schema, one of them matches it
``json_schema``     the answer is JSON matching the schema in ``value`` (mapping or ``file://``)
``json_field``      a field of the JSON answer: ``{path: "a.b[0]", equals: X}`` or ``{path,
                    approx: X, tolerance: T}`` (default tolerance 1e-6)
``numeric``         the answer is a number (or holds exactly one) within ``tolerance`` (an
                    option, default 1e-6) of ``value``, else of the case's ``expected``
``exact``           the answer equals the case's ``expected`` (surrounding whitespace ignored;
                    a mapping or list ``expected`` compares as JSON)
==================  =====================================================================

Schemas follow JSON Schema draft 7 unless they name another ``$schema`` (promptfoo's Ajv
default); an invalid schema fails when the scorer is built. ``not-`` on ``is-json`` and
``contains-json`` keeps promptfoo's rules (the schema is not checked on the inverted side).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from tether.evals.scorers.base import Factory
from tether.evals.scorers.common import (
    FunctionScorer,
    bad,
    file_value,
    js_string,
    json_loads,
    outcome,
    verdict,
)
from tether.evals.types import Assertion, Case, Output, Score, Scorer, ScoringContext

Validate = Callable[[Any], str | None]  # a JSON value -> None when valid, else the problem
NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def schema_validator(assertion: Assertion, schema: Any) -> Validate:
    """A validator of ``schema`` (draft 7 by default). Raises DatasetError when it is invalid."""
    import jsonschema

    if isinstance(schema, str):
        import yaml

        try:
            schema = yaml.safe_load(schema)
        except yaml.YAMLError as exc:
            raise bad(assertion, f"the schema is not valid YAML/JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise bad(assertion, "the schema must be a mapping (a JSON Schema), YAML text or file://")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise bad(assertion, f"invalid JSON schema: {exc.message}") from None
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def validate(value: Any) -> str | None:
        errors = list(validator.iter_errors(value))
        if not errors:
            return None
        best = jsonschema.exceptions.best_match(errors)
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in best.path)
        return f"at ${path}: {best.message}"

    return validate


def _optional_schema(assertion: Assertion, ctx: ScoringContext) -> Validate | None:
    value = file_value(assertion, ctx)
    return None if value in (None, "") else schema_validator(assertion, value)


def _is_json(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    validate = _optional_schema(assertion, ctx)
    negated = assertion.negated

    def check(case: Case, output: Output) -> Score:
        parsed = None
        try:
            parsed = json_loads(output.text)
            passed = not negated
        except ValueError:
            passed = negated
        if passed and validate is not None:
            # promptfoo checks the schema on the passing side, under not- too (where the answer
            # is not JSON: a schema that needs a value fails it)
            problem = validate(parsed)
            if problem is not None:
                return verdict(False, f"JSON does not conform to the provided schema: {problem}")
        return verdict(passed, "" if passed else "Expected output to be valid JSON")

    return FunctionScorer(assertion.name, check)


def _uncomment(text: str) -> str:
    """``//`` comments outside double-quoted strings (and not in ``://``) become ``#``."""
    lines = []
    for line in text.split("\n"):
        quoted = False
        for i, char in enumerate(line):
            if char == '"' and (i == 0 or line[i - 1] != "\\"):
                quoted = not quoted
            elif not quoted and line.startswith("//", i) and not line[:i].endswith(":"):
                line = line[:i] + "#" + line[i + 2 :]
                break
        lines.append(line)
    return "\n".join(lines)


def _parse_object(text: str) -> dict[str, Any] | None:
    try:
        value = json_loads(text)
    except ValueError:
        import yaml

        try:
            value = yaml.safe_load(_uncomment(text))
        except yaml.YAMLError:
            return None
    return value if isinstance(value, dict) else None


def json_objects(text: str, max_length: int = 100_000) -> Iterator[dict[str, Any]]:
    """The JSON objects in ``text``, as promptfoo's ``extractJsonObjects`` finds them."""
    i = 0
    while i < len(text):
        if text[i] != "{":
            i += 1
            continue
        opened, closed, j = 1, 0, i + 1
        found = False
        while j < min(i + max_length, len(text)) and opened > closed:
            opened += text[j] == "{"
            closed += text[j] == "}"
            j += 1
            if opened == closed or j == len(text) or j == i + max_length:
                value = _parse_object(text[i:j] + "}" * (opened - closed))
                if value is not None:
                    yield value
                    found = True
                    break
                if opened == closed:
                    break
        i = j if found else i + 1


def _contains_json(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    validate = _optional_schema(assertion, ctx)
    negated = assertion.negated

    def check(case: Case, output: Output) -> Score:
        objects = list(json_objects(output.text))
        passed = not objects if negated else bool(objects)
        reason = "Expected output to contain valid JSON"
        if validate is not None:
            for obj in objects:  # promptfoo: with a schema, one matching object decides
                problem = validate(obj)
                passed = problem is None
                if passed:
                    break
                reason = f"JSON does not conform to the provided schema: {problem}"
        return verdict(passed, "" if passed else reason)

    return FunctionScorer(assertion.name, check)


def _answer_json(output: Output) -> tuple[Any, str | None]:
    """The answer parsed as JSON, or (None, why not)."""
    try:
        return json_loads(output.text), None
    except ValueError as exc:
        return None, f"the answer is not JSON ({exc})"


def _json_schema(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = file_value(assertion, ctx)
    if value in (None, ""):
        raise bad(assertion, "needs a JSON schema as its value (a mapping or file://schema.json)")
    validate = schema_validator(assertion, value)

    def check(case: Case, output: Output) -> Score:
        parsed, problem = _answer_json(output)
        if problem is None:
            problem = validate(parsed)
        return outcome(assertion, problem is None, f"match the schema ({problem})")

    return FunctionScorer(assertion.name, check)


PATH_PART = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]")


def parse_path(assertion: Assertion, path: Any) -> list[str | int]:
    """``a.b[0].c`` (an optional leading ``$``) as keys and indexes."""
    if not isinstance(path, str) or not path.strip():
        raise bad(assertion, "needs value.path, e.g. {path: 'answer.items[0]', equals: 3}")
    text = path.strip().removeprefix("$")
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = PATH_PART.match(text, pos)
        if match is None:
            raise bad(assertion, f"path {path!r}: cannot read it at {text[pos:]!r}; write a.b[0]")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return parts


def _walk(value: Any, parts: list[str | int]) -> tuple[Any, bool]:
    for part in parts:
        indexed = (
            isinstance(part, int) and isinstance(value, list) and -len(value) <= part < len(value)
        )
        keyed = isinstance(part, str) and isinstance(value, dict) and part in value
        if not (indexed or keyed):
            return None, False
        value = value[part]
    return value, True


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        found = NUMBER.findall(value.strip())
        if len(found) == 1:
            return float(found[0].replace(",", ""))
    return None


def _tolerance(assertion: Assertion, raw: Any) -> float:
    tolerance = 1e-6 if raw is None else _number(raw)
    if tolerance is None or tolerance < 0 or math.isnan(tolerance):
        raise bad(assertion, f"tolerance must be a number >= 0, not {raw!r}")
    return tolerance


def _json_field(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    spec = assertion.value
    if not isinstance(spec, dict) or ("equals" in spec) == ("approx" in spec):
        raise bad(
            assertion, "value is {path: a.b, equals: X} or {path: a.b, approx: X, tolerance: T}"
        )
    unknown = sorted(set(spec) - {"path", "equals", "approx", "tolerance"})
    if unknown:
        raise bad(assertion, f"unknown key {unknown[0]!r}; keys: path, equals, approx, tolerance")
    parts = parse_path(assertion, spec.get("path"))
    approx = "approx" in spec
    target = _number(spec["approx"]) if approx else spec["equals"]
    if approx and target is None:
        raise bad(assertion, f"approx must be a number, not {spec['approx']!r}")
    tolerance = _tolerance(assertion, spec.get("tolerance"))
    shown = (
        f"{spec['path']} ≈ {target} ± {tolerance:g}" if approx else f"{spec['path']} == {target!r}"
    )

    def check(case: Case, output: Output) -> Score:
        parsed, problem = _answer_json(output)
        if problem is not None:
            return outcome(assertion, False, f"have {shown}, but {problem}")
        got, found = _walk(parsed, parts)
        if not found:
            return outcome(assertion, False, f"have {shown}, but the answer has no {spec['path']}")
        if approx:
            number = _number(got)
            holds = number is not None and target is not None and abs(number - target) <= tolerance
        else:
            holds = (got == target and type(got) is type(target)) or _both_numbers(got, target)
        return outcome(assertion, holds, f"have {shown}, got {got!r}")

    return FunctionScorer(assertion.name, check)


def _both_numbers(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _numeric(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    fixed = None if assertion.value is None else _number(assertion.value)
    if assertion.value is not None and fixed is None:
        raise bad(assertion, f"value must be a number, not {assertion.value!r}")
    tolerance = _tolerance(assertion, assertion.options.get("tolerance"))

    def check(case: Case, output: Output) -> Score:
        target = fixed if fixed is not None else _number(case.expected)
        if target is None:
            return verdict(
                False,
                "no number to compare with: give the assert a value or the "
                f"case a numeric expected (it has {case.expected!r})",
            )
        got = _number(output.text)
        if got is None:
            return outcome(assertion, False, f"be a number within {tolerance:g} of {target:g}")
        holds = abs(got - target) <= tolerance
        return outcome(assertion, holds, f"be within {tolerance:g} of {target:g}, got {got:g}")

    return FunctionScorer(assertion.name, check)


def _exact(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    def check(case: Case, output: Output) -> Score:
        expected = case.expected
        if expected is None:
            return verdict(False, "the case has no expected answer to compare with")
        if isinstance(expected, (dict, list)):
            parsed, problem = _answer_json(output)
            holds = problem is None and parsed == expected
            return outcome(assertion, holds, f"equal {json.dumps(expected, ensure_ascii=False)}")
        want = js_string(expected).strip()
        return outcome(assertion, output.text.strip() == want, f'equal "{want}"')

    return FunctionScorer(assertion.name, check)


FACTORIES: dict[str, Factory] = {
    "is-json": _is_json,
    "contains-json": _contains_json,
    "json_schema": _json_schema,
    "json_field": _json_field,
    "numeric": _numeric,
    "exact": _exact,
}
