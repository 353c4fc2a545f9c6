"""Idempotency-Key records: the first answer to a create, kept for a day so a retried call gets it again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, utcnow


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("credential", "key"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    # Who asked: a digest of the credential (never the credential itself), so one key of two callers never meet.
    credential: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of method, path and body: the same key with another request is the caller's mistake (422).
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    # The answer as sent, with every secret it revealed replaced by null: secrets are never stored for replay.
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
