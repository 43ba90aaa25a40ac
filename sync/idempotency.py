"""Idempotency-Key replay for pushes: same key and body -> the stored response."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from store.errors import Invalid
from store.models import IdempotencyRecord
from store.types import utcnow

# The stored key's column width; a longer key is stored as its digest (cutting it would let
# two keys that share a prefix collide).
_KEY_MAX = 200


def normal_key(header: str | None) -> str:
    """The Idempotency-Key as stored ('' when absent)."""
    key = (header or "").strip()
    if len(key) > _KEY_MAX:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def body_hash(raw: bytes) -> str:
    """The fingerprint a key is bound to."""
    return hashlib.sha256(raw).hexdigest()


def replay(session: Session, user_id: str, key: str, digest: str) -> tuple[int, dict] | None:
    """The stored (status, body) for this key, None if new; 422 if the key came with another
    body. On PostgreSQL a retry sent while the first try still runs waits for it to end (then
    replays its answer) instead of running the push a second time."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(func.pg_advisory_xact_lock(func.hashtextextended(f"{user_id}:{key}", 0)))
        )
    row = session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.body_sha256 != digest:
        raise Invalid(
            "This Idempotency-Key was already used with a different body; "
            "use a new key for a new push.",
            reason="idempotency_key_reused",
        )
    return row.status_code, row.response


def remember(
    session: Session, user_id: str, key: str, digest: str, status: int, response: dict[str, Any]
) -> None:
    """Store a successful response in the same transaction as the push it answers."""
    session.add(
        IdempotencyRecord(
            user_id=user_id, key=key, body_sha256=digest, status_code=status, response=response
        )
    )


def purge(session: Session, retention: dt.timedelta) -> int:
    """Forget responses older than the retention."""
    result = session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - retention)
    )
    return result.rowcount or 0
