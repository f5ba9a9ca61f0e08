"""Where each budget of a feature stands now: spent, reserved, limit, mode and the period's
reset, for ``tether budgets status`` and ``GET /admin/budgets``. A scope whose identity is not
given (``user``, ``tenant``, ``key``) is left out: its counters exist per identity."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tether.budgets.scopes import Dimension, held, identity_of
from tether.config.budgets import BudgetScope, Period

if TYPE_CHECKING:
    from tether.pipeline.services import Services


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    """One scope and dimension of a feature's budget in its current period (``identity``:
    the user, tenant or key id; None for the feature and global scopes)."""

    scope: BudgetScope
    identity: str | None
    dimension: Dimension
    spent: float
    reserved: float
    limit: float
    mode: str
    period: Period
    period_start: float
    resets_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def status(
    services: Services,
    feature: str,
    *,
    user: str | None = None,
    tenant: str | None = None,
    key: str | None = None,
    now: float | None = None,
) -> list[ScopeStatus]:
    """The budgets of ``feature`` (its name as in the config) for the identities given, read
    from the state backend in one call (raises StateUnavailable when it cannot be read)."""
    budgets = services.config.features[feature].budgets
    identities: dict[BudgetScope, str] = {}
    for scope, _ in budgets.scopes():
        who = identity_of(scope, feature, user, tenant, key)
        if who is not None:
            identities[scope] = who
    at = time.time() if now is None else now
    counters = held(feature, budgets, identities, at)
    if not counters:
        return []
    levels = await services.state.backend.levels([h.counter.key for h in counters])
    return [
        ScopeStatus(
            scope=h.scope,
            identity=h.identity if h.scope in ("user", "tenant", "key") else None,
            dimension=h.dimension,
            spent=level.spent,
            reserved=level.reserved,
            limit=h.limit,
            mode=h.budget.mode,
            period=h.budget.per,
            period_start=h.window.start,
            resets_at=h.window.end,
        )
        for h, level in zip(counters, levels, strict=True)
    ]
