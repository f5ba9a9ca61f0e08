"""Stream helpers shared by the resilience wrappers.

A stream is *committed* once its first content chunk has been handed on: before that, retry and
fallback may still switch upstream; after it, they never do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from tether.types import ModelChunk


async def pull_until_content(stream: AsyncIterator[ModelChunk]) -> list[ModelChunk]:
    """Read chunks up to and including the first content-bearing one (or to the end)."""
    head: list[ModelChunk] = []
    async for chunk in stream:
        head.append(chunk)
        if chunk.has_content:
            break
    return head


async def close_quietly(stream: AsyncIterator[ModelChunk]) -> None:
    """Close an async generator we stopped reading (a no-op for plain iterators)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
