"""The commands the docs and benchmarks show run on a fresh clone: their datasets ship in
examples/data/ (nothing points outside the repository)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    suffixes = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".cfg"}
    return [ROOT / n for n in names if Path(n).suffix in suffixes and (ROOT / n).is_file()]


def test_nothing_points_outside_the_repository() -> None:
    outside = re.compile(r"\.\./shared|parents\[2\]\s*/\s*\"shared\"")
    offenders = [
        str(path.relative_to(ROOT))
        for path in tracked_text_files()
        if path.name != Path(__file__).name and outside.search(path.read_text("utf-8"))
    ]
    assert offenders == []


def test_the_samples_are_small_and_well_formed() -> None:
    rows = [json.loads(line) for line in (DATA / "injection_sample.jsonl").read_text().splitlines()]
    assert len(rows) == 100 and {r["label"] for r in rows} == {0, 1}
    assert all(set(r) >= {"text", "label", "category", "source"} for r in rows)
    sentences = json.loads((DATA / "pii_sample.json").read_text())
    assert len(sentences) == 100
    assert all(set(s) >= {"full_text", "spans"} for s in sentences)
    licence = (DATA / "README.md").read_text()
    assert "MIT" in licence and "presidio-research" in licence and "PurpleLlama" in licence


@pytest.mark.parametrize(
    "command",
    [
        line.removeprefix("$ tether ").split("#")[0].split()
        for line in (ROOT / "docs" / "guards.md").read_text().splitlines()
        if line.startswith("$ tether guards eval")
    ],
    ids=lambda c: c[2],
)
def test_the_eval_commands_in_the_docs_run_from_a_clone(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tether", *command, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["overall"]["n"] == 100


def test_the_pii_benchmark_runs_on_the_shipped_sample() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pii_accuracy.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("100 rows")
