"""Budgets, rate limits, the response cache and budget alerts: the ``budgets``, ``rate_limits``
and ``cache`` keys of a feature and the top-level ``alerts`` section.

    budgets:
      request: {max_tokens: 800, max_cost_usd: 0.01}       # one call's worst case
      user:    {cost_usd: 1.0, per: day}                   # each user of this feature
      tenant:  {tokens: 2000000, per: month, mode: soft}
      key / feature / global: same shape                   # global: across every feature
      on_exceeded: degrade | reject        # degrade: failure path (200 degraded); reject: 429
      unknown_price: block | allow         # a model with no price, under a cost budget
    rate_limits: {key: {rpm: 60}, user: {rpm: 10, tpm: 20000}, upstream: {rpm: 500}}
    cache: {ttl_s: 600, scope: user}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tether.config.base import Strict

Period = Literal["minute", "hour", "day", "month"]
BudgetScope = Literal["user", "tenant", "key", "feature", "global"]
BUDGET_SCOPES: tuple[BudgetScope, ...] = ("user", "tenant", "key", "feature", "global")
LimitScope = Literal["key", "user", "tenant", "feature", "upstream"]


class RequestBudget(Strict):
    """One call's worst case (prompt tokens + max_tokens, priced) may not exceed these: the
    output limit is lowered to fit, and a prompt that alone exceeds them is refused."""

    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)


class ScopeBudget(Strict):
    """What one scope (a user, a tenant, a key, the feature, everything) may spend per
    calendar period (aligned in ``tz``, default UTC)."""

    cost_usd: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, ge=1)
    per: Period = "day"
    mode: Literal["hard", "soft"] = "hard"
    tz: str = "UTC"
    alerts: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0],
        description="Fractions of the limit at which an alert fires, once per period.",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> ScopeBudget:
        if self.cost_usd is None and self.tokens is None:
            raise ValueError("a budget needs cost_usd and/or tokens, e.g. {cost_usd: 5, per: day}")
        for fraction in self.alerts:
            if not 0 < fraction <= 10:
                raise ValueError(f"alerts: {fraction} is not a fraction of the limit (0 < f <= 10)")
        return self


class BudgetsConfig(Strict):
    request: RequestBudget | None = None
    user: ScopeBudget | None = None
    tenant: ScopeBudget | None = None
    key: ScopeBudget | None = None
    feature: ScopeBudget | None = None
    global_: ScopeBudget | None = Field(default=None, alias="global")
    on_exceeded: Literal["degrade", "reject"] = "degrade"
    unknown_price: Literal["block", "allow"] = "allow"
    default_max_tokens: int = Field(
        default=1024,
        ge=1,
        description="The output limit a call without max_tokens gets under a budget (its "
        "reservation needs a worst case).",
    )

    def scopes(self) -> list[tuple[BudgetScope, ScopeBudget]]:
        """The scope budgets declared, in order."""
        found = [(s, getattr(self, "global_" if s == "global" else s)) for s in BUDGET_SCOPES]
        return [(scope, budget) for scope, budget in found if budget is not None]

    @property
    def empty(self) -> bool:
        return self.request is None and not self.scopes()


class RateLimit(Strict):
    """Requests and tokens per minute (token buckets; the burst is one minute's worth)."""

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("a rate limit needs rpm and/or tpm, e.g. {rpm: 60}")
        return self


class RateLimitsConfig(Strict):
    """Over a limit the caller gets a 429 with Retry-After (the SDK: RateLimitExceeded);
    ``upstream`` paces the calls this feature makes to each model of its chain instead."""

    key: RateLimit | None = None
    user: RateLimit | None = None
    tenant: RateLimit | None = None
    feature: RateLimit | None = None
    upstream: RateLimit | None = None

    @property
    def empty(self) -> bool:
        scopes = ("key", "user", "tenant", "feature", "upstream")
        return all(getattr(self, scope) is None for scope in scopes)


class CacheConfig(Strict):
    """An exact cache of answers, keyed on the feature, its variant and config version and the
    normalised request; ``scope`` keeps entries apart per user or tenant."""

    ttl_s: float = Field(default=300.0, gt=0)
    scope: Literal["global", "user", "tenant"] = "global"
    sampled: bool = Field(
        default=False,
        description="Also cache requests with temperature > 0 (their answers vary by design).",
    )


class AlertsConfig(Strict):
    """Where budget alerts go: a JSON POST to ``webhook`` signed with HMAC-SHA256 of the body
    under ``secret`` (header ``x-tether-signature: sha256=HEX``), retried with backoff; every
    alert is also a log line."""

    webhook: str | None = None
    secret: str | None = None
    timeout_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
