"""Which budget counters a call is held to: one per declared scope and dimension (``cost_usd``,
``tokens``), keyed on the feature, the scope's identity and the period, so every replica that
shares the state counts into the same one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tether.budgets.periods import Window, window
from tether.config.budgets import BudgetsConfig, BudgetScope, ScopeBudget
from tether.state.base import Counter, key_part

Dimension = Literal["cost_usd", "tokens"]
TTL_MARGIN_S = 3_600.0  # a counter outlives its period by this much (clock skew, late settles)
GLOBAL = "*"


@dataclass(frozen=True, slots=True)
class Held:
    """One counter a call is held to, with what it stands for."""

    scope: BudgetScope
    identity: str
    dimension: Dimension
    budget: ScopeBudget
    window: Window
    counter: Counter

    @property
    def limit(self) -> float:
        return self.counter.limit


def identity_of(
    scope: BudgetScope, feature: str, user: str | None, tenant: str | None, key: str | None
) -> str | None:
    """Who ``scope`` counts for on a call (None: the call has no such identity)."""
    if scope == "user":
        return user
    if scope == "tenant":
        return tenant
    if scope == "key":
        return key
    if scope == "feature":
        return feature
    return GLOBAL


def counter_key(
    feature: str, scope: BudgetScope, identity: str, dimension: Dimension, period: Window
) -> str:
    """The state key of one counter (without the deployment prefix: the backend adds it). The
    global scope is shared by every feature that declares it."""
    owner = "global" if scope == "global" else f"{key_part(feature)}:{scope}:{key_part(identity)}"
    return f"budget:{owner}:{dimension}:{period.label}"


def held(
    feature: str,
    budgets: BudgetsConfig,
    identities: dict[BudgetScope, str],
    now: float,
) -> list[Held]:
    """The counters of every declared scope whose identity is known, at ``now``."""
    found: list[Held] = []
    for scope, budget in budgets.scopes():
        identity = identities.get(scope)
        if identity is None:
            continue
        period = window(now, budget.per, budget.tz)
        ttl = max(period.end - now, 1.0) + TTL_MARGIN_S
        limits: list[tuple[Dimension, float | None]] = [
            ("cost_usd", budget.cost_usd),
            ("tokens", None if budget.tokens is None else float(budget.tokens)),
        ]
        for dimension, limit in limits:
            if limit is None:
                continue
            key = counter_key(feature, scope, identity, dimension, period)
            counter = Counter(key, limit, hard=budget.mode == "hard", ttl_s=ttl)
            found.append(Held(scope, identity, dimension, budget, period, counter))
    return found
