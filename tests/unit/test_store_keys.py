"""KeyStore: keys are shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tether.errors import KeyNotFound
from tether.store import Store, scope_allows
from tether.store.keys import hash_key, new_key
from tether.store.schema import KeyRow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.from_url(f"sqlite:///{tmp_path / 'tether.db'}") as opened:
        yield opened


def test_create_then_verify(store: Store) -> None:
    key_id, plaintext = store.keys.create("ci", ["support", "search"])
    assert plaintext.startswith("tth_") and len(plaintext) == 47
    key = store.keys.verify(plaintext)
    assert key is not None
    assert (key.id, key.name, key.scopes) == (key_id, "ci", ("search", "support"))
    assert plaintext.startswith(key.prefix) and len(key.prefix) == 12
    assert key.last_used_at is not None


def test_only_the_hash_is_stored(store: Store) -> None:
    _, plaintext = store.keys.create("ci", ["*"])
    with Session(store.engine) as session:
        row = session.scalars(select(KeyRow)).one()
    assert row.hash == hashlib.sha256(plaintext.encode()).hexdigest() == hash_key(plaintext)
    dump = "\n".join(str(v) for v in vars(row).values())
    assert plaintext not in dump
    assert plaintext[len(row.prefix) :] not in dump


@pytest.mark.parametrize("bad", [None, "", "tth_", "Bearer x", "sk-abc", "tth_" + "A" * 43])
def test_unknown_or_malformed_keys_are_refused(store: Store, bad: str | None) -> None:
    store.keys.create("ci", ["*"])
    assert store.keys.verify(bad) is None


def test_a_changed_character_is_refused(store: Store) -> None:
    _, plaintext = store.keys.create("ci", ["*"])
    last = "A" if plaintext[-1] != "A" else "B"
    assert store.keys.verify(plaintext[:-1] + last) is None


def test_scopes() -> None:
    assert scope_allows(["*"], "anything")
    assert scope_allows(["support"], "support")
    assert not scope_allows(["support"], "search")
    assert not scope_allows([], "support")


def test_key_allows_its_features_only(store: Store) -> None:
    _, plaintext = store.keys.create("web", ["support"])
    key = store.keys.verify(plaintext)
    assert key is not None
    assert key.allows("support") and not key.allows("search")
    _, admin = store.keys.create("admin", ["*"])
    admin_key = store.keys.verify(admin)
    assert admin_key is not None and admin_key.allows("search")


def test_a_key_needs_a_scope(store: Store) -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        store.keys.create("ci", [" "])


def test_revoke_by_id_or_prefix(store: Store) -> None:
    first_id, first = store.keys.create("a", ["*"])
    second_id, second = store.keys.create("b", ["*"])
    revoked = store.keys.revoke(first_id)
    assert revoked.revoked and revoked.revoked_at is not None
    assert store.keys.verify(first) is None
    assert store.keys.verify(second) is not None
    by_prefix = store.keys.revoke(second[:12])
    assert by_prefix.id == second_id
    assert store.keys.verify(second) is None
    again = store.keys.revoke(first_id)
    assert again.revoked_at == revoked.revoked_at  # the first revocation time is kept


def test_revoke_unknown(store: Store) -> None:
    with pytest.raises(KeyNotFound, match="tether keys list"):
        store.keys.revoke("nope")


def test_list_shows_every_key_without_secrets(store: Store) -> None:
    a, _ = store.keys.create("a", ["support"])
    b, _ = store.keys.create("b", ["*"])
    store.keys.revoke(a)
    assert [k.id for k in store.keys.list()] == [a, b]
    assert [k.id for k in store.keys.list(include_revoked=False)] == [b]
    assert all(not hasattr(k, "hash") for k in store.keys.list())


def test_last_used_is_refreshed_at_most_once_a_minute(store: Store) -> None:
    key_id, plaintext = store.keys.create("ci", ["*"])
    first = store.keys.verify(plaintext)
    second = store.keys.verify(plaintext)
    assert first is not None and second is not None
    assert second.last_used_at == first.last_used_at
    stale = datetime.now(UTC) - timedelta(minutes=5)
    with Session(store.engine) as session, session.begin():
        session.execute(update(KeyRow).where(KeyRow.id == key_id).values(last_used_at=stale))
    third = store.keys.verify(plaintext)
    assert third is not None and third.last_used_at is not None
    assert third.last_used_at > stale + timedelta(minutes=4)


def test_keys_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    with Store.from_url(url) as first:
        _, plaintext = first.keys.create("ci", ["support"])
    with Store.from_url(url) as second:
        key = second.keys.verify(plaintext)
        assert key is not None and key.allows("support")


async def test_averify(store: Store) -> None:
    _, plaintext = store.keys.create("ci", ["*"])
    key = await store.keys.averify(plaintext)
    assert key is not None


def test_new_keys_are_distinct_base62() -> None:
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(k[4:].isalnum() and k.isascii() for k in keys)


def test_a_key_carries_its_tenant(store: Store) -> None:
    key_id, plaintext = store.keys.create("acme-app", ["*"], tenant=" acme ")
    _, untenanted = store.keys.create("internal", ["*"])
    key = store.keys.verify(plaintext)
    assert key is not None and (key.id, key.tenant) == (key_id, "acme")
    other = store.keys.verify(untenanted)
    assert other is not None and other.tenant is None
    assert [k.tenant for k in store.keys.list()] == ["acme", None]
    with pytest.raises(ValueError, match="tenant cannot be empty"):
        store.keys.create("blank", ["*"], tenant="  ")
