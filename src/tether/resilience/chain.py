"""Compose a feature's resilient model: per upstream ``WithRetry(WithBreaker(Recorded(
WithTimeout(model))))``, then ``Fallback`` across the chain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tether.config.models import BreakerConfig, FeatureConfig, RetryConfig
from tether.providers.base import Model
from tether.resilience.breaker import CircuitBreaker, WithBreaker
from tether.resilience.fallback import Fallback
from tether.resilience.recorder import Recorded
from tether.resilience.retry import RetryBudget, WithRetry
from tether.resilience.timeout import WithTimeout


@dataclass
class UpstreamHealth:
    """Breakers and retry budgets, one per upstream (``provider:model``), shared by every
    feature that calls it. The first feature to name an upstream sets its breaker policy."""

    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    budgets: dict[str, RetryBudget] = field(default_factory=dict)

    def breaker(self, upstream: str, config: BreakerConfig) -> CircuitBreaker:
        if upstream not in self.breakers:
            self.breakers[upstream] = CircuitBreaker(upstream, config)
        return self.breakers[upstream]

    def budget(self, upstream: str, config: RetryConfig) -> RetryBudget:
        if upstream not in self.budgets:
            self.budgets[upstream] = RetryBudget(config.budget_ratio, config.budget_min_retries)
        return self.budgets[upstream]


def build_chain(
    feature: FeatureConfig, resolve: Callable[[str], Model], health: UpstreamHealth
) -> Model:
    """``resolve`` turns a ``provider:model`` reference into the provider's bare model."""
    wrapped: list[Model] = []
    for ref in feature.chain:
        model: Model = WithTimeout(resolve(ref), feature.timeout_s, feature.first_token_timeout_s)
        model = Recorded(model, ref)
        model = WithBreaker(model, health.breaker(model.name, feature.breaker))
        model = WithRetry(model, feature.retry, health.budget(model.name, feature.retry))
        wrapped.append(model)
    return Fallback(wrapped)
