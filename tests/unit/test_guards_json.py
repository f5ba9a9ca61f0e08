from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tether.config.guards import GuardsConfig, JsonSchemaOptions
from tether.errors import ConfigError
from tether.guards.base import GuardContext
from tether.guards.builtin.json_schema import JsonSchemaGuard, extract_json
from tether.guards.runner import GuardRunner

sys.path.insert(0, str(Path(__file__).parent))

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}


def guard(**kw: object) -> JsonSchemaGuard:
    return JsonSchemaGuard(JsonSchemaOptions.model_validate({"schema": SCHEMA, **kw}))


@pytest.mark.parametrize(
    "raw",
    [
        '{"answer": "42", "confidence": 0.9}',
        '```json\n{"answer": "42", "confidence": 0.9}\n```',
        'Sure! Here is the JSON:\n{"answer": "42", "confidence": 0.9}\nHope this helps.',
        'The {braces} in prose come first: {"answer": "42", "confidence": 0.9} done',
    ],
)
def test_repairs_fences_and_prose(raw: str) -> None:
    verdict = guard().check(raw, GuardContext(stage="output"))
    assert verdict.passed
    assert verdict.value == {"answer": "42", "confidence": 0.9}
    if verdict.rewritten is not None:
        assert json.loads(verdict.rewritten) == verdict.value


def test_no_repair_when_disabled() -> None:
    assert not guard(repair=False).check("```json\n{}\n```", GuardContext()).passed
    with pytest.raises(ValueError, match="no JSON value"):
        extract_json("no json at all")


def test_schema_error_names_path_and_reask_message_carries_schema() -> None:
    g = guard()
    verdict = g.check('{"answer": 42, "confidence": 0.5}', GuardContext())
    assert not verdict.passed
    assert verdict.reason == "does not match the schema: at $.answer: 42 is not of type 'string'"
    message = g.reask_message(verdict)
    assert "42 is not of type 'string'" in message and '"required": ["answer"' in message


def test_json_string_value_is_a_value_not_an_error() -> None:
    g = JsonSchemaGuard(JsonSchemaOptions.model_validate({"schema": {"type": "string"}}))
    verdict = g.check('"hello"', GuardContext())
    assert verdict.passed and verdict.value == "hello"


def test_pydantic_model_gives_a_typed_result() -> None:
    from test_guards_plugins import Answer

    g = JsonSchemaGuard(JsonSchemaOptions(model="test_guards_plugins:Answer"))
    verdict = g.check('```\n{"answer": "yes", "confidence": "0.7"}\n```', GuardContext())
    assert verdict.passed and isinstance(verdict.value, Answer)
    assert verdict.value.confidence == 0.7
    bad = g.check('{"answer": "yes"}', GuardContext())
    assert not bad.passed and "at $.confidence: Field required" in bad.reason


def test_bad_schema_and_bad_model_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="invalid schema"):
        JsonSchemaGuard(JsonSchemaOptions.model_validate({"schema": {"type": "nope"}}))
    with pytest.raises(ConfigError, match="not a pydantic model"):
        JsonSchemaGuard(JsonSchemaOptions(model="test_guards_plugins:reply"))


@pytest.mark.parametrize(
    "raw",
    [
        '{"answer": "ok", "confidence": 1}',
        'prefix {"answer": "ok", "confidence": 1} suffix',
        '{"answer": "ok", "confidence": 1',
        '{"answer": "ok"}',
        "",
        "null",
        '[{"answer": "ok", "confidence": 1}]',
        '{"answer": "<EMAIL_1>", "confidence": 1}',
        '```json\n{"answer": "ok", "confidence": 1, "extra": true}\n```',
    ],
)
def test_runner_never_passes_invalid_json(raw: str) -> None:
    runner = GuardRunner(
        GuardsConfig.model_validate(
            {"input": ["pii"], "output": [{"json_schema": {"schema": SCHEMA}}]}
        )
    )
    ctx = GuardContext()
    runner.check_input('my mail is "a"@b.io, a@b.io', ctx)
    out = runner.check_output(raw, ctx)
    if out.decision == "pass":
        parsed = json.loads(out.text)
        assert parsed == out.value and set(parsed) == {"answer", "confidence"}
        assert "<EMAIL_1>" not in out.text
    else:
        assert out.decision == "reask" and out.reask_message
