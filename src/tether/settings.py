"""Settings from the environment: one source for every command, the gateway and the SDK.

=====================  =====================================================================
``TETHER_CONFIG``      the ``tether.yaml`` a command uses when ``--config`` is not given
                       (default ``./tether.yaml``)
``TETHER_STORE_URL``   the store's database URL; replaces ``store.url`` of the config for
                       ``run``, ``serve``, ``traces``, ``keys`` and ``Tether.from_config``
                       (a relative SQLite path is relative to the working folder)
``TETHER_ADMIN_TOKEN`` enables the gateway's ``/admin`` endpoints and protects ``/metrics``
=====================  =====================================================================

Read once (:meth:`Settings.load`) and passed explicitly; a command-line flag wins over the
environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tether.config.models import TetherConfig
from tether.config.store import StoreConfig, resolve_url
from tether.errors import ConfigError

ENV_PREFIX = "TETHER_"


class Settings(BaseSettings):
    """tether's ``TETHER_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    config: Path = Field(default=Path("tether.yaml"), description="The tether.yaml to use.")
    store_url: str | None = Field(default=None, description="Replaces the config's store.url.")
    admin_token: SecretStr | None = Field(
        default=None, description="Enables /admin and protects /metrics in the gateway."
    )

    @field_validator("store_url", "admin_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("store_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        StoreConfig(url=value)  # the same check, and message, as store.url in tether.yaml
        return value

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Settings:
        """From ``os.environ``, or from ``env`` when given (tests, embedding). Raises
        ConfigError naming the variable when one is invalid."""
        try:
            if env is None:
                return cls()
            fields = {name.upper(): name for name in cls.model_fields}
            given = {
                fields[key[len(ENV_PREFIX) :]]: value
                for key, value in env.items()
                if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :] in fields
            }
            return cls.model_validate(given)
        except ValidationError as exc:
            problems = [
                f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ]
            raise ConfigError("; ".join(problems) + "; fix the variable or unset it") from None

    def config_path(self, flag: Path | None) -> Path:
        """``--config`` when given, else ``TETHER_CONFIG``, else ``./tether.yaml``."""
        return flag if flag is not None else self.config

    def store_config(self, store: StoreConfig) -> StoreConfig:
        """``store`` with ``TETHER_STORE_URL`` applied (absolute against the working folder)."""
        if self.store_url is None:
            return store
        return store.model_copy(update={"url": resolve_url(self.store_url, Path.cwd())})

    def apply(self, config: TetherConfig) -> TetherConfig:
        """``config`` with the environment's overrides applied."""
        store = self.store_config(config.store)
        return config if store is config.store else config.model_copy(update={"store": store})
