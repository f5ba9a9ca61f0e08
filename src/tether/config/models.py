"""The declarative shape of ``tether.yaml``: :class:`TetherConfig`, made of each section's models.

Every section's models live in this package (``providers``, ``features``, ``guards``, ``store``,
``gateway``, ``telemetry``), are plain pydantic models, and import no other part of tether: the
subsystems read them. The names below are re-exported so ``tether.config.models`` names every
model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tether.config.base import Strict
from tether.config.budgets import (
    AlertsConfig,
    BudgetsConfig,
    CacheConfig,
    RateLimit,
    RateLimitsConfig,
    RequestBudget,
    ScopeBudget,
)
from tether.config.features import (
    ON_FAILURE_HINT,
    BreakerConfig,
    FeatureConfig,
    OnFailureConfig,
    PromptConfig,
    RetryConfig,
    TraceCaptureConfig,
    split_model_ref,
)
from tether.config.gateway import CorsConfig, GatewayConfig
from tether.config.guards import GuardsConfig, GuardSpec, StreamConfig
from tether.config.providers import (
    AnthropicProviderConfig,
    ApiKey,
    Headers,
    LocalProviderConfig,
    ModelPrice,
    OpenAIProviderConfig,
    ProviderConfig,
    ScriptedProviderConfig,
    ScriptedReplyConfig,
)
from tether.config.state import StateConfig
from tether.config.store import JournalConfig, StoreConfig
from tether.config.telemetry import TelemetryConfig

__all__ = [
    "ON_FAILURE_HINT",
    "AlertsConfig",
    "AnthropicProviderConfig",
    "ApiKey",
    "BreakerConfig",
    "BudgetsConfig",
    "CacheConfig",
    "CorsConfig",
    "FeatureConfig",
    "GatewayConfig",
    "GuardSpec",
    "GuardsConfig",
    "Headers",
    "JournalConfig",
    "LocalProviderConfig",
    "ModelPrice",
    "OnFailureConfig",
    "OpenAIProviderConfig",
    "PromptConfig",
    "ProviderConfig",
    "RateLimit",
    "RateLimitsConfig",
    "RequestBudget",
    "RetryConfig",
    "ScopeBudget",
    "ScriptedProviderConfig",
    "ScriptedReplyConfig",
    "StateConfig",
    "StoreConfig",
    "StreamConfig",
    "TelemetryConfig",
    "TetherConfig",
    "TraceCaptureConfig",
    "split_model_ref",
]


class TetherConfig(Strict):
    version: Literal[1] = 1
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    store: StoreConfig = Field(default_factory=StoreConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @model_validator(mode="before")
    @classmethod
    def _implicit_local(cls, data: Any) -> Any:
        """``local`` (the embedded model) is always available unless declared otherwise."""
        if isinstance(data, dict):
            providers = data.get("providers") or {}
            if isinstance(providers, dict) and "local" not in providers:
                data = {**data, "providers": {**providers, "local": {"kind": "local"}}}
        return data

    @model_validator(mode="after")
    def _references(self) -> TetherConfig:
        self._check_aliases()
        for fname, feature in self.features.items():
            for vname in ["default", *feature.variants]:
                prefix = "" if vname == "default" else f"variants.{vname}."
                for i, ref in enumerate(feature.variant(vname).chain):
                    provider, _ = split_model_ref(ref)
                    if provider not in self.providers:
                        where = "model" if i == 0 else f"fallbacks.{i - 1}"
                        known = ", ".join(sorted(self.providers))
                        raise ValueError(
                            f"features.{fname}.{prefix}{where}: model {ref!r} names provider "
                            f"{provider!r}, which is not declared under providers "
                            f"(declared: {known})"
                        )
            self._check_failure_chain(fname)
            other = feature.on_failure.feature
            if other is not None and self.features[other].kind != feature.kind:
                raise ValueError(
                    f"features.{fname}.on_failure.feature: {other!r} is a "
                    f"{self.features[other].kind} feature and {fname!r} a {feature.kind} one; "
                    f"name a {feature.kind} feature"
                )
        return self

    def _check_aliases(self) -> None:
        """An alias names one feature: not another feature's name, nor another's alias."""
        owner: dict[str, str] = {}
        for fname, feature in self.features.items():
            for alias in feature.aliases:
                taken = alias if alias in self.features else owner.get(alias)
                if taken is not None and taken != fname:
                    what = "the name" if alias in self.features else "an alias"
                    raise ValueError(
                        f"features.{fname}.aliases: {alias!r} is already {what} of feature "
                        f"{taken!r}; an alias names one feature"
                    )
                owner[alias] = fname

    def _check_failure_chain(self, start: str) -> None:
        seen = [start]
        current = self.features[start].on_failure.feature
        while current is not None:
            if current not in self.features:
                raise ValueError(
                    f"features.{seen[-1]}.on_failure.feature: {current!r} is not a "
                    f"declared feature (declared: {', '.join(sorted(self.features))})"
                )
            if current in seen:
                loop = " -> ".join([*seen, current])
                raise ValueError(
                    f"features.{start}.on_failure.feature: on_failure features form a loop: "
                    f"{loop}; end it with respond"
                )
            seen.append(current)
            current = self.features[current].on_failure.feature
