"""Gateway authentication: local mode, scoped keys, the verification cache, the admin token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.errors import AuthenticationFailed, PermissionDenied
from tether.gateway.auth import Authenticator, bearer
from tether.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.from_url(f"sqlite:///{tmp_path}/keys.db") as opened:
        yield opened


def test_bearer_and_x_api_key() -> None:
    assert bearer({"authorization": "Bearer abc"}) == "abc"
    assert bearer({"authorization": "bearer  abc "}) == "abc"
    assert bearer({"authorization": "Basic abc"}) is None
    assert bearer({"x-api-key": "k"}) == "k"
    assert bearer({}) is None


async def test_local_mode_until_a_key_exists(store: Store) -> None:
    now = [0.0]
    auth = Authenticator(store.keys, None, cache_ttl_s=5, clock=lambda: now[0])
    assert await auth.key({}) is None
    assert await auth.key({"authorization": "Bearer whatever"}) is None
    store.keys.create("svc", ["chat"])
    assert await auth.key({}) is None  # still cached as local mode
    now[0] = 10.0
    with pytest.raises(AuthenticationFailed, match="no API key"):
        await auth.key({})


async def test_scopes_and_revocation_within_the_cache_ttl(store: Store) -> None:
    now = [0.0]
    key_id, plaintext = store.keys.create("svc", ["chat"])
    auth = Authenticator(store.keys, None, cache_ttl_s=5, clock=lambda: now[0])
    headers = {"authorization": f"Bearer {plaintext}"}
    key = await auth.require_feature(headers, "chat")
    assert key is not None and key.id == key_id
    with pytest.raises(PermissionDenied, match="may not call feature 'billing'"):
        await auth.require_feature(headers, "billing")
    assert plaintext not in repr(auth._cache)
    store.keys.revoke(key_id)
    assert await auth.key(headers) is not None  # trusted until the cache entry expires
    now[0] = 6.0
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await auth.key(headers)
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


async def test_concurrent_calls_with_an_uncached_key_share_one_lookup(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plaintext = store.keys.create("svc", ["chat"])
    lookups: list[str] = []
    verify = store.keys.verify

    def counted(token: str) -> object:
        lookups.append(token)
        return verify(token)

    monkeypatch.setattr(store.keys, "verify", counted)
    auth = Authenticator(store.keys, None)
    headers = {"authorization": f"Bearer {plaintext}"}
    keys = await asyncio.gather(*(auth.key(headers) for _ in range(20)))
    assert {k.name for k in keys if k is not None} == {"svc"} and len(keys) == 20
    assert len(lookups) == 1


async def test_a_key_in_use_is_reverified_in_the_background(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    key_id, plaintext = store.keys.create("svc", ["chat"])
    lookups: list[float] = []
    verify = store.keys.verify

    def counted(token: str) -> object:
        lookups.append(now[0])
        return verify(token)

    monkeypatch.setattr(store.keys, "verify", counted)
    auth = Authenticator(store.keys, None, cache_ttl_s=4, clock=lambda: now[0])
    headers = {"authorization": f"Bearer {plaintext}"}
    await auth.key(headers)
    now[0] = 3.0  # past half the ttl: answered from the cache, refreshed behind it
    store.keys.revoke(key_id)
    assert await auth.key(headers) is not None
    for _ in range(100):  # the refresh runs in a worker thread
        if len(lookups) == 2 and not auth._cache._loading:
            break
        await asyncio.sleep(0.01)
    assert lookups == [0.0, 3.0]
    now[0] = 6.0  # 3 s after the refresh began: its answer (revoked) is in force, no new lookup
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await auth.key(headers)
    assert lookups == [0.0, 3.0]
