"""The response cache (a feature's ``cache: {ttl_s, scope, sampled}``): an exact cache of
answers in the shared state, so an entry one replica stores is a hit on every other.
:class:`CacheStage` says when it answers, what it stores and when it stands aside."""

from __future__ import annotations

from tether.cache.stage import CacheStage, stages

__all__ = ["CacheStage", "stages"]
