"""The lifecycle of every secret credential: SoSci API keys, trigger tokens, supplier API keys, admin session
tokens. Issued from a cryptographic source with a readable prefix; shown once to whoever created it; stored only
as its SHA-256 digest (high-entropy secrets need no slow hash, and a digest lookup leaks no timing) with its first
characters, to tell credentials apart in lists; looked up by digest; revoked by a timestamp or deleted."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from invitelink.models import utcnow
from invitelink.security import digest, new_secret, random_code


@dataclass(frozen=True)
class Issued:
    """A new credential: ``secret`` goes to the caller once and is never stored; ``digest`` and ``shown`` are."""

    secret: str
    digest: str
    shown: str


def issue(prefix: str, nbytes: int, shown: int, *, alphabet: str | None = None) -> Issued:
    """A secret of ``nbytes`` random bytes behind ``prefix``, in base64url; ``shown``: how many leading characters
    lists show. With ``alphabet``, the secret is as many characters drawn uniformly from that alphabet as the
    base64url form would have (24 bytes: 32 characters), so a credential keeps its length when its alphabet
    changes (62 letters and digits carry 5.95 bits a character, base64url 6)."""
    if alphabet is None:
        secret = new_secret(prefix, nbytes)
    else:
        secret = prefix + random_code(math.ceil(nbytes * 4 / 3), alphabet)
    return Issued(secret, digest(secret), secret[:shown])


def lookup_digest(secret: str) -> str:
    """What a presented secret is looked up by."""
    return digest(secret.strip())


class Revocable(Protocol):
    revoked_at: datetime | None


def revoke(session: Session, credential: Revocable) -> None:
    """Refused from now on; revoking twice keeps the first time."""
    if credential.revoked_at is None:
        credential.revoked_at = utcnow()
        session.flush()
