"""Mailings (serial mails and trigger batches) and the deliveries that are their outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, JsonType, utcnow

DELIVERY_STATUSES = ("queued", "sending", "sent", "skipped", "failed", "bounced")


class Mailing(Base):
    """A message sent to contacts of a survey, shown to SoSci clients as ``M{id}``."""

    __tablename__ = "mailings"
    __table_args__ = (
        CheckConstraint("kind IN ('serial', 'trigger')", name="kind"),
        CheckConstraint("channel IN ('email', 'sms')", name="channel"),
        Index(None, "survey_id", "id"),
        # Flood protection counts a trigger token's recent batches.
        Index(None, "trigger_token_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="serial")
    channel: Mapped[str] = mapped_column(String(8), default="email")
    name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    # 0 disables reminders; otherwise one reminder after this many days without a completion.
    reminder_days: Mapped[int] = mapped_column(default=0)
    # Trigger batches: their public uuid, the token that created them, the caller's metadata, due time.
    uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    trigger_token_id: Mapped[int | None] = mapped_column(ForeignKey("trigger_tokens.id", ondelete="SET NULL"))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JsonType)
    scheduled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """One message of one mailing to one contact. Written in the same transaction as its cause."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # sequence 0 is the invitation, 1.. are reminders: a retried enqueue cannot queue the same message twice.
        UniqueConstraint("mailing_id", "contact_id", "channel", "sequence"),
        CheckConstraint("status IN ('queued', 'sending', 'sent', 'skipped', 'failed', 'bounced')", name="status"),
        CheckConstraint("channel IN ('email', 'sms')", name="channel"),
        # The worker's claim query: due rows by status and due time.
        Index(None, "status", "due_at"),
        Index(None, "contact_id", "mailing_id"),
        # A bounce names the message by its Message-ID; the admin list filters a survey's deliveries by status.
        Index(None, "message_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailing_id: Mapped[int] = mapped_column(ForeignKey("mailings.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(8), default="email")
    sequence: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # What the transport reports: none | queued | delivered | bounced | failed (SoSci statusMail/statusSMS).
    transport_status: Mapped[str] = mapped_column(String(16), default="queued")
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    message_id: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
