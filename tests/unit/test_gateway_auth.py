"""Gateway authentication: local mode, scoped keys, the verification cache, the admin token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tether.errors import AuthenticationFailed, PermissionDenied
from tether.gateway.auth import Authenticator, bearer
from tether.store import Store
from tether.store.keys import ApiKey, ApiKeys, KeyStore


class CountingKeyStore(KeyStore):
    """The SQLite key store, noting when (on the test's clock) the authenticator asks it."""

    def __init__(self, store: Store, clock: Callable[[], float] = lambda: 0.0) -> None:
        super().__init__(store.engine)
        self.clock = clock
        self.lookups: list[float] = []  # verify(): one key
        self.listings: list[float] = []  # list(): does any key exist (local mode)?

    def verify(self, plaintext: str | None) -> ApiKey | None:
        self.lookups.append(self.clock())
        return super().verify(plaintext)

    def list(self, *, include_revoked: bool = True) -> ApiKeys:
        self.listings.append(self.clock())
        return super().list(include_revoked=include_revoked)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.from_url(f"sqlite:///{tmp_path}/keys.db") as opened:
        yield opened


async def settled(auth: Authenticator) -> None:
    """Wait until the background re-verifications (worker threads) have landed."""
    for _ in range(500):
        if not auth._cache._loading and not auth._any_keys._loading:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a background key lookup did not finish within 5 s")


def test_bearer_and_x_api_key() -> None:
    assert bearer({"authorization": "Bearer abc"}) == "abc"
    assert bearer({"authorization": "bearer  abc "}) == "abc"
    assert bearer({"authorization": "Basic abc"}) is None
    assert bearer({"x-api-key": "k"}) == "k"
    assert bearer({}) is None


async def test_local_mode_until_a_key_exists(store: Store) -> None:
    now = [0.0]
    keys = CountingKeyStore(store, lambda: now[0])
    auth = Authenticator(keys, None, cache_ttl_s=5, clock=lambda: now[0])
    assert await auth.key({}) is None
    assert await auth.key({"authorization": "Bearer whatever"}) is None
    store.keys.create("svc", ["chat"])
    assert await auth.key({}) is None  # still cached as local mode
    assert keys.listings == [0.0] and keys.lookups == []
    now[0] = 10.0
    with pytest.raises(AuthenticationFailed, match="no API key"):
        await auth.key({})
    now[0] = 20.0
    with pytest.raises(AuthenticationFailed, match="no API key"):
        await auth.key({})
    assert keys.listings == [0.0, 10.0]  # once keys exist, they always will: no more listing


async def test_scopes_and_revocation_within_the_cache_ttl(store: Store) -> None:
    now = [0.0]
    keys = CountingKeyStore(store, lambda: now[0])
    key_id, plaintext = store.keys.create("svc", ["chat"])
    auth = Authenticator(keys, None, cache_ttl_s=5, clock=lambda: now[0])
    headers = {"authorization": f"Bearer {plaintext}"}
    key = await auth.require_feature(headers, "chat")
    assert key is not None and key.id == key_id
    with pytest.raises(PermissionDenied, match="may not call feature 'billing'"):
        await auth.require_feature(headers, "billing")
    assert plaintext not in repr(auth._cache)
    store.keys.revoke(key_id)
    assert await auth.key(headers) is not None  # trusted until the cache entry expires
    assert keys.lookups == [0.0]  # three calls, one lookup
    now[0] = 6.0  # the entry is older than cache_ttl_s: looked up again, found revoked
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await auth.key(headers)
    assert keys.lookups == [0.0, 6.0]
    with pytest.raises(AuthenticationFailed, match="no API key"):
        await auth.key({})  # revoking the last key does not reopen the gateway


def test_admin_token(store: Store) -> None:
    with pytest.raises(PermissionDenied, match="TETHER_ADMIN_TOKEN"):
        Authenticator(store.keys, None).require_admin({"authorization": "Bearer x"})
    auth = Authenticator(store.keys, "s3cret")
    with pytest.raises(AuthenticationFailed):
        auth.require_admin({})
    with pytest.raises(PermissionDenied, match="wrong admin token"):
        auth.require_admin({"authorization": "Bearer nope"})
    auth.require_admin({"authorization": "Bearer s3cret"})


async def test_concurrent_calls_with_an_uncached_key_share_one_lookup(store: Store) -> None:
    _, plaintext = store.keys.create("svc", ["chat"])
    keys = CountingKeyStore(store)
    auth = Authenticator(keys, None)
    headers = {"authorization": f"Bearer {plaintext}"}
    found = await asyncio.gather(*(auth.key(headers) for _ in range(20)))
    assert {k.name for k in found if k is not None} == {"svc"} and len(found) == 20
    assert len(keys.lookups) == 1 and len(keys.listings) == 1


async def test_a_key_in_use_is_reverified_in_the_background(store: Store) -> None:
    now = [0.0]
    keys = CountingKeyStore(store, lambda: now[0])
    key_id, plaintext = store.keys.create("svc", ["chat"])
    auth = Authenticator(keys, None, cache_ttl_s=4, clock=lambda: now[0])
    headers = {"authorization": f"Bearer {plaintext}"}
    await auth.key(headers)
    now[0] = 1.9  # within half the ttl: the cache answers, nothing is looked up
    assert await auth.key(headers) is not None
    await settled(auth)
    assert keys.lookups == [0.0]
    now[0] = 3.0  # past half the ttl: answered from the cache, refreshed behind it
    store.keys.revoke(key_id)
    found = await asyncio.gather(*(auth.key(headers) for _ in range(5)))
    assert all(k is not None for k in found)  # the callers did not wait for the refresh ...
    await settled(auth)
    assert keys.lookups == [0.0, 3.0]  # ... and the five of them started one
    now[0] = 6.0  # 3 s after the refresh began: its answer (revoked) is in force, no new lookup
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await auth.key(headers)
    assert keys.lookups == [0.0, 3.0]
