"""Who may call what: scoped API keys for features, an admin token for admin surfaces.

Keys are verified against the store (hashed at rest) and cached briefly in memory so the hot
path does not hit the database on every call; a revoked key stops working within
``cache_ttl_s``. Until the first key is created the gateway runs in local mode: calls without a
key are accepted, and ``tether serve`` binds to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tether.errors import AuthenticationFailed, PermissionDenied
from tether.store.keys import ApiKey, KeyStore, hash_key

ADMIN_TOKEN_ENV = "TETHER_ADMIN_TOKEN"


def bearer(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer KEY`` (the OpenAI SDKs) or ``x-api-key``."""
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


@dataclass
class Authenticator:
    keys: KeyStore
    admin_token: str | None
    cache_ttl_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, ApiKey | None]] = field(default_factory=dict)
    _any_keys: tuple[float, bool] = (-1e18, False)

    async def local_mode(self) -> bool:
        """True while no key was ever created (calls without a key are then accepted). Revoking
        every key does not reopen the gateway: once keys exist, keys are required."""
        checked_at, any_keys = self._any_keys
        if self.clock() - checked_at > self.cache_ttl_s:
            created = await asyncio.to_thread(self.keys.list, include_revoked=True)
            any_keys = bool(created)
            self._any_keys = (self.clock(), any_keys)
        return not any_keys

    async def key(self, headers: Mapping[str, str]) -> ApiKey | None:
        """The caller's key; None in local mode. Raises AuthenticationFailed."""
        if await self.local_mode():
            return None  # no key exists yet: local mode ignores whatever the client sends
        token = bearer(headers)
        if token is None:
            raise AuthenticationFailed(
                "no API key: send `Authorization: Bearer tth_...` (create one with "
                "`tether keys create --scope FEATURE`)"
            )
        digest = hash_key(token)  # the cache never holds a plaintext key
        cached = self._cache.get(digest)
        now = self.clock()
        if cached is not None and now - cached[0] <= self.cache_ttl_s:
            key = cached[1]
        else:
            key = await asyncio.to_thread(self.keys.verify, token)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, key)
        if key is None:
            raise AuthenticationFailed(
                "the API key is unknown or revoked; check it, or create a new one with "
                "`tether keys create --scope FEATURE`"
            )
        return key

    async def require_feature(self, headers: Mapping[str, str], feature: str) -> ApiKey | None:
        key = await self.key(headers)
        self.check_scope(key, feature)
        return key

    @staticmethod
    def check_scope(key: ApiKey | None, feature: str) -> None:
        if key is not None and not key.allows(feature):
            raise PermissionDenied(
                f"this key ({key.name or key.id}) may not call feature {feature!r}; its scopes "
                f"are {', '.join(key.scopes)}. Create a key with --scope {feature}"
            )

    def require_admin(self, headers: Mapping[str, str]) -> None:
        if not self.admin_token:
            raise PermissionDenied(
                f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV} before starting the gateway"
            )
        token = bearer(headers)
        if token is None:
            raise AuthenticationFailed(
                f"admin endpoints need `Authorization: Bearer ${ADMIN_TOKEN_ENV}`"
            )
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise PermissionDenied("wrong admin token")
