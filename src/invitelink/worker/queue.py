"""The delivery queue in the database: claiming with a lease, and recording outcomes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, insert, literal, or_, select, update
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

# Temporary failures of one message are retried 1 min, 2, 4, … after each try, then hourly, until the give-up time:
# RETRY_WINDOW after the first try by default (INVITELINK_DELIVERY_RETRY_HOURS). MTAs keep a message 4-5 days
# (RFC 5321 4.5.4.1); an invitation is stale sooner, and an outage of the relay itself costs none of this.
BASE_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
RETRY_WINDOW = timedelta(hours=72)


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
    # The delivery as its outcome's event describes it, read with the job; None: the event reads it then.
    facts: events.DeliveryFacts | None = None


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th try: 1 min, 2 min, 4 min, … capped at one hour."""
    if attempts > 12:  # 2**11 minutes is far past the cap: no need to build huge intervals
        return MAX_BACKOFF
    delay: timedelta = BASE_BACKOFF * (2 ** max(attempts - 1, 0))
    return min(delay, MAX_BACKOFF)


def retry_delay(attempts: int, window: timedelta = RETRY_WINDOW) -> timedelta | None:
    """How long after the ``attempts``-th try (which failed for a temporary reason) to try again; None: give up.

    The give-up time is ``window`` after the first try, and it is read from the attempt count rather than a
    timestamp: every retry waits at least its backoff (it is not due before), so the schedule's time of this try is
    the least time since the first one. A worker that falls behind, or a relay outage (which gives deliveries back
    without counting the try), only stretches the real time, so mail is retried for at least ``window``. The next
    try is never scheduled past the give-up time: the last one falls on it, and when that one fails too the delivery
    fails. A requeue (``attempts`` = 0) starts a fresh window."""
    elapsed = timedelta(0)
    for tried in range(1, attempts):
        elapsed += backoff(tried)
        if elapsed >= window:
            return None
    return min(backoff(attempts), window - elapsed)


def _due(now: datetime) -> ColumnElement[bool]:
    """What a worker may claim now: queued and due, or left sending by a worker whose lease ran out."""
    return or_(
        and_(Delivery.status == "queued", Delivery.due_at <= now),
        and_(Delivery.status == "sending", Delivery.locked_until < now),
    )


_deliveries = cast(Table, Delivery.__table__)
_contacts, _mailings, _surveys = Contact.__table__, Mailing.__table__, Survey.__table__
_workspaces, _tokens, _participations = Workspace.__table__, Token.__table__, Participation.__table__
# What a claimed delivery's job needs, as columns: loading six mapped objects per row cost the worker more than
# sending took. They include the delivery as its outcome's event describes it (events.DELIVERY_FACT_COLUMNS).
_CLAIMED = (
    select(
        *events.DELIVERY_FACT_COLUMNS,
        _contacts.c.name,
        _contacts.c.attributes,
        _mailings.c.subject,
        _mailings.c.body,
        _mailings.c.sender_name,
        _mailings.c.reminder_days,
        _surveys.c.project,
        _surveys.c.title,
        _workspaces.c.name.label("workspace_name"),
        _participations.c.status.label("participation_status"),
        _participations.c.reported_status,
    )
    .select_from(_deliveries)
    .join(_contacts, _contacts.c.id == _deliveries.c.contact_id)
    .join(_mailings, _mailings.c.id == _deliveries.c.mailing_id)
    .join(_surveys, _surveys.c.id == _mailings.c.survey_id)
    .join(_workspaces, _workspaces.c.id == _surveys.c.workspace_id)
    .join(_tokens, _tokens.c.id == _deliveries.c.token_id)
    .outerjoin(_participations, _participations.c.token_id == _tokens.c.id)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_deliveries.c.due_at, _deliveries.c.id)
)
_SKIP = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("b_id"))
    .values(status="skipped", transport_status="none", locked_until=None, last_error=bindparam("b_error"))
)


def claim(
    session: Session, worker_id: str, batch: int, lease: timedelta, channels: Collection[str] | None = None
) -> list[Job]:
    """Lease up to ``batch`` due deliveries of active surveys (of ``channels`` only, when given: a channel whose
    relay is down is not claimed); expired leases count as due again.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers take disjoint rows. SQLite: the transaction
    began IMMEDIATE and holds the only write lock, which gives the same guarantee.
    """
    now = utcnow()
    stmt = (
        select(Delivery.id)
        .join(Mailing, Mailing.id == Delivery.mailing_id)
        .join(Survey, Survey.id == Mailing.survey_id)
        .where(_due(now), Survey.status == "active")  # draft and closed surveys hold their deliveries
        .order_by(Delivery.due_at, Delivery.id)
        .limit(batch)
    )
    if channels is not None:
        stmt = stmt.where(Delivery.channel.in_(list(channels)))
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
    rows = session.execute(_CLAIMED, {"ids": ids}).all()
    suppressed = _suppressed(session, [(row.workspace_id, row.email) for row in rows if row.email])
    jobs = []
    skipped: list[dict[str, object]] = []
    for row in rows:
        to = row.email if row.channel == "email" else row.mobile
        skip = None
        if not to:
            skip = "no address for this channel"
        elif row.channel == "email" and (row.workspace_id, to) in suppressed:
            skip = "address suppressed"
        elif row.sequence > 0 and row.participation_status in TERMINAL:
            skip = f"no reminder: participation already {row.participation_status}"
        elif row.sequence > 0 and row.reported_status is not None:
            # The participant's browser reported the end; only its confirmation by the callback is missing.
            skip = (
                f"no reminder: participation reported {row.reported_status}, awaiting the questionnaire's confirmation"
            )
        if skip is not None:
            skipped.append({"b_id": row.id, "b_error": skip})
            continue
        jobs.append(
            Job(
                delivery_id=row.id,
                channel=row.channel,
                sequence=row.sequence,
                attempts=row.attempts,
                to=to,
                recipient_name=row.name,
                subject=row.subject,
                body=row.body,
                sender_name=row.sender_name,
                token=row.code,
                project=row.project,
                survey_title=row.title,
                workspace_name=row.workspace_name,
                reminder_days=row.reminder_days if row.sequence == 0 else 0,
                attributes=row.attributes or {},
                facts=events.DeliveryFacts.of(row),
            )
        )
    if skipped:
        session.execute(_SKIP, skipped)
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


