"""Stored Responses API answers on SQLite and PostgreSQL: written whole, read back only by the
key that stored them, and odd values (NUL, NaN) stored as every backend can hold them."""

from __future__ import annotations

from datetime import UTC, datetime

from tether.store import Store
from tether.store.responses import StoredResponse


def stored(owner: str | None) -> StoredResponse:
    return StoredResponse(
        id="resp_1",
        owner=owner,
        feature="assistant",
        trace_id="t1",
        input=[{"type": "message", "role": "user", "content": "a\x00b"}],
        output=[{"type": "message", "role": "assistant", "content": [], "score": float("nan")}],
        response={"id": "resp_1", "object": "response", "output": []},
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def test_a_stored_response_is_read_back_by_its_owner_only(store_url: str) -> None:
    with Store.from_url(store_url) as store:
        store.responses.save(stored("key_a"))
        got = store.responses.get("resp_1", "key_a")
        assert got is not None
        assert got.input == [{"type": "message", "role": "user", "content": "a\ufffdb"}]
        assert got.output[0]["score"] is None
        assert got.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert store.responses.get("resp_1", "key_b") is None
        assert store.responses.get("resp_1", None) is None  # local mode is no owner of it
        assert store.responses.get("resp_2", "key_a") is None


def test_local_mode_responses_belong_to_no_key(store_url: str) -> None:
    with Store.from_url(store_url) as store:
        store.responses.save(stored(None))
        assert store.responses.get("resp_1", None) is not None
        assert store.responses.get("resp_1", "key_a") is None


def test_only_the_owner_deletes_and_old_responses_are_pruned(store_url: str) -> None:
    with Store.from_url(store_url) as store:
        store.responses.save(stored("key_a"))
        assert store.responses.delete("resp_1", "key_b") is False
        assert store.responses.delete("resp_1", None) is False
        assert store.responses.delete("resp_1", "key_a") is True
        assert store.responses.get("resp_1", "key_a") is None
        store.responses.save(stored(None))
        assert store.responses.prune(datetime(2026, 1, 1, tzinfo=UTC)) == 0
        assert store.responses.prune(datetime(2026, 1, 3, tzinfo=UTC)) == 1
        assert store.responses.get("resp_1", None) is None
