"""The scorer registry and every scorer type on real parts: promptfoo's asserts with promptfoo's
meaning (pass, score, ``not-``, thresholds, templates), tether's own scorers, a guard as a
scorer, python asserts (inline and file://), custom scorers (module:function and an entry point
of a real distribution on sys.path), ``similar`` through a scripted embedding feature, and the
errors a bad assert raises when it is built."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tether import Tether
from tether.config.models import TetherConfig
from tether.errors import DatasetError
from tether.evals.scorers.registry import (
    assertion_of,
    assertions,
    build_scorer,
    known_types,
    parse_scorer,
)
from tether.evals.scorers.text_similarity import rouge_1, sentences
from tether.evals.types import Assertion, Case, Output, Score, ScoringContext, combine


async def run(
    spec: dict[str, Any] | Assertion,
    text: str,
    *,
    vars: dict[str, Any] | None = None,
    expected: Any = None,
    ctx: ScoringContext | None = None,
    **output: Any,
) -> Score:
    assertion = spec if isinstance(spec, Assertion) else assertion_of(spec)
    scorer = build_scorer(assertion, ctx or ScoringContext())
    case = Case(index=0, id="c0", vars=vars or {}, expected=expected, asserts=(assertion,))
    return await scorer.score(case, Output(text=text, **output))


# (assert, answer, vars, passed, score): promptfoo 0.120's results for the same assert
TABLE: list[tuple[dict[str, Any], str, dict[str, Any], bool, float]] = [
    ({"type": "contains", "value": "Paris"}, "It is Paris.", {}, True, 1),
    ({"type": "contains", "value": "paris"}, "It is Paris.", {}, False, 0),
    ({"type": "contains", "value": 42}, "the answer is 42", {}, True, 1),
    ({"type": "contains", "value": "{{city}}"}, "It is Lyon.", {"city": "Lyon"}, True, 1),
    ({"type": "contains", "value": "{{city}}"}, "It is Lyon.", {"city": "Nice"}, False, 0),
    ({"type": "not-contains", "value": "Paris"}, "It is Lyon.", {}, True, 1),
    ({"type": "not-contains", "value": "Paris"}, "It is Paris.", {}, False, 0),
    ({"type": "icontains", "value": "PARIS"}, "it is paris", {}, True, 1),
    ({"type": "not-icontains", "value": "PARIS"}, "it is paris", {}, False, 0),
    ({"type": "contains-any", "value": ["x", "Paris"]}, "Paris", {}, True, 1),
    ({"type": "contains-any", "value": 'a, "Par, is", z'}, "Par, is", {}, True, 1),
    ({"type": "contains-any", "value": "Par, is"}, "Par, is", {}, True, 1),
    ({"type": "contains-any", "value": "x,y"}, "Paris", {}, False, 0),
    ({"type": "not-contains-any", "value": "x,y"}, "Paris", {}, True, 1),
    ({"type": "contains-all", "value": "Par, is"}, "Paris", {}, True, 1),
    ({"type": "contains-all", "value": ["Par", "xyz"]}, "Paris", {}, False, 0),
    ({"type": "icontains-any", "value": "LYON,PARIS"}, "paris", {}, True, 1),
    ({"type": "icontains-all", "value": ["PAR", "IS"]}, "paris", {}, True, 1),
    ({"type": "icontains-all", "value": ["PAR", "XX"]}, "paris", {}, False, 0),
    ({"type": "not-icontains-all", "value": ["PAR", "XX"]}, "paris", {}, True, 1),
    ({"type": "starts-with", "value": "Yes"}, "Yes, it is", {}, True, 1),
    ({"type": "starts-with", "value": "yes"}, "Yes, it is", {}, False, 0),
    ({"type": "not-starts-with", "value": "No"}, "Yes", {}, True, 1),
    ({"type": "equals", "value": "Paris"}, "Paris", {}, True, 1),
    ({"type": "equals", "value": "Paris"}, "Paris ", {}, False, 0),
    ({"type": "equals", "value": 42}, "42", {}, True, 1),
    ({"type": "equals", "value": True}, "true", {}, True, 1),
    ({"type": "equals", "value": "{{x}}"}, "7", {"x": 7}, True, 1),
    (
        {"type": "equals", "value": "{{x}}|{{y}}|{{z}}"},
        "true|1,2|",
        {"x": True, "y": [1, 2]},
        True,
        1,
    ),
    ({"type": "equals", "value": {"a": 1}}, '{"a": 1.0}', {}, True, 1),
    ({"type": "equals", "value": {"a": 1}}, '{"a": true}', {}, False, 0),
    ({"type": "not-equals", "value": {"a": 1}}, '{"a": 2}', {}, True, 1),
    ({"type": "not-equals", "value": {"a": 1}}, "not json", {}, False, 0),  # promptfoo's rule
    ({"type": "regex", "value": r"^\d{3}$"}, "123", {}, True, 1),
    ({"type": "regex", "value": r"^\d{3}$"}, "1234", {}, False, 0),
    ({"type": "regex", "value": "c$"}, "abc\n", {}, False, 0),  # JS: $ is the end only
    ({"type": "regex", "value": r"(?<word>\w+) \k<word>"}, "go go", {}, True, 1),
    ({"type": "not-regex", "value": "cat"}, "dog", {}, True, 1),
    ({"type": "regex", "value": r"\d"}, "١٢", {}, False, 0),  # JS: \d is ASCII
    ({"type": "regex", "value": r"^\w+$"}, "café", {}, False, 0),  # and so is \w
    ({"type": "regex", "value": r"a\sb"}, "a b", {}, True, 1),  # \s is Unicode
    ({"type": "is-json"}, '{"a": [1, 2]}', {}, True, 1),
    ({"type": "is-json"}, "42", {}, True, 1),
    ({"type": "is-json"}, "NaN", {}, False, 0),
    ({"type": "is-json"}, "{'a': 1}", {}, False, 0),
    ({"type": "not-is-json"}, "plain", {}, True, 1),
    ({"type": "is-json", "value": {"type": "object", "required": ["a"]}}, '{"a":1}', {}, True, 1),
    ({"type": "is-json", "value": {"type": "object", "required": ["a"]}}, '{"b":1}', {}, False, 0),
    ({"type": "is-json", "value": "type: array"}, "[1]", {}, True, 1),  # YAML text schema
    ({"type": "not-is-json", "value": {"type": "array"}}, "prose", {}, False, 0),  # promptfoo's
    ({"type": "contains-json"}, 'Sure: {"a": {"b": 2}} done', {}, True, 1),
    ({"type": "contains-json"}, 'Answer: {"a": 1', {}, True, 1),  # closed for it
    ({"type": "contains-json"}, "Sure: {a: [1]}", {}, True, 1),  # read as YAML, like js-yaml
    ({"type": "contains-json"}, "Sure: {not: [closed", {}, False, 0),
    ({"type": "contains-json"}, "no braces here", {}, False, 0),
    ({"type": "not-contains-json"}, "no braces here", {}, True, 1),
    ({"type": "contains-json", "value": {"required": ["b"]}}, 'x {"a":1} {"b":2}', {}, True, 1),
    ({"type": "contains-json", "value": {"required": ["c"]}}, 'x {"a":1} {"b":2}', {}, False, 0),
    ({"type": "contains-json", "value": {"required": ["b"]}}, '{"a": {"b": 2}}', {}, False, 0),
    ({"type": "levenshtein", "value": "hello world"}, "hello wrld", {}, True, 1),
    ({"type": "levenshtein", "value": "hello world"}, "goodbye", {}, False, 0),
    ({"type": "levenshtein", "value": "abc", "threshold": 0}, "abd", {}, False, 0),
    ({"type": "levenshtein", "value": "{{w}}", "threshold": 1}, "abd", {"w": "abc"}, True, 1),
    (
        {"type": "rouge-n", "value": "The cat sat on the mat."},
        "The cat sat on the mat.",
        {},
        True,
        1,
    ),
    ({"type": "rouge-n", "value": "The cat sat."}, "A dog ran away quickly.", {}, False, 0.2),
    ({"type": "rouge-n", "value": "a b c d", "threshold": 0.5}, "a b x y", {}, True, 0.5),
    ({"type": "not-rouge-n", "value": "a b c d", "threshold": 0.9}, "a b x y", {}, True, 0.5),
    ({"type": "not-rouge-n", "value": "a b c d"}, "a b c d", {}, False, 0),
    ({"type": "rouge-n", "value": "anything"}, "   ", {}, False, 0),
    ({"type": "json_schema", "value": {"type": "integer"}}, "3", {}, True, 1),
    ({"type": "json_schema", "value": {"type": "integer"}}, '"3"', {}, False, 0),
    ({"type": "not-json_schema", "value": {"type": "integer"}}, "oops", {}, True, 1),
    (
        {"type": "json_field", "value": {"path": "a.b[1]", "equals": "y"}},
        '{"a":{"b":["x","y"]}}',
        {},
        True,
        1,
    ),
    ({"type": "json_field", "value": {"path": "$.a", "equals": 1}}, '{"a": 1.0}', {}, True, 1),
    ({"type": "json_field", "value": {"path": "a", "equals": 1}}, '{"a": true}', {}, False, 0),
    ({"type": "json_field", "value": {"path": "a.z", "equals": 1}}, '{"a": {}}', {}, False, 0),
    (
        {"type": "json_field", "value": {"path": "p", "approx": 3.14, "tolerance": 0.01}},
        '{"p": 3.1416}',
        {},
        True,
        1,
    ),
    (
        {"type": "json_field", "value": {"path": "p", "approx": 3, "tolerance": 0.01}},
        '{"p": 3.1}',
        {},
        False,
        0,
    ),
    ({"type": "numeric", "value": 12.5}, " 12.5\n", {}, True, 1),
    ({"type": "numeric", "value": 1000, "tolerance": 1}, "It costs 1,000.4 dollars", {}, True, 1),
    ({"type": "numeric", "value": 10}, "between 9 and 11", {}, False, 0),  # two numbers: which?
    ({"type": "numeric", "value": 10, "tolerance": 0.5}, "11", {}, False, 0),
    ({"type": "not-numeric", "value": 10, "tolerance": 0.5}, "11", {}, True, 1),
    ({"type": "not-json_field", "value": {"path": "a", "equals": 1}}, '{"a": 2}', {}, True, 1),
    ({"type": "not-exact"}, "Lyon", {}, False, 0),  # no expected: fails either way
]


@pytest.mark.parametrize(("spec", "text", "vars", "passed", "value"), TABLE)
async def test_promptfoo_and_tether_types(
    spec: dict[str, Any], text: str, vars: dict[str, Any], passed: bool, value: float
) -> None:
    score = await run(spec, text, vars=vars)
    assert (score.passed, round(score.value, 6)) == (passed, value), score.reason
    assert score.name == spec["type"]
    assert score.reason  # a verdict always says why


async def test_failure_reasons_say_what_was_expected() -> None:
    assert (await run({"type": "contains", "value": "x"}, "y")).reason == (
        'Expected output to contain "x"'
    )
    assert (await run({"type": "not-contains", "value": "y"}, "y")).reason == (
        'Expected output to not contain "y"'
    )
    missing = await run({"type": "contains-all", "value": "a,b,c"}, "a")
    assert missing.reason.endswith("Missing: [b, c]")
    schema = await run({"type": "is-json", "value": {"type": "array"}}, "{}")
    assert "JSON does not conform to the provided schema" in schema.reason


@pytest.mark.parametrize(
    ("spec", "cost", "latency", "passed"),
    [
        ({"type": "cost", "threshold": 0.01}, 0.005, 0.0, True),
        ({"type": "cost", "threshold": 0.01}, 0.02, 0.0, False),
        ({"type": "latency", "threshold": 500}, 0.0, 499.0, True),
        ({"type": "latency", "threshold": 500}, 0.0, 501.0, False),
    ],
)
async def test_cost_and_latency_thresholds_are_maxima(
    spec: dict[str, Any], cost: float, latency: float, passed: bool
) -> None:
    score = await run(spec, "x", cost_usd=cost, latency_ms=latency)
    assert score.passed is passed


async def test_numeric_and_exact_use_the_cases_expected() -> None:
    assert (await run({"type": "numeric"}, "41.9", expected=42)).passed is False
    near = assertion_of({"type": "numeric", "tolerance": 0.2})
    assert (await run(near, "41.9", expected="42")).passed
    assert not (await run({"type": "numeric"}, "4", expected=None)).passed
    assert (await run({"type": "exact"}, " Paris\n", expected="Paris")).passed
    assert not (await run({"type": "exact"}, "Lyon", expected="Paris")).passed
    assert (await run({"type": "exact"}, '{"a": [1]}', expected={"a": [1]})).passed
    no_expected = await run({"type": "exact"}, "Paris")
    assert not no_expected.passed and "no expected" in no_expected.reason


async def test_weight_metric_and_threshold_apply_uniformly() -> None:
    named = await run({"type": "contains", "value": "x", "metric": "mentions-x"}, "x")
    assert named.name == "mentions-x"
    ignored = await run({"type": "contains", "value": "x", "weight": 0}, "y")
    assert ignored.passed and ignored.value == 0 and ignored.weight == 0  # promptfoo: weight 0
    heavy = await run({"type": "contains", "value": "x", "weight": 3}, "x")
    light = await run({"type": "contains", "value": "z", "weight": 1}, "x")
    assert combine([heavy, light]) == (False, 0.75)
    assert combine([heavy, ignored]) == (True, 1.0)


# ------------------------------------------------------------------------------- python asserts


@pytest.mark.parametrize(
    ("spec", "text", "passed", "value"),
    [
        ({"type": "python", "value": "len(output) < 5"}, "abc", True, 1),
        ({"type": "python", "value": "len(output) < 5"}, "abcdef", False, 0),
        ({"type": "python", "value": "context['vars']['city'] in output"}, "in Lyon", True, 1),
        ({"type": "python", "value": "'{{city}}' in output"}, "in Lyon", True, 1),
        ({"type": "python", "value": "0.4"}, "x", True, 0.4),  # no threshold: > 0 passes
        ({"type": "python", "value": "0.4", "threshold": 0.5}, "x", False, 0.4),
        ({"type": "python", "value": "0"}, "x", False, 0),
        ({"type": "python", "value": "'true'"}, "x", True, 1),
        (
            {
                "type": "python",
                "value": "words = output.split()\nreturn {'pass': len(words) == 2, "
                "'score': 0.5, 'reason': 'two words'}",
            },
            "two words",
            True,
            0.5,
        ),
        (
            {
                "type": "python",
                "value": "{'pass_': True, 'score': 0.3, 'reason': 'ok'}",
                "threshold": 0.5,
            },
            "x",
            False,
            0.3,
        ),
        ({"type": "python", "value": "None"}, "x", False, 0),
        ({"type": "python", "value": "{'pass': True, 'score': 1}"}, "x", False, 0),  # no reason
        ({"type": "python", "value": "1 / 0"}, "x", False, 0),
    ],
)
async def test_python_asserts_follow_promptfoos_contract(
    spec: dict[str, Any], text: str, passed: bool, value: float
) -> None:
    score = await run(spec, text, vars={"city": "Lyon"})
    assert (score.passed, round(score.value, 6)) == (passed, value), score.reason


async def test_python_file_asserts_and_their_errors(tmp_path: Path) -> None:
    (tmp_path / "checks.py").write_text(
        textwrap.dedent(
            """
            def get_assert(output, context):
                return output.upper() == output

            async def polite(output, context):
                return {"pass": "please" in output, "score": 0.9, "reason": "asked nicely"}
            """
        )
    )
    ctx = ScoringContext(base_dir=tmp_path)
    assert (await run({"type": "python", "value": "file://checks.py"}, "LOUD", ctx=ctx)).passed
    polite = await run({"type": "python", "value": "file://checks.py:polite"}, "please", ctx=ctx)
    assert (polite.passed, polite.value, polite.reason) == (True, 0.9, "asked nicely")
    failed = await run({"type": "python", "value": "1 / 0"}, "x")
    assert "Python code execution failed" in failed.reason and "division" in failed.reason
    with pytest.raises(DatasetError, match="no function 'missing'"):
        build_scorer(Assertion("python", "file://checks.py:missing"), ctx)
    with pytest.raises(DatasetError, match="no file"):
        build_scorer(Assertion("python", "file://nowhere.py"), ctx)
    with pytest.raises(DatasetError, match="does not compile"):
        build_scorer(Assertion("python", "len(output"), ctx)


# ---------------------------------------------------------------------- guard and custom scorers


async def test_a_guard_as_a_scorer() -> None:
    no_pii = {"type": "guard", "value": "pii_detect", "metric": "no-pii"}
    leaked = await run(no_pii, "Write to jane.doe@example.com for a refund.")
    assert not leaked.passed and "EMAIL_ADDRESS" in leaked.reason and leaked.name == "no-pii"
    assert (await run(no_pii, "Your refund is on its way.")).passed
    banned = {"type": "guard", "value": {"banned": {"keywords": ["refund"]}}}
    assert not (await run(banned, "a refund")).passed
    inverted = await run({"type": "not-guard", "value": "pii"}, "mail a@b.example.com")
    assert inverted.passed and inverted.reason.startswith("failed, as not- expects (personal")
    clean = await run({"type": "not-guard", "value": "pii"}, "no data")
    assert not clean.passed and clean.value == 0 and "where not- expects a failure" in clean.reason
    with pytest.raises(DatasetError, match="guard"):
        build_scorer(Assertion("guard", "no_such_guard"), ScoringContext())


def length_scorer(case: Case, output: Output, limit: int = 10) -> bool:
    return len(output.text) <= limit


async def graded(case: Case, output: Output) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"score": 0.8, "reason": f"graded row {case.index}"}


class Echo:
    def __init__(self, word: str) -> None:
        self.word = word

    async def score(self, case: Case, output: Output) -> Score:
        return Score(1.0, self.word in output.text, "echo")


def broken(case: Case, output: Output) -> float:
    raise RuntimeError("scorer bug")


async def test_custom_scorers_module_function_and_class() -> None:
    short = parse_scorer("tests.unit.test_eval_scorers:length_scorer")
    assert short == Assertion("custom", "tests.unit.test_eval_scorers:length_scorer")
    assert (await run(short, "short")).passed
    assert not (await run(short, "much longer than ten")).passed
    limit = {"type": "custom", "value": "tests.unit.test_eval_scorers:length_scorer", "limit": 30}
    assert (await run(limit, "much longer than ten")).passed
    grade = await run({"type": "custom", "value": "tests.unit.test_eval_scorers:graded"}, "x")
    assert (grade.passed, grade.value, grade.reason) == (True, 0.8, "graded row 0")
    echo = {"type": "custom", "value": "tests.unit.test_eval_scorers:Echo", "word": "hi"}
    assert (await run(echo, "hi there")).passed
    assert (await run({**echo, "type": "not-custom"}, "bye")).passed
    oops = await run({"type": "custom", "value": "tests.unit.test_eval_scorers:broken"}, "x")
    assert not oops.passed and "scorer bug" in oops.reason
    with pytest.raises(DatasetError, match="cannot import"):
        build_scorer(Assertion("custom", "tests.unit.test_eval_scorers:nope"), ScoringContext())


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real installed distribution (a dist-info folder on sys.path) whose entry point of
    group tether.scorers names ``length_scorer`` as the type ``short-answer``."""
    info = tmp_path / "tether_scorer_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tether-scorer-plugin\n")
    (info / "entry_points.txt").write_text(
        "[tether.scorers]\nshort-answer = tests.unit.test_eval_scorers:length_scorer\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "short-answer"


async def test_entry_point_scorers_are_types(plugin: str) -> None:
    assert plugin in known_types()
    assert parse_scorer(f"{plugin}") == Assertion(plugin)
    assert (await run({"type": plugin}, "tiny")).passed
    assert not (await run({"type": plugin, "limit": 2}, "tiny")).passed  # options are kwargs


# ------------------------------------------------------------------------------------ similar


@pytest.fixture
async def embedder() -> AsyncIterator[Tether]:
    config = TetherConfig.model_validate(
        {
            "providers": {"up": {"kind": "scripted"}},
            "features": {
                "vec": {"kind": "embedding", "model": "up:vec", "on_failure": {"raise": True}}
            },
        }
    )
    tether = Tether(config)
    yield tether
    await tether.aclose()


async def test_similar_embeds_through_the_configs_embedding_feature(embedder: Tether) -> None:
    ctx = ScoringContext(tether=embedder)
    same = await run({"type": "similar", "value": "{{a}}"}, "Paris", vars={"a": "Paris"}, ctx=ctx)
    assert same.passed and same.value == pytest.approx(1.0)
    assert same.judge is not None and same.judge.calls == 1  # reported apart from the feature
    other = await run({"type": "similar", "value": "Lyon", "threshold": 0.99}, "Paris", ctx=ctx)
    assert not other.passed and other.value < 0.99 and "less than threshold" in other.reason
    inverse = await run({"type": "not-similar", "value": "Paris"}, "Paris", ctx=ctx)
    assert not inverse.passed and inverse.value == pytest.approx(0.0, abs=1e-9)
    listed = await run({"type": "similar", "value": ["Lyon", "Paris"]}, "Paris", ctx=ctx)
    assert listed.passed
    euclid = await run(
        {"type": "similar:euclidean", "value": "Paris", "threshold": 0.1}, "Paris", ctx=ctx
    )
    assert euclid.passed and euclid.value == pytest.approx(1.0)
    named = assertion_of({"type": "similar", "value": "x", "provider": "vec"})
    assert (await run(named, "x", ctx=ctx)).passed


async def test_similar_without_an_embedding_feature_says_how_to_add_one(embedder: Tether) -> None:
    with pytest.raises(DatasetError, match=r"not an embedding feature.*vec"):
        build_scorer(
            assertion_of({"type": "similar", "value": "x", "provider": "openai:embeddings"}),
            ScoringContext(tether=embedder),
        )
    with pytest.raises(DatasetError, match="kind: embedding"):
        build_scorer(Assertion("similar", "x"), ScoringContext())


# ------------------------------------------------------------------------ registry and parsing


def test_known_types_cover_the_issue() -> None:
    promptfoo = {
        "equals", "contains", "icontains", "contains-any", "contains-all", "icontains-any",
        "icontains-all", "starts-with", "regex", "is-json", "contains-json", "levenshtein",
        "rouge-n", "similar", "cost", "latency", "python",
    }  # fmt: skip
    tether = {"json_schema", "json_field", "numeric", "exact", "guard", "custom"}
    assert promptfoo | tether <= known_types()
    assert not any(t.startswith("not-") for t in known_types())


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"type": "javascript", "value": "output.length"}, "unsupported assert type 'javascript'"),
        ({"type": "contians", "value": "x"}, "did you mean 'contains'"),
        ({"type": "regex", "value": "(unclosed"}, "does not compile"),
        ({"type": "regex"}, "needs a string value"),
        ({"type": "contains"}, "needs a string or number value"),
        ({"type": "contains-any", "value": 3}, "list value"),
        ({"type": "is-json", "value": {"type": "nonsense"}}, "invalid JSON schema"),
        ({"type": "json_schema"}, "needs a JSON schema"),
        ({"type": "json_field", "value": {"path": "a"}}, "equals: X"),
        ({"type": "json_field", "value": {"path": "a[", "equals": 1}}, "cannot read it"),
        ({"type": "numeric", "value": "many"}, "must be a number"),
        ({"type": "cost"}, "needs a threshold"),
        ({"type": "not-levenshtein", "value": "x"}, "ignores 'not-'"),
        ({"type": "not-python", "value": "True"}, "ignores 'not-'"),
        ({"type": "not-llm-rubric", "value": "Is polite"}, "ignores 'not-'"),
        ({"type": "equals", "value": "{{ x"}, "does not parse"),
        ({"type": "equals", "value": "x", "transform": "output.trim()"}, "`transform`"),
        ({"type": "contains", "value": "file://missing.txt"}, "cannot read"),
    ],
)
def test_bad_asserts_fail_when_built(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        build_scorer(assertion_of(spec), ScoringContext())


def test_a_scorer_module_not_written_yet_offers_no_types(monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.evals.scorers import registry

    before = known_types()
    monkeypatch.setattr(registry, "MODULES", (*registry.MODULES, "not_written_yet"))
    assert known_types() == before


def test_unknown_types_list_the_known_ones() -> None:
    with pytest.raises(DatasetError) as err:
        build_scorer(Assertion("bleu", "x"), ScoringContext())
    assert "contains-json" in str(err.value) and "module:function" in str(err.value)


async def test_file_values_are_read_relative_to_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text("type: object\nrequired: [answer]\n")
    (tmp_path / "expected.txt").write_text("Paris\n")
    ctx = ScoringContext(base_dir=tmp_path)
    schema = {"type": "is-json", "value": "file://schema.yaml"}
    assert (await run(schema, '{"answer": 1}', ctx=ctx)).passed
    assert not (await run(schema, '{"other": 1}', ctx=ctx)).passed
    assert (await run({"type": "equals", "value": "file://expected.txt"}, "Paris", ctx=ctx)).passed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("contains:paris", Assertion("contains", "paris")),
        ("llm-rubric:Is polite: and brief", Assertion("llm-rubric", "Is polite: and brief")),
        ("is-json", Assertion("is-json")),
        ("not-icontains:sorry", Assertion("not-icontains", "sorry")),
        (r"regex:^\d+:\d+$", Assertion("regex", r"^\d+:\d+$")),
        ("pkg.module:fn", Assertion("custom", "pkg.module:fn")),
    ],
)
def test_parse_scorer(text: str, expected: Assertion) -> None:
    assert parse_scorer(text) == expected


