"""Surveys, their targeting questions and the workspace's industry list."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from invitelink.models.base import Base, JsonType, utcnow

SURVEY_STATUSES = ("draft", "active", "closed")
# Who may report a completion: the participant's browser at the end redirect (``browser``), or only the
# questionnaire's authenticated callback (``callback``; the browser's report waits for it). See docs/status-model.md.
OUTCOME_VERIFICATIONS = ("browser", "callback")


class Industry(Base):
    __tablename__ = "industries"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))


class Survey(Base):
    __tablename__ = "surveys"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'active', 'closed')", name="status"),
        CheckConstraint("outcome_verification IN ('browser', 'callback')", name="outcome_verification"),
        Index(None, "workspace_id", "id"),
        Index(None, "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # URL slug of the participant links (PUBLIC_URL/{project}/?d=...), unique across the service.
    project: Mapped[str] = mapped_column(String(64), unique=True)
    # The supplier-facing id, PROJ-XXXXXXXX.
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    questionnaire_url: Mapped[str] = mapped_column(String(2000))
    callback_secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    # The server default fills rows stored before the column existed (added in place, see migration 0007).
    outcome_verification: Mapped[str] = mapped_column(String(16), default="browser", server_default="browser")
    industry_id: Mapped[int | None] = mapped_column(ForeignKey("industries.id", ondelete="SET NULL"))
    segment: Mapped[str | None] = mapped_column(String(16))
    cpi_value: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    cpi_currency: Mapped[str] = mapped_column(String(3), default="USD")
    incidence_rate: Mapped[int | None]
    length_of_interview: Mapped[int | None]
    pii: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(Text, default="")
    countries: Mapped[list[str]] = mapped_column(JsonType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    industry: Mapped[Industry | None] = relationship(lazy="joined")
    questions: Mapped[list[Question]] = relationship(
        back_populates="survey", order_by="Question.position", cascade="all, delete-orphan"
    )


class Question(Base):
    """A targeting question shown to suppliers (R4I ``target_audience``)."""

    __tablename__ = "questions"
    __table_args__ = (UniqueConstraint("survey_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    key: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64), default="")

    survey: Mapped[Survey] = relationship(back_populates="questions")
    options: Mapped[list[QuestionOption]] = relationship(
        order_by="QuestionOption.position", cascade="all, delete-orphan", lazy="selectin"
    )


class QuestionOption(Base):
    __tablename__ = "question_options"

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    text: Mapped[str] = mapped_column(String(200))
