"""The in-process state backend's own promises (the shared ones are in
tests/integration/test_state.py, run against Redis too)."""

from __future__ import annotations

from tether.state import Bucket, Counter, MemoryState
from tether.state.memory import SWEEP_EVERY


async def test_memory_stays_bounded_as_users_come_and_go() -> None:
    now = [0.0]
    state = MemoryState(clock=lambda: now[0])
    for wave in range(3):  # each wave: new users, then an hour passes
        for n in range(SWEEP_EVERY):
            user = f"u{wave}-{n}"
            await state.reserve([Counter(f"budget:{user}", 10.0, ttl_s=60)], [1.0])
            await state.take([Bucket(f"rl:{user}", capacity=5, per_s=1)], [1])
            await state.put(f"cache:{user}", b"x", 60)
        now[0] += 3600
    sizes = len(state._counters), len(state._buckets), len(state._values)
    assert all(size <= 2 * SWEEP_EVERY for size in sizes), sizes  # not 3 waves' worth


async def test_a_bucket_full_again_is_as_good_as_absent() -> None:
    now = [0.0]
    state = MemoryState(clock=lambda: now[0])
    bucket = Bucket("rl:a", capacity=2, per_s=1)
    assert await state.take([bucket], [2]) == (0.0, None)
    now[0] += 2.0
    assert await state.take([bucket], [2]) == (0.0, None)  # refilled, not over-filled
    assert await state.take([bucket], [1]) == (1.0, 0)