# Only the lease holder records an outcome: a worker whose lease expired must not overwrite a newer one.
_MINE = (
    _deliveries.c.id == bindparam("b_delivery_id"),
    _deliveries.c.locked_by == bindparam("b_worker_id"),
    _deliveries.c.status == "sending",
)
# Outcomes are the worker's hot path (one per message): prebuilt Core statements, compiled once and run with
# parameters, where building an ORM update per message cost more than SQLite took to run it.
_MARK_SENT = (
    update(_deliveries)
    .where(*_MINE)
    .values(
        status="sent",
        transport_status="delivered",
        message_id=bindparam("b_message_id"),
        sent_at=bindparam("b_now"),
        locked_until=None,
        last_error=None,
    )
)
_MARK_FAILED = (
    update(_deliveries)
    .where(*_MINE)
    .values(status="failed", transport_status="bounced", locked_until=None, last_error=bindparam("b_error"))
)
_MARK_RETRY = (
    update(_deliveries)
    .where(*_MINE)
    .values(status="queued", due_at=bindparam("b_due"), locked_until=None, last_error=bindparam("b_error"))
)


def _mine(delivery_id: int, worker_id: str) -> dict[str, object]:
    return {"b_delivery_id": delivery_id, "b_worker_id": worker_id}


def mark_sent(session: Session, job: Job, worker_id: str, message_id: str) -> None:
    """Record the send; an invitation of a mailing with reminders queues its reminder (sequence 1) here, due
    ``reminder_days`` after this send. Whether it still goes out is decided when it falls due (claim skips it for
    a participant who has ended)."""
    now = utcnow()
    result = session.execute(
        _MARK_SENT, {**_mine(job.delivery_id, worker_id), "b_message_id": message_id, "b_now": now}
    )
    if rowcount(result) != 1:
        return  # the lease was lost to another worker, which records its own outcome
    facts = job.facts and replace(job.facts, status="sent", last_error=None, message_id=message_id)
    events.delivery_changed(session, job.delivery_id, "delivery.sent", facts)
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


def mark_failed(
    session: Session, delivery_id: int, worker_id: str, error: str, facts: events.DeliveryFacts | None = None
) -> None:
    """Fail the delivery for good; ``facts``: the delivery as read with its job, for the event."""
    error = error[:1000]
    result = session.execute(_MARK_FAILED, {**_mine(delivery_id, worker_id), "b_error": error})
    if rowcount(result) == 1:
        facts = facts and replace(facts, status="failed", last_error=error)
        events.delivery_changed(session, delivery_id, "delivery.failed", facts)


def _hours(window: timedelta) -> str:
    return f"{window.total_seconds() / 3600:g} h"


def mark_retry(
    session: Session, job: Job, worker_id: str, error: str, window: timedelta = RETRY_WINDOW
) -> datetime | None:
    """Queue again after the backoff; at the give-up time the delivery fails (``retry_delay``). Returns the next due
    time."""
    delay = retry_delay(job.attempts, window)
    if delay is None:
        reason = f"gave up after {_hours(window)} ({job.attempts} attempts); last error: {error}"
        mark_failed(session, job.delivery_id, worker_id, reason, job.facts)
        return None
    due = utcnow() + delay
    session.execute(_MARK_RETRY, {**_mine(job.delivery_id, worker_id), "b_due": due, "b_error": error[:1000]})
    return due


def renew(session: Session, delivery_ids: list[int], worker_id: str, lease: timedelta) -> None:
    """Extend this worker's leases on deliveries it still holds (the heartbeat of a batch in progress)."""
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.locked_by == worker_id, Delivery.status == "sending")
        .values(locked_until=utcnow() + lease)
    )


def release(session: Session, delivery_ids: list[int], worker_id: str) -> None:
    """Give claimed but unsent deliveries back to the queue (graceful shutdown, a relay that went down), without
    costing an attempt."""
    if delivery_ids:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.locked_by == worker_id, Delivery.status == "sending")
            .values(status="queued", locked_until=None, attempts=Delivery.attempts - 1)
        )


def record_outcome(
    session: Session, job: Job, worker_id: str, outcome: str, detail: str, window: timedelta = RETRY_WINDOW
) -> None:
    """What became of a send: ``sent`` (detail: the message id), ``failed`` for good, or anything else for a retry
    (detail: the error) within ``window`` of the first try."""
    if outcome == "sent":
        mark_sent(session, job, worker_id, detail)
    elif outcome == "failed":
        mark_failed(session, job.delivery_id, worker_id, detail, job.facts)
    else:
        mark_retry(session, job, worker_id, detail, window)


def waiting(session: Session, channel: str) -> int:
    """Deliveries of ``channel`` that wait for their relay: due now or in a worker's hands (active surveys only, as
    ``claim`` takes them). For the worker's outage lines."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .join(Mailing, Mailing.id == Delivery.mailing_id)
            .join(Survey, Survey.id == Mailing.survey_id)
            .where(
                or_(and_(Delivery.status == "queued", Delivery.due_at <= utcnow()), Delivery.status == "sending"),
                Delivery.channel == channel,
                Survey.status == "active",
            )
        )
        or 0
    )
