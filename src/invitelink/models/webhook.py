"""Webhook endpoints of a workspace, and the outbox of messages to them (and of supplier postbacks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, JsonType, utcnow


class WebhookEndpoint(Base):
    """A URL that receives the workspace's events, signed as Standard Webhooks says. The signing secret is derived
    from the server secret and ``secret_version`` (so it is never stored); during a rotation's grace period the
    previous version signs too."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index(None, "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    # None: every event type.
    event_types: Mapped[list[str] | None] = mapped_column(JsonType)
    description: Mapped[str] = mapped_column(String(200), default="")
    secret_version: Mapped[int] = mapped_column(default=1)
    previous_secret_until: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    # Set at the first failure after a success, cleared by the next success: how long it has been failing.
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookMessage(Base):
    """One event to one endpoint (or one outcome to one supplier's postback URL): the outbox row the worker leases,
    sends and retries. Its id is the ``webhook-id`` of every attempt, so receivers can drop duplicates."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sending', 'delivered', 'failed')", name="status"),
        CheckConstraint("(endpoint_id IS NULL) <> (supplier_id IS NULL)", name="target"),
        Index(None, "status", "due_at"),
        Index(None, "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    supplier_id: Mapped[int | None] = mapped_column(ForeignKey("suppliers.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2000))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(64))
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookAttempt(Base):
    """One try of a message: when, the answer's status code or the error, how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index(None, "endpoint_id", "id"), Index(None, "message_id", "id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(1000))
    duration_ms: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
