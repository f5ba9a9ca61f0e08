"""Who may call what: scoped API keys for features, an admin token for admin surfaces.

Keys are verified against the store (hashed at rest) and cached briefly in memory so the hot
path does not hit the database on every call; a revoked key stops working within
``cache_ttl_s``. A key in use is re-verified in the background once half that time has passed,
so its callers never wait on the database, and however many calls arrive with an expired key,
the database is asked once. Until the first key is created the gateway runs in local mode:
calls without a key are accepted, ``tether serve`` binds to 127.0.0.1 only, and a request must
name a loopback ``Host`` and come from no ``Origin`` or a loopback one (or one listed in
``gateway.cors``): a web page elsewhere cannot make a browser call it (cross-site requests,
DNS rebinding).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tether.config.gateway import normalize_origin
from tether.errors import AuthenticationFailed, PermissionDenied
from tether.store.keys import ApiKey, KeyStore, hash_key

ADMIN_TOKEN_ENV = "TETHER_ADMIN_TOKEN"
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
LEAVE_LOCAL_MODE = "create an API key (`tether keys create --scope FEATURE`) to serve other hosts"


def is_loopback_name(name: str) -> bool:
    """``localhost``, ``127.0.0.1`` (any of 127/8) or ``::1``."""
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str) -> bool:
    """A ``Host`` header naming this machine's loopback: ``127.0.0.1:8080``, ``[::1]``, ..."""
    host = host.strip()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        return bool(bracket) and (not rest or rest[1:].isdigit()) and is_loopback_name(name)
    name, _, port = host.partition(":")
    return (not port or port.isdigit()) and is_loopback_name(name)


def is_loopback_origin(origin: str) -> bool:
    try:
        normalized = normalize_origin(origin)
    except ValueError:
        return False  # "null" (sandboxed frames, files) and anything else that is no origin
    return is_loopback_host(normalized.partition("://")[2])


def bearer(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer KEY`` (the OpenAI SDKs) or ``x-api-key``."""
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


@dataclass
class LoadingCache(Generic[K, V]):
    """Values loaded in a worker thread and trusted for ``ttl_s`` from when their load began.

    An entry used after half its ``ttl_s`` is reloaded in the background while callers keep
    getting it; only an entry older than ``ttl_s`` (or missing) makes callers wait, and
    concurrent callers then share one load.
    """

    ttl_s: float
    clock: Callable[[], float]
    max_entries: int = 10_000
    entries: dict[K, tuple[float, V]] = field(default_factory=dict)
    _loading: dict[K, asyncio.Future[V]] = field(default_factory=dict)

    async def get(self, key: K, load: Callable[[], V]) -> V:
        entry = self.entries.get(key)
        if entry is not None:
            age = self.clock() - entry[0]
            if age <= self.ttl_s:
                if age > self.ttl_s / 2 and key not in self._loading:
                    self._start(key, load)
                return entry[1]
        loading = self._loading.get(key) or self._start(key, load)
        return await asyncio.shield(loading)  # a cancelled caller leaves the load to others

    def _start(self, key: K, load: Callable[[], V]) -> asyncio.Future[V]:
        started = self.clock()
        loading = asyncio.get_running_loop().run_in_executor(None, load)
        self._loading[key] = loading

        def settle(done: asyncio.Future[V]) -> None:
            self._loading.pop(key, None)
            if done.cancelled() or done.exception() is not None:
                return  # waiting callers get the error; a background refresh tries again later
            if len(self.entries) >= self.max_entries:
                self.entries.clear()
            self.entries[key] = (started, done.result())

        loading.add_done_callback(settle)
        return loading


@dataclass
class Authenticator:
    keys: KeyStore
    admin_token: str | None
    cache_ttl_s: float = 5.0
    allowed_origins: frozenset[str] = frozenset()  # gateway.cors.allow_origins
    clock: Callable[[], float] = time.monotonic
    _cache: LoadingCache[str, ApiKey | None] = field(init=False)
    _any_keys: LoadingCache[str, bool] = field(init=False)
    _keys_exist: bool = False

    def __post_init__(self) -> None:
        self._cache = LoadingCache(self.cache_ttl_s, self.clock)
        self._any_keys = LoadingCache(self.cache_ttl_s, self.clock)

    async def local_mode(self) -> bool:
        """True while no key was ever created (calls without a key are then accepted). Revoking
        every key does not reopen the gateway: once keys exist, keys are required."""
        if not self._keys_exist:
            self._keys_exist = await self._any_keys.get("any", self._created_any)
        return not self._keys_exist

    def _created_any(self) -> bool:
        return bool(self.keys.list(include_revoked=True))

    async def key(self, headers: Mapping[str, str]) -> ApiKey | None:
        """The caller's key; None in local mode. Raises AuthenticationFailed."""
        if await self.local_mode():
            self.check_local(headers)
            return None  # no key exists yet: local mode ignores whatever key the client sends
        token = bearer(headers)
        if token is None:
            raise AuthenticationFailed(
                "no API key: send `Authorization: Bearer tth_...` (create one with "
                "`tether keys create --scope FEATURE`)"
            )
        # keyed by the hash: the cache never holds a plaintext key
        key = await self._cache.get(hash_key(token), functools.partial(self.keys.verify, token))
        if key is None:
            raise AuthenticationFailed(
                "the API key is unknown or revoked; check it, or create a new one with "
                "`tether keys create --scope FEATURE`"
            )
        return key

    def check_local(self, headers: Mapping[str, str]) -> None:
        """In local mode: refuse a request for a host that is not loopback (DNS rebinding) or
        from a web page's origin that is neither loopback nor listed in ``gateway.cors``."""
        host = headers.get("host")
        if host is not None and not is_loopback_host(host):
            raise PermissionDenied(
                f"local mode (no API key exists yet) answers requests for 127.0.0.1, localhost "
                f"or [::1] only, and this one is for {host[:100]!r}, as a web page elsewhere can "
                f"make a browser send; call http://127.0.0.1:PORT, or {LEAVE_LOCAL_MODE}",
                reason="local_mode_refused",
            )
        origin = headers.get("origin")
        if origin is None or is_loopback_origin(origin):
            return
        try:
            listed = normalize_origin(origin) in self.allowed_origins
        except ValueError:
            listed = False
        if not listed:
            raise PermissionDenied(
                f"local mode (no API key exists yet) answers web pages on loopback origins "
                f"only, and this request comes from {origin[:100]!r}; list the origin in "
                f"gateway.cors.allow_origins, or {LEAVE_LOCAL_MODE}",
                reason="local_mode_refused",
            )

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
