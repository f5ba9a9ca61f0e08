"""`tether traces` and `tether keys` through typer's CliRunner, on a SQLite store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tether.cli.keys import app as keys_app
from tether.cli.traces import app as traces_app
from tether.store import Store, StoreConfig
from tether.telemetry import Trace
from tether.types import Usage

CONFIG = """\
features:
  support:
    model: local:smollm2
    on_failure: {respond: "Sorry, try again later."}
  search:
    model: local:smollm2
    on_failure: {respond: "No results right now."}
"""


def make_trace(feature: str, *, user: str, degraded: bool = False, age_s: float = 0) -> Trace:
    trace = Trace(feature=feature, user=user, variant="default")
    trace.started_at = time.time() - age_s
    attempt = trace.start_attempt("local:smollm2", "local")  # the pipeline's model reference
    attempt.end_ms, attempt.usage = attempt.start_ms + 12, Usage(5, 7)
    if degraded:
        attempt.status, attempt.error_class, attempt.error = "error", "Timeout", "took too long"
        trace.event("failure_path", respond="Sorry, try again later.")
    trace.status = "degraded" if degraded else "ok"
    trace.degraded, trace.reason = degraded, "timeout" if degraded else None
    trace.output, trace.model, trace.usage = "the answer", "local:smollm2", Usage(5, 7)
    return trace


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tether.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def traces(config: Path) -> list[Trace]:
    made = [
        make_trace("support", user="alice", age_s=120),
        make_trace("support", user="bob", degraded=True, age_s=60),
        make_trace("search", user="alice", age_s=3 * 86400),
    ]
    # The default store URL is relative: it resolves next to the config file.
    with Store.open(StoreConfig(), config_dir=config.parent) as store:
        store.traces.write_many([t.to_dict() for t in made])
    return made


def run(app: typer.Typer, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "160", **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_list_table(config: Path, traces: list[Trace]) -> None:
    code, out, _ = run(traces_app, "list", "--config", str(config))
    assert code == 0
    for trace in traces:
        assert trace.id[:12] in out
    assert "degraded timeout" in out
    assert (config.parent / "tether.db").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], [1, 0, 2]),
        (["--feature", "support"], [1, 0]),
        (["--degraded"], [1]),
        (["--no-degraded"], [0, 2]),
        (["--user", "alice"], [0, 2]),
        (["--since", "1d"], [1, 0]),
        (["--since", "90s", "--no-degraded"], []),
        (["--variant", "candidate"], []),
        (["--limit", "1"], [1]),
    ],
)
def test_list_filters_json(
    config: Path, traces: list[Trace], args: list[str], expected: list[int]
) -> None:
    code, out, _ = run(traces_app, "list", "--config", str(config), "--json", *args)
    assert code == 0
    assert [t["id"] for t in json.loads(out)] == [traces[i].id for i in expected]


def test_list_bad_since(config: Path, traces: list[Trace]) -> None:
    code, _, err = run(traces_app, "list", "--config", str(config), "--since", "soon")
    assert code == 2
    assert "10m, 2h" in err


def test_show(config: Path, traces: list[Trace]) -> None:
    code, out, _ = run(traces_app, "show", traces[1].id[:10], "--config", str(config))
    assert code == 0
    assert traces[1].id in out
    assert "attempt 1 local:smollm2 Timeout: took too long" in out  # the provider named once
    assert "local:local" not in out
    assert 'failure_path respond="Sorry, try again later."' in out  # key=value, not JSON
    assert "the answer" in out


def test_show_json_and_missing(config: Path, traces: list[Trace]) -> None:
    code, out, _ = run(traces_app, "show", traces[0].id, "--config", str(config), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["attempts"] == traces[0].to_dict()["attempts"]
    code, _, err = run(traces_app, "show", "ffffffff", "--config", str(config))
    assert code == 1 and "no trace" in err


def test_tail_once(config: Path, traces: list[Trace]) -> None:
    code, out, _ = run(traces_app, "tail", "--config", str(config), "--once", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [t["id"] for t in lines] == [t.id for t in traces]  # in stored order
    code, out, _ = run(traces_app, "tail", "-c", str(config), "--once", "--feature", "search")
    assert code == 0
    assert traces[2].id[:12] in out and traces[0].id[:12] not in out


def test_store_url_overrides_the_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    trace = make_trace("support", user="carol")
    with Store.from_url(url) as store:
        store.traces.write_many([trace.to_dict()])
    code, out, _ = run(
        traces_app, "list", "--json", "--store-url", url, "--config", str(tmp_path / "none.yaml")
    )
    assert code == 0
    assert [t["id"] for t in json.loads(out)] == [trace.id]


def test_the_environment_names_the_store_and_the_config(tmp_path: Path, config: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    trace = make_trace("support", user="dave")
    with Store.from_url(url) as store:
        store.traces.write_many([trace.to_dict()])
    code, out, _ = run(traces_app, "list", "--json", env={"TETHER_STORE_URL": url})
    assert code == 0 and [t["id"] for t in json.loads(out)] == [trace.id]
    env = {"TETHER_CONFIG": str(config), "TETHER_STORE_URL": url}
    code, _, err = run(keys_app, "create", "-s", "nope", env=env)
    assert code == 2 and "declared: search, support" in err  # $TETHER_CONFIG was read
    code, _, _ = run(keys_app, "create", "-s", "support", env=env)
    assert code == 0
    with Store.from_url(url) as store:  # the key went to $TETHER_STORE_URL
        assert [k.scopes for k in store.keys.list()] == [("support",)]


def test_missing_config_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = run(traces_app, "list", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "no such file" in err and "--config" in err


def test_keys_create_list_revoke(config: Path) -> None:
    code, out, err = run(
        keys_app, "create", "--config", str(config), "--scope", "support", "--name", "web"
    )
    assert code == 0
    plaintext = out.strip()
    assert plaintext.startswith("tth_") and "only its hash" in err

    code, out, _ = run(keys_app, "list", "--config", str(config), "--json")
    [listed] = json.loads(out)
    assert listed["name"] == "web" and listed["scopes"] == ["support"]
    assert plaintext not in out and plaintext.startswith(listed["prefix"])

    with Store.open(StoreConfig(), config_dir=config.parent) as store:
        key = store.keys.verify(plaintext)
        assert key is not None and key.allows("support") and not key.allows("search")

    code, out, _ = run(keys_app, "list", "--config", str(config))
    assert code == 0 and listed["id"] in out and "active" in out

    code, out, _ = run(keys_app, "revoke", listed["id"], "--config", str(config))
    assert code == 0 and "revoked" in out
    with Store.open(StoreConfig(), config_dir=config.parent) as store:
        assert store.keys.verify(plaintext) is None


def test_keys_create_refuses_unknown_features(config: Path) -> None:
    code, _, err = run(keys_app, "create", "--config", str(config), "-s", "suport")
    assert code == 2
    assert "suport" in err and "search, support" in err


def test_keys_create_json_and_wildcard(config: Path) -> None:
    code, out, _ = run(keys_app, "create", "-c", str(config), "-s", "*", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["scopes"] == ["*"] and created["key"].startswith("tth_")


def test_keys_revoke_unknown(config: Path) -> None:
    code, _, err = run(keys_app, "revoke", "nope", "--config", str(config))
    assert code == 1 and "matches no key" in err


def test_keys_list_empty(config: Path) -> None:
    code, out, _ = run(keys_app, "list", "--config", str(config))
    assert code == 0 and "tether keys create" in out


def test_store_url_comes_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "deploy" / "tether.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG + "store:\n  url: sqlite:///data/traces.db\n", encoding="utf-8")
    code, out, _ = run(keys_app, "create", "-c", str(config), "-s", "search")
    assert code == 0
    assert (config.parent / "data" / "traces.db").exists()
    assert not (tmp_path / "tether.db").exists()
    with Store.from_url(f"sqlite:///{config.parent / 'data' / 'traces.db'}") as store:
        assert store.keys.verify(out.strip()) is not None


def test_keys_create_with_a_tenant(config: Path) -> None:
    code, out, err = run(
        keys_app, "create", "--config", str(config), "-s", "support", "--tenant", "acme"
    )
    assert code == 0 and "tenant acme" in err
    with Store.open(StoreConfig(), config_dir=config.parent) as store:
        key = store.keys.verify(out.strip())
        assert key is not None and key.tenant == "acme"
    code, out, _ = run(keys_app, "list", "--config", str(config), "--json")
    assert [k["tenant"] for k in json.loads(out)] == ["acme"]
    code, out, _ = run(keys_app, "list", "--config", str(config))
    assert code == 0 and "tenant" in out and "acme" in out
    code, _, err = run(keys_app, "create", "--config", str(config), "-s", "support", "-t", " ")
    assert code == 2 and "--tenant" in err
