"""API keys for the gateway: created once, stored hashed, scoped to features.

A key looks like ``tth_<43 base62 characters>`` (256 random bits). Only its SHA-256 is stored,
with a short display prefix (``tth_AbCd1234``) so people can tell keys apart in ``tether keys
list``. The gateway turns the outcomes into HTTP: no key or an unknown/revoked key → 401;
a valid key whose scopes do not include the feature → 403 (:meth:`ApiKey.allows`).

Why SHA-256 and not bcrypt/scrypt/argon2: slow, salted KDFs exist to protect *low-entropy*
secrets (human passwords) from offline guessing after a database leak. A tether key is 256 bits
from ``secrets``; even at 10^12 guesses per second, searching 2^256 values is out of reach, so a
fast hash is exactly as strong here. A fast, unsalted hash also keeps verification at
microseconds on every request and lets the store find a key by an indexed hash lookup
instead of running a KDF against every stored key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.orm import Session

from tether.errors import KeyNotFound
from tether.store.schema import KeyRow

KEY_PREFIX = "tth_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43  # ceil(256 / log2(62))
_KEY_SHAPE = re.compile(rf"^{KEY_PREFIX}[0-9A-Za-z]{{{_BODY_LEN}}}$")
_DISPLAY_LEN = len(KEY_PREFIX) + 8
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    tenant: str | None = None  # the tenant its calls are for; a caller cannot name another

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, feature: str) -> bool:
        """Whether this key may call ``feature`` (scope ``"*"`` allows every feature)."""
        return scope_allows(self.scopes, feature)


ApiKeys = list[ApiKey]


def scope_allows(scopes: Iterable[str], feature: str) -> bool:
    """``"*"`` means every feature; otherwise the feature must be listed."""
    return any(scope in ("*", feature) for scope in scopes)


def hash_key(plaintext: str) -> str:
    """The stored form of a key: SHA-256, hex (see the module docstring for why that is enough)."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh ``tth_`` key carrying 256 random bits in base62."""
    number = int.from_bytes(secrets.token_bytes(32), "big")
    digits = []
    for _ in range(_BODY_LEN):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return KEY_PREFIX + "".join(digits)


class KeyStore:
    """Create, verify, list and revoke keys on an engine it does not own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self, name: str, scopes: Iterable[str], *, tenant: str | None = None
    ) -> tuple[str, str]:
        """Store a new key; returns ``(key_id, plaintext)``. The plaintext is not kept anywhere:
        show it to the user once. A key with a ``tenant`` calls for that tenant only (budgets,
        rate limits and a tenant-scoped cache count its calls there)."""
        scope_list = sorted({s.strip() for s in scopes if s.strip()})
        if not scope_list:
            raise ValueError("a key needs at least one scope: a feature name, or '*' for all")
        if tenant is not None and not tenant.strip():
            raise ValueError("a key's tenant cannot be empty: leave --tenant out, or name it")
        plaintext = new_key()
        key_id = secrets.token_hex(6)
        row = KeyRow(
            id=key_id,
            name=name,
            prefix=plaintext[:_DISPLAY_LEN],
            hash=hash_key(plaintext),
            scopes=scope_list,
            created_at=datetime.now(UTC),
            tenant=tenant.strip() if tenant is not None else None,
        )
        with Session(self._engine) as session, session.begin():
            session.add(row)
        return key_id, plaintext

    def verify(self, plaintext: str | None) -> ApiKey | None:
        """The live key for ``plaintext``, or ``None`` (missing, malformed, unknown, revoked).

        The lookup is by hash, so timing reveals nothing about the secret; the final comparison
        is constant-time anyway. ``last_used_at`` is refreshed at most once a minute.
        """
        if not plaintext or not _KEY_SHAPE.match(plaintext):
            return None
        digest = hash_key(plaintext)
        with Session(self._engine) as session:
            row = session.scalar(select(KeyRow).where(KeyRow.hash == digest))
            if row is None or not hmac.compare_digest(row.hash, digest):
                return None
            if row.revoked_at is not None:
                return None
            key = _to_key(row)
        return self._touch(key)

    async def averify(self, plaintext: str | None) -> ApiKey | None:
        """:meth:`verify` in a worker thread, for async callers."""
        return await asyncio.to_thread(self.verify, plaintext)

    def list(self, *, include_revoked: bool = True) -> ApiKeys:
        """Every key, oldest first."""
        query = select(KeyRow).order_by(KeyRow.created_at, KeyRow.id)
        if not include_revoked:
            query = query.where(KeyRow.revoked_at.is_(None))
        with Session(self._engine) as session:
            return [_to_key(row) for row in session.scalars(query)]

    def revoke(self, key: str) -> ApiKey:
        """Revoke by id or by display prefix; revoking twice keeps the first time.

        Raises :class:`KeyNotFound` when nothing (or more than one key) matches.
        """
        with Session(self._engine) as session, session.begin():
            rows = session.scalars(
                select(KeyRow).where(or_(KeyRow.id == key, KeyRow.prefix == key)).limit(2)
            ).all()
            if len(rows) != 1:
                problem = "matches more than one key" if rows else "matches no key"
                raise KeyNotFound(f"{key!r} {problem}; pass an id from `tether keys list`")
            row = rows[0]
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            session.flush()
            return _to_key(row)

    def _touch(self, key: ApiKey) -> ApiKey:
        now = datetime.now(UTC)
        if key.last_used_at is not None and now - key.last_used_at < _TOUCH_EVERY:
            return key
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(KeyRow)
                .where(KeyRow.id == key.id)
                .where(or_(KeyRow.last_used_at.is_(None), KeyRow.last_used_at < now - _TOUCH_EVERY))
                .values(last_used_at=now)
            )
        return dataclasses.replace(key, last_used_at=now)


def _to_key(row: KeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        tenant=row.tenant,
    )
