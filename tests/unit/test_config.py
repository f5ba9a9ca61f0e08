"""tether.yaml validation: strict keys, env interpolation, located errors with fixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.config import ConfigProblems, load_config, parse_config
from tether.errors import ConfigError

GOOD = """\
providers:
  openai: {kind: openai, base_url: http://127.0.0.1:9/v1, api_key: "${TEST_KEY}"}
features:
  support:
    prompt: {system: "You help.", template: "{{ message }}"}
    model: openai:gpt-4o-mini
    fallbacks: [local:smollm2]
    timeout_s: 8
    on_failure: {respond: "Sorry."}
"""


def test_valid_config_parses_with_env_and_implicit_local() -> None:
    config = parse_config(GOOD, "t.yaml", {"TEST_KEY": "sk-secret-123"})
    feature = config.features["support"]
    assert feature.chain == ["openai:gpt-4o-mini", "local:smollm2"]
    assert feature.on_failure.respond == "Sorry."
    assert "local" in config.providers
    provider = config.providers["openai"]
    assert provider.kind == "openai"
    assert provider.api_key is not None
    assert provider.api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(config)


def test_missing_env_var_names_line_and_fix() -> None:
    with pytest.raises(ConfigProblems) as info:
        parse_config(GOOD, "t.yaml", {})
    problem = info.value.problems[0]
    assert (problem.line, problem.path) == (2, "providers.openai.api_key")
    assert "TEST_KEY" in problem.message
    assert "export TEST_KEY" in problem.fix


def test_env_default_is_used() -> None:
    text = GOOD.replace("${TEST_KEY}", "${TEST_KEY:-fallback-key}")
    config = parse_config(text, "t.yaml", {})
    provider = config.providers["openai"]
    assert provider.kind == "openai" and provider.api_key is not None
    assert provider.api_key.get_secret_value() == "fallback-key"


def test_feature_without_on_failure_is_rejected_with_reason() -> None:
    text = "features:\n  a:\n    model: local:smollm2\n"
    with pytest.raises(ConfigProblems) as info:
        parse_config(text, "t.yaml", {})
    problem = info.value.problems[0]
    assert problem.path == "features.a.on_failure"
    assert problem.line == 2
    assert "what users get when the model is unavailable" in problem.fix


def test_unknown_key_is_rejected_naming_the_key() -> None:
    text = (
        "features:\n  a:\n    model: local:smollm2\n    timeout: 3\n    on_failure: {respond: x}\n"
    )
    with pytest.raises(ConfigProblems) as info:
        parse_config(text, "t.yaml", {})
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (4, "features.a.timeout")
    assert "did you mean `timeout_s`" in problem.fix


def test_undeclared_provider_points_at_the_reference() -> None:
    text = (
        "features:\n  a:\n    model: local:smollm2\n    fallbacks: [nope:x]\n"
        "    on_failure: {respond: x}\n"
    )
    with pytest.raises(ConfigProblems) as info:
        parse_config(text, "t.yaml", {})
    (problem,) = info.value.problems
    assert problem.path == "features.a.fallbacks.0"
    assert problem.line == 4
    assert "'nope'" in problem.message


def test_bad_model_ref_and_bad_provider_kind() -> None:
    text = (
        "providers:\n  x: {kind: nonsense}\nfeatures:\n  a:\n    model: smollm2\n"
        "    on_failure: {respond: x}\n"
    )
    with pytest.raises(ConfigProblems) as info:
        parse_config(text, "t.yaml", {})
    paths = {p.path: p for p in info.value.problems}
    assert "providers.x" in paths
    assert "local" in paths["providers.x"].fix
    assert "features.a.model" in paths
    assert "provider:model" in paths["features.a.model"].message


def test_on_failure_needs_exactly_one_choice_and_no_loops() -> None:
    both = "features:\n  a:\n    model: local:m\n    on_failure: {respond: x, raise: true}\n"
    with pytest.raises(ConfigProblems, match="exactly one"):
        parse_config(both, "t.yaml", {})
    loop = (
        "features:\n  a:\n    model: local:m\n    on_failure: {feature: b}\n"
        "  b:\n    model: local:m\n    on_failure: {feature: a}\n"
    )
    with pytest.raises(ConfigProblems, match="loop"):
        parse_config(loop, "t.yaml", {})


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "tether.yaml"
    path.write_text("features:\n  a: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not valid YAML" in str(info.value)


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tether init"):
        load_config(tmp_path / "absent.yaml")
