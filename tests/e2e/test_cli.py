"""The CLI as a user runs it: a real subprocess per command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def tether(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def test_help_teaches_the_commands() -> None:
    out = tether("--help")
    assert out.returncode == 0
    for command in ("init", "check", "run", "demo"):
        assert command in out.stdout


def test_init_then_check(tmp_path: Path) -> None:
    out = tether("init", str(tmp_path / "proj"))
    assert out.returncode == 0, out.stderr
    config = tmp_path / "proj" / "tether.yaml"
    text = config.read_text()
    assert "assistant:" in text and "{{ message }}" in text and "local:smollm2" in text
    assert tether("init", str(tmp_path / "proj")).returncode == 1  # no silent overwrite
    checked = tether("check", str(config))
    assert checked.returncode == 0 and "assistant" in checked.stdout


def test_check_reports_file_line_path_and_fix(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text("features:\n  a:\n    model: local:smollm2\n    prompt: {tempalte: x}\n")
    out = tether("check", str(config))
    assert out.returncode == 1
    assert f"{config}:2: features.a.on_failure: Field required" in out.stderr
    assert f"{config}:4: features.a.prompt.tempalte" in out.stderr
    assert "fix:" in out.stderr


SCRIPTED = """\
providers:
  flaky: {kind: scripted, replies: [{error: upstream_error}]}
  steady: {kind: scripted, replies: [{text: "steady answer"}]}
features:
  greet:
    prompt: {template: "Hello {{ name }}"}
    model: flaky:m
    fallbacks: [steady:m]
    retry: {max_attempts: 1}
    on_failure: {respond: "fallback text"}
  down:
    prompt: {template: "Hello {{ name }}"}
    model: flaky:m
    retry: {max_attempts: 1}
    on_failure: {respond: "We are on it."}
"""


@pytest.fixture
def scripted_config(tmp_path: Path) -> Path:
    path = tmp_path / "tether.yaml"
    path.write_text(SCRIPTED)
    return path


def test_run_json_has_the_contract_fields(scripted_config: Path) -> None:
    out = tether("run", "greet", "--config", str(scripted_config), "--var", "name=Ada", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {
        "output",
        "degraded",
        "reason",
        "trace_id",
        "usage",
        "cost_usd",
        "latency_ms",
        "variant",
    }
    assert data["output"] == "steady answer" and data["degraded"] is False
    down = json.loads(
        tether("run", "down", "-c", str(scripted_config), "--var", "name=Ada", "--json").stdout
    )
    assert down["output"] == "We are on it."
    assert down["degraded"] is True and down["reason"] == "upstream_error"


def test_run_stream_and_errors(scripted_config: Path) -> None:
    out = tether("run", "greet", "-c", str(scripted_config), "--var", "name=Ada", "--stream")
    assert out.returncode == 0 and out.stdout.strip() == "steady answer"
    missing = tether("run", "greet", "-c", str(scripted_config))
    assert missing.returncode == 2 and "'name' is undefined" in missing.stderr
    bad_var = tether("run", "greet", "-c", str(scripted_config), "--var", "oops")
    assert bad_var.returncode == 2 and "key=value" in bad_var.stderr
    unknown = tether("run", "nope", "-c", str(scripted_config))
    assert unknown.returncode == 2 and "declared: down, greet" in unknown.stderr


def test_every_example_config_is_valid() -> None:
    examples = sorted((Path(__file__).resolve().parents[2] / "examples").rglob("tether.yaml"))
    assert examples, "examples/ should hold at least one tether.yaml"
    for config in examples:
        out = tether("check", str(config))
        assert out.returncode == 0, f"{config}: {out.stderr}"
