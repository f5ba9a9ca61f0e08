"""`tether datasets from-traces` on real traces: a config run through the SDK with the scripted
provider (some calls degraded, a guard tripped, a conversation, a metadata-only feature),
stored in SQLite, exported by the CLI, and loaded back as a dataset."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tether.cli.main import build_app
from tether.evals.datasets import load_dataset
from tether.sdk import Tether
from tether.store import Store, StoreConfig
from tether.types import Message, ModelRequest

CONFIG = """\
providers:
  up: {kind: scripted, replies: [{text: "Paris."}]}
  down: {kind: scripted, replies: [{error: upstream_error}]}
features:
  geo:
    prompt: {system: "Answer briefly.", template: "Q: {{ q }}"}
    model: up:m
    retry: {max_attempts: 1}
    on_failure: {respond: "Sorry, try later."}
    guards: {input: [pii]}
    variants:
      broken: {model: down:m}
  quiet:
    model: up:m
    on_failure: {respond: "Sorry."}
    trace: {capture: metadata}
"""


def make_traces(config: Path) -> dict[str, Any]:
    """Calls that leave traces: healthy, degraded (variant `broken`), a redacted email, a
    conversation, and calls of a feature that keeps no input. Returns their results."""

    async def go() -> dict[str, Any]:
        async with Tether.from_config(config) as tether:
            results = {
                "healthy": await tether.run("geo", {"q": "Capital of France?"}),
                "degraded": [
                    await tether.run("geo", {"q": f"Capital of country {i}?"}, variant="broken")
                    for i in range(3)
                ],
                "email": await tether.run("geo", {"q": "Mail me at ann@example.com"}),
                "chat": await tether.run(
                    "geo",
                    {"q": "unused"},
                    request=ModelRequest(
                        messages=[
                            Message("user", "Hi"),
                            Message("assistant", "Hello! Ask me a question."),
                            Message("user", "Capital of Spain?"),
                        ]
                    ),
                ),
                "quiet": await tether.run("quiet", {"message": "secret question"}),
            }
        return results

    return asyncio.run(go())


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("from_traces")
    config = folder / "tether.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return config, make_traces(config)


def export(config: Path, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        build_app(),
        ["datasets", "from-traces", "--config", str(config), "--out", str(out), *args],
        env={"COLUMNS": "200"},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def stored_trace(config: Path, trace_id: str) -> dict[str, Any]:
    with Store.open(StoreConfig(), config_dir=config.parent) as store:
        trace = store.traces.get(trace_id)
    assert trace is not None
    return trace


def test_degraded_traces_become_rows_that_load(
    stored: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    config, results = stored
    out = tmp_path / "evals" / "degraded.jsonl"
    code, err = export(config, out, "--feature", "geo", "--where", "degraded")
    assert code == 0, err
    assert f"wrote 3 rows to {out}" in err
    rows = rows_of(out)
    expected_ids = {r.trace_id for r in results["degraded"]}
    assert {row["metadata"]["trace_id"] for row in rows} == expected_ids
    version = stored_trace(config, results["degraded"][0].trace_id)["config_version"]
    assert version  # the broken variant's spec hash, as its traces recorded it
    for row in rows:
        assert row["vars"]["q"].startswith("Capital of country")
        assert "messages" not in row  # the template rendered from vars: vars reproduce it
        assert "expected" not in row  # a degraded answer is no reference...
        assert row["metadata"]["answer"] == "Sorry, try later."  # ...but it is kept
        assert row["tags"] == ["degraded"]
        meta = row["metadata"]
        assert (meta["variant"], meta["degraded"], meta["config_version"]) == (
            "broken",
            True,
            version,
        )
        assert meta["reason"] and meta["started_at"]
    data = load_dataset(out)
    assert len(data) == 3
    assert {case.metadata["trace_id"] for case in data.cases} == expected_ids
    assert all(case.tags == ("degraded",) for case in data.cases)


def test_all_traces_of_a_feature(stored: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    config, results = stored
    out = tmp_path / "all.jsonl"
    code, err = export(config, out, "--feature", "geo")
    assert code == 0, err
    rows = {row["metadata"]["trace_id"]: row for row in rows_of(out)}
    assert len(rows) == 6
    healthy = rows[results["healthy"].trace_id]
    assert healthy["vars"] == {"q": "Capital of France?"}
    assert healthy["expected"] == "Paris."
    assert "tags" not in healthy
    assert (
        healthy["metadata"]["config_version"]
        == stored_trace(config, results["healthy"].trace_id)["config_version"]
    )
    chat = rows[results["chat"].trace_id]
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user"]
    assert chat["messages"][-1]["content"] == "Capital of Spain?"  # no system: the feature's
    email = rows[results["email"].trace_id]
    assert "guard_tripped" in email["tags"]
    assert "ann@example.com" not in json.dumps(email)  # the pii guard redacted what was kept
    cases = load_dataset(out).cases
    assert len(cases) == 6
    assert any(case.messages is not None for case in cases)


def test_filters_limit_and_skipped_metadata_only(
    stored: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    config, results = stored
    out = tmp_path / "one.jsonl"
    code, err = export(config, out, "--feature", "geo", "--where", "guard_tripped")
    assert code == 0, err
    assert [r["metadata"]["trace_id"] for r in rows_of(out)] == [results["email"].trace_id]
    code, err = export(
        config, out, "--feature", "geo", "-w", "variant=broken", "-w", "since=1h", "--limit", "2"
    )
    assert code == 0 and "wrote 2 rows" in err
    assert len(rows_of(out)) == 2
    quiet = tmp_path / "quiet.jsonl"
    code, err = export(config, quiet, "--feature", "quiet")
    assert code == 1
    assert "skipped 1 without captured input" in err and "capture" in err
    assert not quiet.exists()
    code, err = export(config, quiet, "--feature", "geo", "--where", "cache_hit")
    assert code == 1 and "no stored trace of 'geo' became a row" in err
    code, err = export(config, quiet, "--feature", "geo", "--where", "colour=red")
    assert code == 2 and "'colour=red' is not a condition" in err


def test_scan_reads_in_batches_newest_first(stored: tuple[Path, dict[str, Any]]) -> None:
    config, results = stored
    with Store.open(StoreConfig(), config_dir=config.parent) as store:
        every = list(store.traces.scan(feature="geo", batch=2))
        broken = list(store.traces.scan(feature="geo", variant="broken", degraded=True, batch=2))
        by_model = list(store.traces.scan(model="up:m", batch=100))
    assert len(every) == 6 and len({t["id"] for t in every}) == 6
    started = [t["started_at"] for t in every]
    assert started == sorted(started, reverse=True)
    assert {t["id"] for t in broken} == {r.trace_id for r in results["degraded"]}
    assert all(t["input"]["capture"] == "full" and t["events"] for t in broken)
    assert {t["feature"] for t in by_model} == {"geo", "quiet"}


def test_eval_run_accepts_the_rows(stored: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    config, _ = stored
    rows = tmp_path / "rows.jsonl"
    assert export(config, rows, "--feature", "geo", "--where", "degraded")[0] == 0
    copy = tmp_path / "run" / "tether.yaml"  # the run's own traces go to the copy's store
    copy.parent.mkdir()
    shutil.copy(config, copy)
    result = CliRunner().invoke(
        build_app(),
        ["eval", "run", "geo", "--config", str(copy), "--dataset", str(rows), "--json"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["total"], summary["errors"], summary["pass_rate"]) == (3, 0, 1.0)
