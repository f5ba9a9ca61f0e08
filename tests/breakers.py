"""The breaker config and chain the state tests share (in-process in
tests/unit/test_breaker_state.py, on Redis in tests/integration/test_state_redis.py): ``f``
falls back from ``up:m`` to ``spare:m`` and opens ``up:m``'s breaker after two failures of two
calls; ``g`` names the same upstream with a lenient policy."""

from __future__ import annotations

from tether.config import parse_config
from tether.config.models import FeatureConfig
from tether.providers.base import Model
from tether.providers.scripted import ScriptedProvider
from tether.resilience.chain import Chain, UpstreamHealth, build_chain

CONFIG = """
providers:
  up: {kind: scripted}
  spare: {kind: scripted}
features:
  f:
    prompt: {template: hi}
    model: up:m
    fallbacks: [spare:m]
    retry: {max_attempts: 1}
    breaker: {window: 2, min_calls: 2, failure_rate: 0.5, cooldown_s: 30}
    on_failure: {respond: sorry}
  g:
    prompt: {template: hi}
    model: up:m
    breaker: {window: 50, min_calls: 50, cooldown_s: 1}
    on_failure: {respond: sorry}
"""


def feature(config: str = CONFIG, name: str = "f") -> FeatureConfig:
    return parse_config(config, "t.yaml", {}).features[name]


def chain_on(
    health: UpstreamHealth,
    up: ScriptedProvider,
    spare: ScriptedProvider,
    config: str = CONFIG,
    name: str = "f",
) -> Chain:
    """Feature ``name``'s chain on ``health``, its upstreams answered by ``up`` and ``spare``."""
    providers = {"up": up, "spare": spare}

    def resolve(ref: str) -> Model:
        provider, model = ref.split(":")
        return providers[provider].model(model)

    return build_chain(feature(config, name), resolve, health)
