"""Lifecycle events: one row per change of a delivery or a participation (and per unsubscribe), written in the
change's own transaction. The admin timeline reads them; webhooks push them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, JsonType, utcnow

EVENT_TYPES = (
    "delivery.sent",
    "delivery.failed",
    "delivery.bounced",
    "participation.clicked",
    "participation.started",
    "participation.completed",
    "participation.terminated",
    "participation.quotafull",
    "participation.security",
    "contact.unsubscribed",
)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index(None, "survey_id", "id"),
        Index(None, "contact_id", "id"),
        Index(None, "workspace_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(40))
    # The whole payload as pushed: {"type", "timestamp", "data"}; a snapshot, so later edits do not rewrite history.
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
