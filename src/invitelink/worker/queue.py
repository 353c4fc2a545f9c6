"""The delivery queue in the database: claiming with a lease, and recording outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from invitelink.models import (
    Contact,
    Delivery,
    Mailing,
    Participation,
    Suppression,
    Survey,
    Token,
    Workspace,
    utcnow,
)
from invitelink.models.base import UtcDateTime
from invitelink.services import events
from invitelink.services.deliveries import DELIVERY_COLUMNS
from invitelink.services.participation import TERMINAL
from invitelink.services.upsert import rowcount

MAX_ATTEMPTS = 8
BASE_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True)
class Job:
    """Everything needed to send one delivery, read in the claiming transaction."""

    delivery_id: int
    channel: str
    sequence: int
    attempts: int
    to: str
    recipient_name: str
    subject: str
    body: str
    sender_name: str
    token: str
    project: str
    survey_title: str
    workspace_name: str
    # Days after the invitation is sent at which a reminder falls due (0: none).
    reminder_days: int = 0
    # The contact's attributes, for {{attr.name}} (services/templates.py).
    attributes: Mapping[str, str] = field(default_factory=dict)


def backoff(attempts: int) -> timedelta:
    """30 s, 60 s, 120 s, … capped at one hour."""
    delay: timedelta = BASE_BACKOFF * (2 ** max(attempts - 1, 0))
    return min(delay, MAX_BACKOFF)


def claim(session: Session, worker_id: str, batch: int, lease: timedelta) -> list[Job]:
    """Lease up to ``batch`` due deliveries of active surveys; expired leases count as due again.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers take disjoint rows. SQLite: the transaction
    began IMMEDIATE and holds the only write lock, which gives the same guarantee.
    """
    now = utcnow()
    due = or_(
        and_(Delivery.status == "queued", Delivery.due_at <= now),
        and_(Delivery.status == "sending", Delivery.locked_until < now),
    )
    stmt = (
        select(Delivery.id)
        .join(Mailing, Mailing.id == Delivery.mailing_id)
        .join(Survey, Survey.id == Mailing.survey_id)
        .where(due, Survey.status == "active")  # draft and closed surveys hold their deliveries
        .order_by(Delivery.due_at, Delivery.id)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Delivery, skip_locked=True)
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(status="sending", locked_until=now + lease, locked_by=worker_id, attempts=Delivery.attempts + 1)
    )
    rows = session.execute(
        select(Delivery, Contact, Mailing, Survey, Workspace, Token, Participation.status)
        .join(Contact, Contact.id == Delivery.contact_id)
        .join(Mailing, Mailing.id == Delivery.mailing_id)
        .join(Survey, Survey.id == Mailing.survey_id)
        .join(Workspace, Workspace.id == Survey.workspace_id)
        .join(Token, Token.id == Delivery.token_id)
        .outerjoin(Participation, Participation.token_id == Token.id)
        .where(Delivery.id.in_(ids))
        .order_by(Delivery.due_at, Delivery.id)
    ).all()
    suppressed = _suppressed(session, [(w.id, c.email) for _d, c, _m, _s, w, _t, _p in rows if c.email])
    jobs = []
    for delivery, contact, mailing, survey, workspace, token, participation_status in rows:
        to = contact.email if delivery.channel == "email" else contact.mobile
        skip = None
        if not to:
            skip = "no address for this channel"
        elif delivery.channel == "email" and (workspace.id, to) in suppressed:
            skip = "address suppressed"
        elif delivery.sequence > 0 and participation_status in TERMINAL:
            skip = f"no reminder: participation already {participation_status}"
        if skip is not None:
            delivery.status, delivery.transport_status, delivery.locked_until = "skipped", "none", None
            delivery.last_error = skip
            continue
        jobs.append(
            Job(
                delivery_id=delivery.id,
                channel=delivery.channel,
                sequence=delivery.sequence,
                attempts=delivery.attempts,
                to=to,
                recipient_name=contact.name,
                subject=mailing.subject,
                body=mailing.body,
                sender_name=mailing.sender_name,
                token=token.code,
                project=survey.project,
                survey_title=survey.title,
                workspace_name=workspace.name,
                reminder_days=mailing.reminder_days if delivery.sequence == 0 else 0,
                attributes=contact.attributes or {},
            )
        )
    return jobs


def _suppressed(session: Session, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
    if not pairs:
        return set()
    workspaces = {w for w, _ in pairs}
    addresses = {a for _, a in pairs}
    rows = session.execute(
        select(Suppression.workspace_id, Suppression.address).where(
            Suppression.workspace_id.in_(workspaces), Suppression.address.in_(addresses)
        )
    )
    return {(w, a) for w, a in rows}


def _mine(delivery_id: int, worker_id: str) -> tuple[ColumnElement[bool], ...]:
    # Only the lease holder records an outcome: a worker whose lease expired must not overwrite a newer one.
    return (Delivery.id == delivery_id, Delivery.locked_by == worker_id, Delivery.status == "sending")


def mark_sent(session: Session, job: Job, worker_id: str, message_id: str) -> None:
    """Record the send; an invitation of a mailing with reminders queues its reminder (sequence 1) here, due
    ``reminder_days`` after this send. Whether it still goes out is decided when it falls due (claim skips it for
    a participant who has ended)."""
    now = utcnow()
    result = session.execute(
        update(Delivery)
        .where(*_mine(job.delivery_id, worker_id))
        .values(
            status="sent",
            transport_status="delivered",
            message_id=message_id,
            sent_at=now,
            locked_until=None,
            last_error=None,
        )
    )
    if rowcount(result) != 1:
        return  # the lease was lost to another worker, which records its own outcome
    events.delivery_changed(session, job.delivery_id, "delivery.sent")
    if job.reminder_days > 0:
        d = Delivery.__table__.c
        source = select(
            d.mailing_id,
            d.contact_id,
            d.token_id,
            d.channel,
            literal(1),
            literal("queued"),
            literal("queued"),
            literal(now + timedelta(days=job.reminder_days), UtcDateTime()),
            literal(0),
            literal(now, UtcDateTime()),
        ).where(d.id == job.delivery_id)
        session.execute(insert(Delivery).from_select(DELIVERY_COLUMNS, source))


def mark_failed(session: Session, delivery_id: int, worker_id: str, error: str) -> None:
    result = session.execute(
        update(Delivery)
        .where(*_mine(delivery_id, worker_id))
        .values(status="failed", transport_status="bounced", locked_until=None, last_error=error[:1000])
    )
    if rowcount(result) == 1:
        events.delivery_changed(session, delivery_id, "delivery.failed")


def mark_retry(session: Session, job: Job, worker_id: str, error: str) -> datetime | None:
    """Queue again after the backoff; after MAX_ATTEMPTS the delivery fails. Returns the next due time."""
    if job.attempts >= MAX_ATTEMPTS:
        mark_failed(session, job.delivery_id, worker_id, f"gave up after {job.attempts} attempts: {error}")
        return None
    due = utcnow() + backoff(job.attempts)
    session.execute(
        update(Delivery)
        .where(*_mine(job.delivery_id, worker_id))
        .values(status="queued", due_at=due, locked_until=None, last_error=error[:1000])
    )
    return due


def renew(session: Session, delivery_ids: list[int], worker_id: str, lease: timedelta) -> None:
    """Extend this worker's leases on deliveries it still holds (the heartbeat of a batch in progress)."""
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.locked_by == worker_id, Delivery.status == "sending")
        .values(locked_until=utcnow() + lease)
    )


def release(session: Session, delivery_ids: list[int], worker_id: str) -> None:
    """Give claimed but unsent deliveries back to the queue (graceful shutdown), without costing an attempt."""
    if delivery_ids:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.locked_by == worker_id, Delivery.status == "sending")
            .values(status="queued", locked_until=None, attempts=Delivery.attempts - 1)
        )


def record_outcome(session: Session, job: Job, worker_id: str, outcome: str, detail: str) -> None:
    """What became of a send: ``sent`` (detail: the message id), ``failed`` for good, or anything else for a retry
    (detail: the error)."""
    if outcome == "sent":
        mark_sent(session, job, worker_id, detail)
    elif outcome == "failed":
        mark_failed(session, job.delivery_id, worker_id, detail)
    else:
        mark_retry(session, job, worker_id, detail)
