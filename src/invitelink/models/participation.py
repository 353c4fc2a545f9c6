"""Participations: what happened after someone followed a link."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, JsonType, utcnow

# Ordered by progress; a participation only moves forward (see services/participation.py).
PARTICIPATION_STATUSES = ("clicked", "started", "completed", "terminated", "quotafull", "security")
ENVIRONMENTS = ("production", "sandbox")
# Who set a participation's final status: the participant's browser (end redirect; the questionnaire's callback may
# still correct it), the authenticated callback, or admission itself (over a country limit). Both of the latter are
# final.
OUTCOME_SOURCES = ("browser", "callback", "admission")


class Participation(Base):
    __tablename__ = "participations"
    __table_args__ = (
        UniqueConstraint("token_id"),
        # Supplier traffic is keyed by the supplier's PID, separately per environment.
        UniqueConstraint("survey_id", "supplier_id", "environment", "pid"),
        CheckConstraint(
            "status IN ('clicked', 'started', 'completed', 'terminated', 'quotafull', 'security')",
            name="status",
        ),
        CheckConstraint("environment IN ('production', 'sandbox')", name="environment"),
        CheckConstraint("outcome_source IN ('browser', 'callback', 'admission')", name="outcome_source"),
        CheckConstraint("reported_status IN ('completed')", name="reported_status"),
        Index(None, "survey_id", "status"),
        Index(None, "survey_id", "id"),
        Index(None, "supplier_id", "environment", "survey_id", "status"),
        Index(None, "supplier_id", "environment", "pid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"))
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id", ondelete="CASCADE"))
    pid: Mapped[str | None] = mapped_column(String(128))
    environment: Mapped[str] = mapped_column(String(16), default="production")
    country: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="clicked")
    first_click_at: Mapped[datetime | None]
    click_count: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # Set when the questionnaire confirmed the completion server to server (callback with the survey's secret),
    # as opposed to a browser reaching the end redirect: R4I's "verified".
    verified_at: Mapped[datetime | None]
    outcome_source: Mapped[str | None] = mapped_column(String(16))
    # A completion the browser reported on a survey that trusts only the callback: recorded, not counted, until the
    # callback confirms it (then status becomes ``completed``) or reports another outcome.
    reported_status: Mapped[str | None] = mapped_column(String(16))
    reported_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    response: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JsonType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
