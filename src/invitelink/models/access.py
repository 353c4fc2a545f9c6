"""Machine credentials of a survey: SoSci API accesses and Survey.is-style trigger tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, utcnow

API_FUNCTIONS = ("create_link", "send_mail", "serial_status", "address_status")


class ApiAccess(Base):
    """A SoSci-style API URL: one function over one mailing, addressed by a secret key (digest stored)."""

    __tablename__ = "api_accesses"
    __table_args__ = (
        CheckConstraint("function IN ('create_link', 'send_mail', 'serial_status', 'address_status')", name="function"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"), index=True)
    mailing_id: Mapped[int | None] = mapped_column(ForeignKey("mailings.id", ondelete="CASCADE"))
    function: Mapped[str] = mapped_column(String(16))
    subgroup: Mapped[str] = mapped_column(String(64), default="")
    anonymous: Mapped[bool] = mapped_column(default=False)
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TriggerToken(Base):
    """A bearer ``sit_…`` secret that queues invitation batches for one survey."""

    __tablename__ = "trigger_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    cooldown_seconds: Mapped[int] = mapped_column(default=0)
    default_subject: Mapped[str] = mapped_column(String(300), default="")
    default_message: Mapped[str] = mapped_column(Text, default="")
    default_reminder_days: Mapped[int] = mapped_column(default=0)
    # Cooldown is enforced by a conditional UPDATE on this column, so it holds across app instances.
    last_used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
