"""Budgets: tokens and cost per request, user, tenant, key, feature and globally, reserved
before the call and settled after it, shared by every replica through the state backend.

``stages(name, feature, services)`` is what :class:`~tether.sdk.Tether` adds to a feature that
declares ``budgets`` (the :class:`~tether.budgets.stage.BudgetStage`, slot ``budget``);
:mod:`tether.budgets.tokens` counts prompts before the call, :mod:`tether.budgets.alerts`
sends threshold alerts, :mod:`tether.budgets.status` reports spending (``tether budgets
status``, ``GET /admin/budgets``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tether.budgets.stage import BudgetStage

if TYPE_CHECKING:
    from tether.config.features import FeatureConfig
    from tether.pipeline.services import Services
    from tether.pipeline.stages import Stage

__all__ = ["BudgetStage", "stages"]


def stages(name: str, feature: FeatureConfig, services: Services) -> list[Stage]:
    """The budget stage of feature ``name``; none when it declares no budget."""
    if feature.budgets.empty:
        return []
    return [BudgetStage(name, feature, services)]
