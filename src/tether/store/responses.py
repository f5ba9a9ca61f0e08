"""Stored Responses API answers: what ``previous_response_id`` continues from.

A stored response is written before the gateway answers (an acknowledged ``store: true``
response is durable) and read by id, only by the API key that created it: a lookup by another
key finds nothing, exactly as if the id did not exist; only that key can delete it.
:meth:`ResponseStore.prune` deletes those older than a time (a retention policy). Methods are
synchronous and short; async callers run them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, delete, select
from sqlalchemy.orm import Session

from tether.store.rows import jsonable
from tether.store.schema import ResponseRow


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One stored response. ``input`` and ``output`` are Responses API items (the input as
    the model saw it, earlier turns included); ``response`` is the response object as
    ``GET /v1/responses/{id}`` returns it; ``owner`` the creating key's id (None: local mode)."""

    id: str
    owner: str | None
    feature: str
    trace_id: str
    input: list[Any]
    output: list[Any]
    response: dict[str, Any]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ResponseStore:
    """The ``responses`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def save(self, stored: StoredResponse) -> None:
        """Write ``stored`` and commit (values every backend can hold as JSON)."""
        row = ResponseRow(
            id=stored.id,
            owner=stored.owner,
            feature=stored.feature,
            trace_id=stored.trace_id,
            created_at=stored.created_at,
            input=jsonable(stored.input),
            output=jsonable(stored.output),
            response=jsonable(stored.response),
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)

    def get(self, response_id: str, owner: str | None) -> StoredResponse | None:
        """The response ``response_id`` if ``owner`` created it, else None (whether it does
        not exist or another key stored it: a caller cannot tell the two apart)."""
        with Session(self.engine) as session:
            row = session.scalars(select(ResponseRow).where(ResponseRow.id == response_id)).first()
        if row is None or row.owner != owner:
            return None
        return StoredResponse(
            id=row.id,
            owner=row.owner,
            feature=row.feature,
            trace_id=row.trace_id,
            input=list(row.input),
            output=list(row.output),
            response=dict(row.response),
            created_at=row.created_at,
        )

    def delete(self, response_id: str, owner: str | None) -> bool:
        """Delete the response ``response_id`` if ``owner`` created it; whether it did."""
        with Session(self.engine) as session, session.begin():
            gone = session.execute(
                delete(ResponseRow).where(ResponseRow.id == response_id, _owned_by(owner))
            )
            return bool(getattr(gone, "rowcount", 0))

    def prune(self, before: datetime) -> int:
        """Delete responses created before ``before``; returns how many."""
        with Session(self.engine) as session, session.begin():
            gone = session.execute(delete(ResponseRow).where(ResponseRow.created_at < before))
            return int(getattr(gone, "rowcount", 0))


def _owned_by(owner: str | None) -> ColumnElement[bool]:
    return ResponseRow.owner.is_(None) if owner is None else ResponseRow.owner == owner
