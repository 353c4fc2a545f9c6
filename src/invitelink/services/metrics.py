"""What ``GET /metrics`` reads from the database at scrape time: counts that every process and instance share, so
they are right whichever process answers the scrape. One statement per figure, run through ``Database.read``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import QueryableAttribute, Session

from invitelink.models import Delivery, Mailing, Survey, utcnow
from invitelink.models.webhook import WebhookAttempt, WebhookMessage


@dataclass(frozen=True)
class QueueFigures:
    deliveries_by_status: dict[str, int]
    webhook_messages_by_status: dict[str, int]
    webhook_attempts_by_outcome: dict[str, int]
    # Deliveries a worker would claim now (worker/queue.claim's condition), and how long the oldest has waited.
    due_deliveries: int
    oldest_due_age_seconds: float


def _grouped(session: Session, column: ColumnElement[Any] | QueryableAttribute[Any]) -> dict[str, int]:
    """Rows per value of ``column``: one GROUP BY over its table."""
    return {str(key): int(count) for key, count in session.execute(select(column, func.count()).group_by(column))}


def _due(session: Session, now: datetime) -> tuple[int, datetime | None]:
    """How many deliveries are due and the oldest one's due time: the same condition as worker/queue.claim (queued
    and due, or a lease that ran out; active surveys only)."""
    due = or_(
        and_(Delivery.status == "queued", Delivery.due_at <= now),
        and_(Delivery.status == "sending", Delivery.locked_until < now),
    )
    count, oldest = session.execute(
        select(func.count(), func.min(Delivery.due_at))
        .select_from(Delivery)
        .join(Mailing, Mailing.id == Delivery.mailing_id)
        .join(Survey, Survey.id == Mailing.survey_id)
        .where(due, Survey.status == "active")
    ).one()
    return int(count), oldest


def due_deliveries(session: Session) -> int:
    """The queue's depth, for the worker's progress lines."""
    return _due(session, utcnow())[0]


def queue_figures(session: Session) -> QueueFigures:
    now = utcnow()
    outcome = case(
        (and_(WebhookAttempt.status_code >= 200, WebhookAttempt.status_code < 300), "ok"), else_="failed"
    ).label("outcome")
    count, oldest = _due(session, now)
    return QueueFigures(
        deliveries_by_status=_grouped(session, Delivery.status),
        webhook_messages_by_status=_grouped(session, WebhookMessage.status),
        webhook_attempts_by_outcome=_grouped(session, outcome),
        due_deliveries=count,
        oldest_due_age_seconds=_age(now, oldest),
    )


def _age(now: datetime, oldest: datetime | None) -> float:
    if oldest is None:
        return 0.0
    # min() over a UtcDateTime column comes back as the driver gives it: naive on SQLite (stored as UTC).
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - oldest).total_seconds())
