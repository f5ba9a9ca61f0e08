"""The SDK stores its traces like the gateway does (``Tether.from_config``), unless told not to."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import SyncTether, Tether
from tether.config import parse_config
from tether.settings import Settings
from tether.store import Store, StoreConfig
from tether.store.sink import StoreSink

CONFIG = """\
providers:
  up: {kind: scripted, replies: [{text: "stored answer"}]}
features:
  greet:
    prompt: {template: "Hello {{ name }}"}
    model: up:m
    on_failure: {respond: "later"}
"""

NO_ENV = Settings.load({})  # these tests must not read the developer's TETHER_* variables


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tether.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def stored(url: str, trace_id: str) -> dict[str, object] | None:
    with Store.open(StoreConfig(url=url)) as store:
        return store.traces.get(trace_id)


async def test_from_config_stores_every_trace_by_close(config: Path) -> None:
    async with Tether.from_config(config, settings=NO_ENV) as tether:
        result = await tether.run("greet", {"name": "Ada"}, user="u-1")
    trace = stored(f"sqlite:///{config.parent / 'tether.db'}", result.trace_id)
    assert trace is not None
    assert trace["feature"] == "greet" and trace["user"] == "u-1"
    assert trace["output"] == "stored answer"


def test_sync_tether_stores_on_exit(config: Path) -> None:
    with SyncTether.from_config(config, settings=NO_ENV) as tether:
        result = tether.run("greet", {"name": "Ada"})
    assert stored(f"sqlite:///{config.parent / 'tether.db'}", result.trace_id) is not None


async def test_store_false_stores_nothing(config: Path) -> None:
    async with Tether.from_config(config, store=False, settings=NO_ENV) as tether:
        result = await tether.run("greet", {"name": "Ada"})
    assert tether.traces.get(result.trace_id) is not None  # still kept in memory
    assert not (config.parent / "tether.db").exists()


async def test_tether_store_url_replaces_the_configs_store(config: Path, tmp_path: Path) -> None:
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    settings = Settings.load({"TETHER_STORE_URL": elsewhere})
    async with Tether.from_config(config, settings=settings) as tether:
        result = await tether.run("greet", {"name": "Ada"})
    assert stored(elsewhere, result.trace_id) is not None
    assert not (config.parent / "tether.db").exists()


async def test_the_bare_constructor_stores_only_when_given_a_store(tmp_path: Path) -> None:
    parsed = parse_config(CONFIG, "t.yaml", {})
    async with Tether(parsed) as tether:
        await tether.run("greet", {"name": "Ada"})
    assert not any(tmp_path.iterdir())
    sink = StoreSink(parsed.store, config_dir=tmp_path)
    async with Tether(parsed, store=sink) as tether:  # opened on enter, flushed on close
        result = await tether.run("greet", {"name": "Ada"})
    assert stored(f"sqlite:///{tmp_path / 'tether.db'}", result.trace_id) is not None


async def test_a_store_opens_on_the_first_trace_without_async_with(config: Path) -> None:
    tether = Tether.from_config(config, settings=NO_ENV)
    result = await tether.run("greet", {"name": "Ada"})
    await tether.aclose()
    assert stored(f"sqlite:///{config.parent / 'tether.db'}", result.trace_id) is not None
