"""The README's set-up commands, run as written, so the README cannot rot.

The quickstart command runs in a fresh copy of the repository with a fresh virtualenv (pip's
cache makes this take about a minute); the test command is checked to be what CI runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .gateway_server import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]


def fenced_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(marker) + r"\s*```bash\n(.*?)```", text, re.S)
    assert match, f"README.md has no ```bash block after {marker}"
    return match.group(1).strip()


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_blocks = re.findall(r"```bash\n(.*?)```", text, re.S)[:2]
    assert first_blocks == [
        fenced_after("<!-- quickstart -->") + "\n",
        fenced_after("<!-- test-command -->") + "\n",
    ]
    assert "tether demo" in first_blocks[0]
    assert "pytest" in first_blocks[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "<!-- test-command -->" in ci  # CI runs exactly the README's test command


def test_quickstart_command_works_on_a_fresh_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "tether"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            target = checkout / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    command = fenced_after("<!-- quickstart -->")
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "The capital of France" in out or "Paris" in out
    assert "fallback" in out and "failure path" in out
    assert "stream_inter" in out


def python_blocks_under(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_sdk_examples_run_as_written(tmp_path: Path) -> None:
    """The README's Python examples, executed against the config `tether init` writes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    tether_init(tmp_path, env)
    blocks = python_blocks_under("Call it from Python")
    assert len(blocks) == 3  # run and stream, SyncTether, the pipeline's seams
    for block in blocks:
        run_python(block, tmp_path, env)


BUDGETS_SECTION = "Budgets, rate limits and the cache"


@pytest.mark.local_model
def test_budget_example_runs_as_written(tmp_path: Path) -> None:
    """The budgets section's feature and Python example on the embedded default: the second
    call is a cache hit, the third is refused by the user's rate limit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    feature, shared = fenced_under(BUDGETS_SECTION, "yaml")
    init_with(tmp_path, feature, env)
    assert set(yaml.safe_load(shared)) == {"state", "store"}  # the replicas' set-up
    (block,) = fenced_under(BUDGETS_SECTION, "python")
    done = run_python(block, tmp_path, env)
    first, second = done.stdout.strip().splitlines()
    tokens, cached, status = first.split()
    assert int(tokens) > 0 and cached == "0" and status == "hit"
    assert second.startswith("refused: rate_limit_exceeded retry in ")


def tether_init(folder: Path, env: dict[str, str]) -> Path:
    """`tether init` in ``folder``: the path of the config it wrote."""
    init = subprocess.run(
        [sys.executable, "-m", "tether", "init", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert init.returncode == 0, init.stderr
    return folder / "tether.yaml"


def init_with(folder: Path, features: str, env: dict[str, str]) -> Path:
    """The config `tether init` writes in ``folder``, with ``features`` (a README YAML block of
    features, beside ``assistant``) added."""
    config_path = tether_init(folder, env)
    config = yaml.safe_load(config_path.read_text())
    config["features"].update(yaml.safe_load(features))
    config_path.write_text(yaml.safe_dump(config))
    return config_path


def run_python(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A README Python block, run in ``cwd``; it must succeed and print something."""
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()
    return done


EVAL_SECTION = "Evaluate a change before it ships"


@pytest.mark.local_model
def test_eval_example_runs_as_written(tmp_path: Path) -> None:
    """The eval section's two commands, on the config and dataset `tether init` writes: a run
    with its reports, then the `terse` variant compared with the feature as declared."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("TETHER_STORE_URL", None)
    tether_init(tmp_path, env)
    (block,) = fenced_under(EVAL_SECTION, "bash")
    run, compare = block.strip().splitlines()
    outputs = []
    for command in (run, compare):
        done = subprocess.run(
            ["bash", "-c", command.replace(".venv/bin/tether", f"{sys.executable} -m tether")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=env,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        outputs.append(done.stdout)
    for folder in ("eval-report", "eval-compare"):
        assert {p.name for p in (tmp_path / folder).iterdir()} >= {
            "report.html",
            "results.json",
            "junit.xml",
        }
    assert "pass rate" in outputs[0]
    verdicts = ("regressed", "improved", "no significant change")
    assert any(verdict in outputs[1] for verdict in verdicts), outputs[1][-2000:]
    html = (tmp_path / "eval-compare" / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and "Changed items" in html


GATEWAY_SECTION = "Serve it: the OpenAI-compatible gateway"
README_PORT = "127.0.0.1:8080"


def fenced_under(heading: str, language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


@pytest.mark.local_model
def test_gateway_examples_run_as_written(tmp_path: Path) -> None:
    """The gateway section's curl and ``openai`` examples, against ``tether serve`` on the
    config `tether init` writes plus the section's embedding feature (the embedded model)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    (snippet,) = fenced_under(GATEWAY_SECTION, "yaml")  # a feature, beside `assistant`
    config_path = init_with(tmp_path, snippet, env)
    curls = [b for b in fenced_under(GATEWAY_SECTION, "bash") if README_PORT in b]
    scripts = [b for b in fenced_under(GATEWAY_SECTION, "python") if README_PORT in b]
    assert len(curls) == 2 and len(scripts) == 3  # responses, embeddings; chat, responses, ...
    with GatewayProcess(config_path, env=env) as gateway:
        here = f"127.0.0.1:{gateway.port}"
        for block in curls:
            done = subprocess.run(
                ["bash", "-c", block.replace(README_PORT, here)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            answer = json.loads(done.stdout)
            assert answer.get("error") is None and answer["tether"]["degraded"] is False, answer
        for block in scripts:
            run_python(block.replace(README_PORT, here), tmp_path, env)
