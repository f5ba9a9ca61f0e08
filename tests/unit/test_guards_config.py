from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.config.guards import GuardsConfig, GuardSpec


def test_bare_names_and_one_key_mappings() -> None:
    cfg = GuardsConfig.model_validate(
        {
            "input": ["pii", {"prompt_injection": {"threshold": 0.8, "action": "block"}}],
            "output": [
                {"json_schema": {"schema": {"type": "object"}, "action": "reask", "max_reasks": 2}},
                "system_prompt_leak",
            ],
        }
    )
    pii, inj = cfg.input
    assert (pii.name, pii.effective_action) == ("pii", "redact")
    assert (inj.threshold, inj.effective_action) == (0.8, "block")
    js, leak = cfg.output
    assert js.options == {"schema": {"type": "object"}} and js.max_reasks == 2
    assert leak.effective_action == "block"


def test_defaults_are_empty() -> None:
    cfg = GuardsConfig()
    assert cfg.empty and cfg.input == [] and cfg.output == []


def test_alias_and_explicit_name() -> None:
    assert GuardSpec.model_validate("pii_redact").effective_action == "redact"
    spec = GuardSpec.model_validate({"name": "banned", "keywords": ["x"], "sample": 0.5})
    assert spec.options == {"keywords": ["x"]} and spec.sample == 0.5


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"pii": {"entitties": []}}, "entitties"),
        ({"pii": {"entities": ["SHOE_SIZE"]}}, "unknown pii entity"),
        ({"prompt_injection": {"threshold": 2}}, "threshold"),
        ({"json_schema": {}}, "exactly one of"),
        ({"banned": {"regex": ["("]}}, "invalid regex"),
        ({"max_length": {}}, "max_chars"),
        ({"pii": {"action": "explode"}}, "action"),
        ({"pii": "redact"}, "must be a mapping"),
        ("not a guard!", "not a built-in"),
    ],
)
def test_errors_name_the_problem(raw: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GuardSpec.model_validate(raw)


def test_reask_only_on_output() -> None:
    with pytest.raises(ValidationError, match="only applies to output"):
        GuardsConfig.model_validate({"input": [{"pii": {"action": "reask"}}]})


def test_custom_guard_keeps_free_options() -> None:
    spec = GuardSpec.model_validate({"mypkg.guards:tone": {"max_rudeness": 3, "action": "log"}})
    assert spec.options == {"max_rudeness": 3} and spec.label == "tone"
