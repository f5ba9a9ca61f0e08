"""What several ``tether serve`` replicas share: budget counters, rate-limit buckets, breaker
state, retry budgets, cache entries. One protocol (:class:`State`), two backends
(:class:`MemoryState`, the default; ``tether.state.redis.RedisState``, shared through Redis),
and one policy for when the backend is down (:class:`SharedState`).
"""

from tether.state.base import (
    Admission,
    Bucket,
    Counter,
    Level,
    Outcome,
    Reservation,
    State,
    key_part,
)
from tether.state.memory import MemoryState
from tether.state.policy import SharedState, open_state

__all__ = [
    "Admission",
    "Bucket",
    "Counter",
    "Level",
    "MemoryState",
    "Outcome",
    "Reservation",
    "SharedState",
    "State",
    "key_part",
    "open_state",
]
