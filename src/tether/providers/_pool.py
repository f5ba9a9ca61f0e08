"""A small pool of expensive objects (llama.cpp contexts), created lazily off the event loop.

At most ``size`` exist; a call takes a free one, creates one while fewer than ``size`` exist, or
waits for one to be released. ``load`` runs in a worker thread (loading weights takes a while and
must not block the loop); a load that fails frees its slot for the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ContextPool(Generic[T]):
    def __init__(self, load: Callable[[], T], size: int, close: Callable[[T], None]) -> None:
        self._load = load
        self._close = close
        self.size = size
        self.items: list[T] = []
        self._free: asyncio.Queue[T] | None = None
        self._created = 0

    async def acquire(self) -> T:
        """An object for one call: a free one, a new one, or the next one released."""
        if self._free is None:
            self._free = asyncio.Queue()
        if self._free.empty() and self._created < self.size:
            self._created += 1
            try:
                item = await asyncio.to_thread(self._load)
            except BaseException:
                self._created -= 1
                raise
            self.items.append(item)
            return item
        return await self._free.get()

    def release(self, item: T) -> None:
        assert self._free is not None
        self._free.put_nowait(item)

    def close(self) -> None:
        """Close every object created; the pool starts empty again."""
        for item in self.items:
            self._close(item)
        self.items.clear()
        self._free = None
        self._created = 0