def test_parse_scorer_rejects_what_it_cannot_name() -> None:
    with pytest.raises(DatasetError, match="unsupported assert type 'nonsense'"):
        parse_scorer("nonsense:x")
    with pytest.raises(DatasetError, match="NAME or NAME:ARG"):
        parse_scorer(":x")


def test_config_scorer_lists() -> None:
    got = assertions(["is-json", {"type": "icontains", "value": "x", "weight": 2, "provider": "p"}])
    assert got == [
        Assertion("is-json"),
        Assertion("icontains", "x", weight=2.0, options={"provider": "p"}),
    ]
    with pytest.raises(DatasetError, match="needs a 'type'"):
        assertions([{"value": "x"}])
    with pytest.raises(DatasetError, match="must be numbers"):
        assertions([{"type": "contains", "value": "x", "threshold": "high"}])


def test_rouge_matches_js_rouge() -> None:
    # js-rouge 3.2.3 (promptfoo 0.120's) rouge.n(candidate, reference) on the same pairs
    pairs = [
        ("The capital of France is Paris.", "Paris is the capital of France.", 0.8571428571428571),
        ("Paris is nice. It is big.", "Paris is nice. it is big", 0.8),
        ("I can't believe it's not butter!", "I cannot believe it's butter", 0.75),
        ('He said "hello" to me.', '"Hello," he said.', 0.5333333333333333),
        ("Mr. Jones isn't here (he left).", "Mr. Jones is not here; he left.", 0.7368421052631579),
        ("The price is $3.50, not $4.", "It costs $3.50.", 0.39999999999999997),
        ("Paris", "Paris is the capital city of France right now", 0.19999999999999996),
    ]  # fmt: skip
    for candidate, reference, expected in pairs:
        assert rouge_1(candidate, reference) == expected, (candidate, reference)
    assert sentences("Dr. Smith left. then he came back") == [
        "Dr. Smith left. ",
        "then he came back",
    ]
