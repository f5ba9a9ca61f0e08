"""One source of ``TETHER_*`` settings for every command, the gateway and the SDK."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.gateway.runtime import GatewaySettings
from tether.settings import Settings

CONFIG = """\
store: {url: "sqlite:///from-config.db"}
features:
  a:
    model: local:smollm2
    on_failure: {respond: "x"}
"""


def test_defaults_and_values(tmp_path: Path) -> None:
    empty = Settings.load({})
    assert empty.config == Path("tether.yaml") and empty.store_url is None
    assert empty.admin_token is None
    settings = Settings.load(
        {
            "TETHER_CONFIG": "deploy/tether.yaml",
            "TETHER_STORE_URL": "postgresql://db/tether",
            "TETHER_ADMIN_TOKEN": "secret",
            "TETHER_UNRELATED": "ignored",
            "STORE_URL": "ignored too",
        }
    )
    assert settings.config == Path("deploy/tether.yaml")
    assert settings.config_path(None) == Path("deploy/tether.yaml")
    assert settings.config_path(tmp_path) == tmp_path  # a flag wins
    assert settings.store_url == "postgresql://db/tether"
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "secret"
    assert Settings.load({"TETHER_STORE_URL": ""}).store_url is None


def test_an_invalid_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^TETHER_STORE_URL: store url 'mysql://x'"):
        Settings.load({"TETHER_STORE_URL": "mysql://x"})


def test_the_environment_reaches_the_os(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_STORE_URL", "sqlite:///from-env.db")
    assert Settings.load().store_url == "sqlite:///from-env.db"


def test_the_gateway_reads_the_same_settings(tmp_path: Path) -> None:
    path = tmp_path / "tether.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    plain = GatewaySettings.load(path, {})
    assert plain.config.store.url == "sqlite:///from-config.db" and plain.admin_token is None
    env = {"TETHER_STORE_URL": f"sqlite:///{tmp_path / 'env.db'}", "TETHER_ADMIN_TOKEN": "t0k"}
    loaded = GatewaySettings.load(path, env)
    assert loaded.config.store.url == f"sqlite:///{tmp_path / 'env.db'}"
    assert loaded.admin_token == "t0k"


def test_a_relative_store_url_is_relative_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "deploy" / "tether.yaml"
    path.parent.mkdir()
    path.write_text(CONFIG, encoding="utf-8")
    loaded = GatewaySettings.load(path, {"TETHER_STORE_URL": "sqlite:///here.db"})
    assert loaded.config.store.url == f"sqlite:///{tmp_path / 'here.db'}"
