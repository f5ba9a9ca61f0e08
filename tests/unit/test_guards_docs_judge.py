"""The complete ``tether.yaml`` examples of docs/guards.md's "LLM judge" and "Ensembles"
sections load, and every feature in them compiles with the guards they describe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether import Tether
from tether.config import parse_config
from tether.guards.builtin.ensemble import EnsembleGuard
from tether.guards.builtin.judge import JudgeGuard

DOC = Path(__file__).resolve().parents[2] / "docs" / "guards.md"


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n### {title}\n")
    end = re.compile(r"\n##+ ").search(text, start + 1)
    return text[start : end.start() if end else None]


def examples(title: str) -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", section(title), flags=re.S)
    return [b for b in blocks if b.startswith("providers:")]


@pytest.mark.parametrize(
    ("title", "kinds"),
    [
        ("LLM judge", [[JudgeGuard], [JudgeGuard]]),
        ("Ensembles", [[EnsembleGuard, EnsembleGuard], [EnsembleGuard]]),
    ],
)
def test_the_docs_examples_compile_with_their_guards(title: str, kinds: list[list[type]]) -> None:
    (example,) = examples(title)
    config = parse_config(example, "tether.yaml", {"OPENAI_API_KEY": "sk-test"})
    tether = Tether(config)
    runner = tether.compile().features["support"].guards
    assert runner is not None
    built = [[type(b.guard) for b in runner.input], [type(b.guard) for b in runner.output]]
    assert built == kinds
    if title == "Ensembles":
        cascade = runner.input[0].guard
        assert isinstance(cascade, EnsembleGuard)
        assert [m.name for m in cascade.members] == ["prompt_injection", "llm_judge"]
        assert cascade.options.band == (0.2, 0.8)
