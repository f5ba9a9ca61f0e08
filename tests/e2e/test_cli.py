"""The CLI as a user runs it: a real subprocess per command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tether import __version__
from tether.testing.upstream import Fault, FaultyUpstream

from .gateway_server import free_port

WIDE = {"COLUMNS": "200"}  # rich tables then keep each cell on one line


def tether(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
        env={**os.environ, **env} if env else None,
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
    dataset = tmp_path / "proj" / "evals" / "assistant.jsonl"  # the config's evals.dataset
    assert "evals/assistant.jsonl" in text and len(dataset.read_text().splitlines()) == 5
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


# ------------------------------------------------------------------ issue 8 C: traces, check


def test_run_stores_its_trace_where_traces_list_reads(scripted_config: Path) -> None:
    ran = tether("run", "greet", "-c", str(scripted_config), "--var", "name=Ada", "--json")
    assert ran.returncode == 0, ran.stderr
    trace_id = json.loads(ran.stdout)["trace_id"]
    listed = tether("traces", "list", "-c", str(scripted_config), "--json")
    assert listed.returncode == 0, listed.stderr
    assert trace_id in [t["id"] for t in json.loads(listed.stdout)]
    shown = tether("traces", "show", trace_id, "-c", str(scripted_config), env=WIDE)
    assert "attempt 1 flaky:m UpstreamError" in shown.stdout
    assert "flaky:flaky:m" not in shown.stdout  # the provider is named once
    assert "fallback frm=flaky:m to=steady:m reason=upstream_error" in shown.stdout


def test_run_trace_shows_why_an_upstream_failed(tmp_path: Path) -> None:
    with FaultyUpstream() as upstream:
        upstream.set_fault(Fault.SERVER_503)
        config = tmp_path / "tether.yaml"
        config.write_text(
            "providers:\n"
            f"  acme: {{kind: openai, base_url: '{upstream.base_url}', api_key: k}}\n"
            "features:\n"
            "  ask:\n"
            "    model: acme:gpt-4o-mini\n"
            "    retry: {max_attempts: 1}\n"
            "    on_failure: {respond: later}\n"
        )
        out = tether("run", "ask", "-c", str(config), "--var", "message=hi", "--trace", env=WIDE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "later"
    attempt = r"attempt 1: acme:gpt-4o-mini .*UpstreamError HTTP 503 in \d+ ms: (.*)│"
    cause = re.search(attempt, out.stderr)
    assert cause is not None, out.stderr
    assert "fault injected: HTTP 503" in cause.group(1)  # the upstream's own words


GUARDED = """\
providers:
  s: {kind: scripted}
features:
  a:
    model: s:m
    guards:
      input:
        - GUARD
    on_failure: {respond: "x"}
"""


@pytest.mark.parametrize(
    ("guard", "where", "hint"),
    [
        ("piii", "", "`pii`"),
        ("{prompt_injection: {treshold: 0.8}}", ".treshold", "`threshold`"),
        ("{pii: {entitys: [EMAIL_ADDRESS]}}", ".entitys", "`entities`"),
    ],
)
def test_check_fails_on_what_start_up_would_fail_on(
    tmp_path: Path, guard: str, where: str, hint: str
) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(GUARDED.replace("GUARD", guard))
    located = f"{config}:8: features.a.guards.input.0{where}:"
    out = tether("check", str(config))
    assert out.returncode == 1, out.stdout
    assert located in out.stderr and f"did you mean {hint}?" in out.stderr
    ran = tether("run", "a", "-c", str(config), "--var", "message=hi")
    assert ran.returncode == 1 and located in ran.stderr  # the same message


def test_check_parses_templates(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(
        "features:\n  a:\n    model: local:smollm2\n    prompt:\n"
        "      template: 'Hello {{ name '\n    on_failure: {respond: x}\n"
    )
    out = tether("check", "--config", str(config))
    assert out.returncode == 1
    assert f"{config}:5: features.a.prompt.template: the template does not parse" in out.stderr


def test_check_takes_the_file_as_argument_or_option(scripted_config: Path) -> None:
    assert tether("check", str(scripted_config)).returncode == 0
    assert tether("check", "--config", str(scripted_config)).returncode == 0
    assert tether("check", "-c", str(scripted_config)).returncode == 0
    both = tether("check", str(scripted_config), "-c", "other.yaml")
    assert both.returncode == 2 and "give one" in both.stderr


def test_serve_checks_the_config_before_it_says_serving(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(GUARDED.replace("GUARD", "piii"))
    port = str(free_port())
    out = tether("serve", "-c", str(config), "--port", port, "--log-level", "warning")
    assert out.returncode == 1
    assert "serving" not in out.stderr + out.stdout
    assert f"{config}:8: features.a.guards.input.0:" in out.stderr
    assert "did you mean `pii`?" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------ issue 8 C: smaller


def test_version() -> None:
    out = tether("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"tether {__version__}"


@pytest.mark.parametrize("command", [(), ("run",), ("traces", "list"), ("keys", "create")])
def test_flags_show_no_value_type(command: tuple[str, ...]) -> None:
    out = tether(*command, "--help")
    assert out.returncode == 0
    assert "--help" in out.stdout and "<bool>" not in out.stdout
    if command == ("run",):
        assert "--stream" in out.stdout and "<path>" in out.stdout  # real types stay


@pytest.mark.local_model
def test_demo_stores_the_traces_it_says_it_left(tmp_path: Path) -> None:
    out = tether("demo", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    url = f"sqlite:///{tmp_path / 'tether.db'}"
    assert f"Every call above left a trace in {url}" in out.stdout
    listed = tether("traces", "list", "--store-url", url, "--json", cwd=tmp_path)
    features = sorted(t["feature"] for t in json.loads(listed.stdout))
    assert features == ["assistant", "billing", "billing", "support"]
