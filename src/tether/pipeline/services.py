"""What the stages of every feature share, built once per :class:`~tether.sdk.Tether`: the
state backend (budgets, limits, cache, breakers), the prices, the token counter and the alert
sender. Each pillar turns a feature's config and these into its stages
(``tether.budgets.stages``, ``tether.limits.stages``, ``tether.cache.stages``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.budgets.alerts import Alerts
    from tether.budgets.tokens import TokenCounter
    from tether.config.models import TetherConfig
    from tether.providers.pricing import PriceTable
    from tether.state.policy import SharedState


@dataclass(slots=True)
class Services:
    config: TetherConfig
    state: SharedState  # the backend with the config's on_unavailable policy
    prices: PriceTable  # the packaged table with each provider's ``prices`` over it
    tokens: TokenCounter
    alerts: Alerts
