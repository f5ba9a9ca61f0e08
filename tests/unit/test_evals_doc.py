"""docs/evals.md cannot drift from the config and the API: every YAML block in it is a complete
``tether.yaml`` the config loader accepts, the CLI commands it shows exist, and its Python
example names what the package exports."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import build_app
from tether.config import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "evals.md"
ENV = {"OPENAI_API_KEY": "sk-test"}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("block", blocks("yaml"), ids=lambda b: b.splitlines()[0][:40])
def test_every_yaml_block_is_a_config_tether_accepts(block: str) -> None:
    config = parse_config(block, "docs/evals.md", ENV)
    assert any(f.evals.scorers or f.evals.online or f.variants for f in config.features.values())


def test_the_commands_shown_exist() -> None:
    commands = {
        tuple(line.split()[1:3])
        for block in blocks("bash")
        for line in block.splitlines()
        if line.startswith("tether ")
    }
    assert {("eval", "run"), ("eval", "compare"), ("datasets", "from-traces")} <= commands
    app = build_app()
    for group, command in commands:
        done = CliRunner().invoke(app, [group, command, "--help"])
        assert done.exit_code == 0, (group, command, done.output)


def test_the_python_example_imports_what_exists() -> None:
    (example,) = blocks("python")
    for node in ast.walk(ast.parse(example)):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
