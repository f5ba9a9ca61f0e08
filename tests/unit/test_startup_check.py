"""What start-up builds (guards, templates) fails when the config is loaded, at FILE:LINE, with
a close match for a misspelt name: the compile step `tether check`, `tether serve` and
``Tether.from_config`` share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import Tether
from tether.config import ConfigProblems, parse_config
from tether.errors import ConfigError
from tether.guards.base import GuardContext, Verdict
from tether.settings import Settings

NO_ENV = Settings.load({})


def keyword_guard(text: str, ctx: GuardContext, *, keywords: list[str]) -> Verdict:
    """A custom guard taking one option."""
    return Verdict.fail("keyword") if any(k in text for k in keywords) else Verdict.ok()


class LengthGuard:
    def __init__(self, max_chars: int = 10) -> None:
        self.max_chars = max_chars

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        return Verdict.ok() if len(text) <= self.max_chars else Verdict.fail("long")


TEMPLATE = """\
providers:
  s: {kind: scripted}
features:
  a:
    model: s:m
    prompt: {template: "{{ message }}"}
    guards:
      output:
        - FIRST
        - GUARD
    on_failure: {respond: "x"}
"""
HERE = "tests.unit.test_startup_check"


def config_with(tmp_path: Path, first: str, guard: str) -> Path:
    path = tmp_path / "tether.yaml"
    path.write_text(TEMPLATE.replace("FIRST", first).replace("GUARD", guard), encoding="utf-8")
    return path


def compile_config(tmp_path: Path, guard: str) -> str:
    path = config_with(tmp_path, "{max_length: {max_chars: 5}}", guard)
    with pytest.raises(ConfigProblems) as raised:
        Tether.from_config(path, store=False, settings=NO_ENV)
    return str(raised.value)


@pytest.mark.parametrize(
    ("guard", "expected"),
    [
        ("piii", "did you mean `pii`?"),
        ("prompt_injektion", "did you mean `prompt_injection`?"),
        (f"{{'{HERE}:keyword_guard': {{keyword: [a]}}}}", "did you mean `keywords`?"),
        (f"{{'{HERE}:LengthGuard': {{max_char: 3}}}}", "did you mean `max_chars`?"),
        (f"'{HERE}:no_such_guard'", "cannot import"),
    ],
)
def test_a_guard_that_cannot_be_built_is_located(tmp_path: Path, guard: str, expected: str) -> None:
    message = compile_config(tmp_path, guard)
    assert message.startswith(f"{tmp_path / 'tether.yaml'}:10: features.a.guards.output.1: ")
    assert expected in message


def test_custom_guards_with_fitting_options_compile(tmp_path: Path) -> None:
    guard = f"{{'{HERE}:keyword_guard': {{keywords: [a]}}}}"
    path = config_with(tmp_path, f"'{HERE}:LengthGuard'", guard)
    tether = Tether.from_config(path, store=False, settings=NO_ENV)
    assert set(tether.pipeline.features) == {"a"}


def test_a_template_that_does_not_parse_is_located(tmp_path: Path) -> None:
    path = tmp_path / "tether.yaml"
    path.write_text(
        "features:\n  a:\n    model: local:smollm2\n    prompt:\n      system: 'You {% if %}'\n"
        "    on_failure: {respond: x}\n"
    )
    with pytest.raises(ConfigProblems) as raised:
        Tether.from_config(path, store=False, settings=NO_ENV)
    assert str(raised.value).startswith(f"{path}:5: features.a.prompt.system: the template")


def test_without_a_file_the_yaml_path_still_names_the_guard() -> None:
    config = parse_config(TEMPLATE.replace("FIRST", "pii").replace("GUARD", "piii"), "t", {})
    with pytest.raises(ConfigError, match=r"^features\.a\.guards\.output\.1: guard 'piii'"):
        _ = Tether(config).pipeline


def test_a_misspelt_option_is_located_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "tether.yaml"
    path.write_text(
        TEMPLATE.replace("- FIRST", "- prompt_injection:\n            action: block").replace(
            "- GUARD", "- pii:\n            action: redact\n            entites: [US_SSN]"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigProblems) as raised:
        Tether.from_config(path, store=False, settings=NO_ENV)
    assert str(raised.value).startswith(
        f"{path}:13: features.a.guards.output.1.entites: unknown option `entites` of guard pii"
    )
    assert "did you mean `entities`?" in str(raised.value)
