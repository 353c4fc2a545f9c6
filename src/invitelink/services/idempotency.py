"""Idempotency-Key: within a day, the same key from the same credential with the same request gets the first
answer again and creates nothing; with another request, 422. The record is written in the create's own
transaction (through the write seam), so an answer is replayable exactly when what it describes is stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from hashlib import sha256
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import IdempotencyRecord, utcnow
from invitelink.services.errors import Conflict, Unprocessable

KEPT_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# Fields of create answers that reveal a secret (shown once): replays carry null in their place.
SECRET_FIELDS = frozenset({"secret", "key", "callback_secret", "api_url", "hmac_secret", "access_token"})


class KeyReused(Unprocessable):
    """The key was used for another request, or is no key at all."""


@dataclass(frozen=True)
class Stored:
    """An answer: as first given, or (``replayed``) as given again for a repeated key."""

    status_code: int
    body: Any
    replayed: bool = False


@dataclass(frozen=True)
class Keyed:
    """A request that carries an Idempotency-Key: the key, and the fingerprint of what was asked."""

    key: str
    fingerprint: str


def credential_of(secret: str) -> str:
    return sha256(secret.encode()).hexdigest()


class _Request(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def url(self) -> Any: ...


def fingerprint(request: _Request, body: bytes) -> str:
    """What was asked: method, path, query and body."""
    url = request.url
    asked = f"{request.method} {url.path}?{url.query}\n".encode()
    return sha256(asked + body).hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise KeyReused(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    return key


def replay(session: Session, credential: str, keyed: Keyed) -> Stored | None:
    """The stored answer for this key, or None for a key not used in the last day."""
    row = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.credential == credential,
            IdempotencyRecord.key == keyed.key,
            IdempotencyRecord.created_at > utcnow() - KEPT_FOR,
        )
    )
    if row is None:
        return None
    if row.fingerprint != keyed.fingerprint:
        raise KeyReused("this Idempotency-Key was used for another request; use a new key for a new request")
    return Stored(row.status_code, json.loads(row.body), replayed=True)


def _without_secrets(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: None if k in SECRET_FIELDS else _without_secrets(v) for k, v in body.items()}
    if isinstance(body, list):
        return [_without_secrets(item) for item in body]
    return body


def remember(session: Session, credential: str, keyed: Keyed, status_code: int, body: Any) -> None:
    """Store the answer in the current transaction. A racing request with the same key that stored first makes
    this one a 409: the caller retries and gets the replay."""
    now = utcnow()
    # An expired record of the same key gives way; old records of everyone are swept a few at a time.
    session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.credential == credential,
            IdempotencyRecord.key == keyed.key,
            IdempotencyRecord.created_at <= now - KEPT_FOR,
        )
    )
    record = IdempotencyRecord(
        credential=credential,
        key=keyed.key,
        fingerprint=keyed.fingerprint,
        status_code=status_code,
        body=json.dumps(_without_secrets(body), separators=(",", ":"), default=str),
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "a request with this Idempotency-Key is still running (or just finished); retry it to get its answer"
        ) from exc


def once(session: Session, credential: str, keyed: Keyed | None, create: Callable[[], Stored]) -> Stored:
    """The answer to a create under an optional Idempotency-Key: the stored answer (``replayed``) when this key was
    used before, else ``create()``'s, remembered (its status and body) in the same transaction as what it created.

    One place for the order that makes a key safe: the replay is looked up first, so a retry creates nothing and
    gets neither a newer check's error nor a second object; the record is written in the create's transaction,
    so an answer is replayable exactly when what it describes is stored. Whatever must come before the replay
    (who is asking: the credential) is the caller's; whatever may refuse a new request (input, limits) belongs
    in ``create``. Without a key (``keyed`` None), it is ``create()`` alone."""
    if keyed is not None and (stored := replay(session, credential, keyed)) is not None:
        return stored
    answer = create()
    if keyed is not None:
        remember(session, credential, keyed, answer.status_code, answer.body)
    return answer
