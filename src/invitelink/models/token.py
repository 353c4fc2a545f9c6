"""Tokens: the personal links, serial codes and supplier entries that lead into a survey."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, utcnow

TOKEN_KINDS = ("personal", "serial_code", "supplier")


class Token(Base):
    __tablename__ = "tokens"
    __table_args__ = (
        # One token per contact and channel of issue: a retried create_link returns the same link.
        UniqueConstraint("contact_id", "api_access_id"),
        UniqueConstraint("contact_id", "mailing_id"),
        CheckConstraint("kind IN ('personal', 'serial_code', 'supplier')", name="kind"),
        Index(None, "survey_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # 16 chars of [A-Z0-9] for personal links; serial codes are shorter and typed by hand.
    code: Mapped[str] = mapped_column(String(32), unique=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="personal")
    mailing_id: Mapped[int | None] = mapped_column(ForeignKey("mailings.id", ondelete="SET NULL"))
    api_access_id: Mapped[int | None] = mapped_column(ForeignKey("api_accesses.id", ondelete="SET NULL"))
    notice: Mapped[str] = mapped_column(String(500), default="")
    expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
