"""The ``state:`` section of ``tether.yaml``: where what replicas share lives (budget counters,
rate-limit buckets, breaker state, retry budgets, cache entries).

``memory`` (the default) keeps it in the process; ``redis`` shares it between every
``tether serve`` replica pointed at the same server. When Redis cannot be reached,
``on_unavailable`` decides: ``fail_closed`` (the default) sends calls that need the state to
their failure path (reason ``state_unavailable``), ``fail_open`` lets them through unchecked and
says so on the trace, in the log and in the ``tether_state_unavailable_total`` metric. tether
never quietly counts per process instead, and uses Redis again as soon as it answers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tether.config.base import Strict


class StateConfig(Strict):
    backend: Literal["memory", "redis"] = "memory"
    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="The Redis server (backend: redis); ${REDIS_URL} works.",
    )
    on_unavailable: Literal["fail_closed", "fail_open"] = "fail_closed"
    prefix: str = Field(
        default="tether:",
        description="Prefix of every key tether writes (several deployments can share a server).",
    )
    timeout_s: float = Field(
        default=0.5,
        gt=0,
        description="How long a state operation may take before Redis counts as unavailable.",
    )
