"""Resilience: each concern a wrapper around the model interface.

Per upstream: ``WithRetry(WithBreaker(Recorded(WithTimeout(model))))``; across upstreams: a
:class:`Chain` (a ``Fallback`` that knows each model's position). :func:`build_chain` composes
them for a feature.
"""

from tether.resilience.breaker import CircuitBreaker, WithBreaker
from tether.resilience.chain import Chain
from tether.resilience.fallback import Fallback
from tether.resilience.recorder import Recorded
from tether.resilience.retry import RetryBudget, WithRetry
from tether.resilience.timeout import WithTimeout

__all__ = [
    "Chain",
    "CircuitBreaker",
    "Fallback",
    "Recorded",
    "RetryBudget",
    "WithBreaker",
    "WithRetry",
    "WithTimeout",
]
