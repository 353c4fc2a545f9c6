"""Queueing deliveries: the outbox rows written in the same transaction as what caused them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Contact, Delivery, Mailing, Survey, Token, utcnow
from invitelink.models.base import UtcDateTime
from invitelink.services import events
from invitelink.services.bulk_rows import insert_rows
from invitelink.services.upsert import rowcount

# Columns of a bulk INSERT … SELECT into deliveries (here and for reminders in worker/queue.py).
DELIVERY_COLUMNS = (
    "mailing_id",
    "contact_id",
    "token_id",
    "channel",
    "sequence",
    "status",
    "transport_status",
    "due_at",
    "attempts",
    "created_at",
)


def channel_for(mailing: Mailing, contact: Contact) -> str | None:
    """E-mail when the contact has an address (and the mailing is not SMS-only), else SMS, else nothing."""
    if mailing.channel == "sms":
        return "sms" if contact.mobile else None
    if contact.email:
        return "email"
    return "sms" if contact.mobile else None


def enqueue(
    session: Session,
    mailing: Mailing,
    contact: Contact,
    token: Token,
    *,
    due_at: datetime | None = None,
    sequence: int = 0,
) -> Delivery | None:
    """Queue one message of ``mailing`` to ``contact``; a second call for the same message returns the first."""
    channel = channel_for(mailing, contact)
    if channel is None:
        return None
    delivery = Delivery(
        mailing_id=mailing.id,
        contact_id=contact.id,
        token_id=token.id,
        channel=channel,
        sequence=sequence,
        due_at=due_at or utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(delivery)
            session.flush()
    except IntegrityError:
        return session.scalar(
            select(Delivery).where(
                Delivery.mailing_id == mailing.id,
                Delivery.contact_id == contact.id,
                Delivery.channel == channel,
                Delivery.sequence == sequence,
            )
        )
    return delivery


def reachable(mailing: Mailing) -> ColumnElement[bool]:
    """SQL twin of ``channel_for(mailing, contact) is not None``."""
    c = Contact.__table__.c
    return c.mobile.is_not(None) if mailing.channel == "sms" else or_(c.email.is_not(None), c.mobile.is_not(None))


def _channel(mailing: Mailing) -> ColumnElement[str]:
    """SQL twin of ``channel_for`` for a reachable contact."""
    if mailing.channel == "sms":
        return literal("sms")
    return case((Contact.__table__.c.email.is_not(None), literal("email")), else_=literal("sms"))


def enqueue_token_holders(session: Session, mailing: Mailing, due_at: datetime, *where: ColumnElement[bool]) -> None:
    """Queue the mailing's invitation to every reachable contact holding a token of it (and matching ``where``)
    that does not have it queued yet: one INSERT … SELECT, however many contacts."""
    c, t, d = Contact.__table__.c, Token.__table__.c, Delivery.__table__.c
    rows = (
        select(
            literal(mailing.id),
            c.id,
            t.id,
            _channel(mailing),
            literal(0),
            literal("queued"),
            literal("queued"),
            literal(due_at, UtcDateTime()),
            literal(0),
            literal(utcnow(), UtcDateTime()),
        )
        .select_from(Contact)
        .join(Token, (t.contact_id == c.id) & (t.mailing_id == mailing.id))
        .where(
            *where,
            reachable(mailing),
            ~select(d.id).where(d.mailing_id == mailing.id, d.contact_id == c.id, d.sequence == 0).exists(),
        )
    )
    session.execute(insert(Delivery).from_select(DELIVERY_COLUMNS, rows))


def enqueue_new_mailing(
    conn: Connection, mailing: Mailing, tokens: Mapping[int, int], due_at: datetime, now: datetime
) -> None:
    """Queue the invitation of ``mailing``, made in this transaction, to each contact of ``tokens`` (contact id ->
    its token of the mailing) on the mailing's channel, which each of them must be reachable on (a trigger batch:
    e-mail to recipients given by address). One plain INSERT: nothing of a new mailing can be queued yet."""
    if not tokens:
        return
    fixed = {
        "mailing_id": mailing.id,
        "channel": mailing.channel,
        "sequence": 0,
        "status": "queued",
        "transport_status": "queued",
        "due_at": due_at,
        "attempts": 0,
        "created_at": now,
    }
    insert_rows(conn, Delivery, ("contact_id", "token_id"), list(tokens.items()), fixed)


# What happened to a survey's deliveries (admin views) ---------------------------------------------------------

_LISTED = (
    select(
        Delivery.id,
        Delivery.mailing_id,
        Delivery.contact_id,
        Contact.email,
        Contact.mobile,
        Delivery.channel,
        Delivery.sequence,
        Delivery.status,
        Delivery.attempts,
        Delivery.last_error,
        Delivery.due_at,
        Delivery.sent_at,
        Delivery.message_id,
    )
    .select_from(Delivery)
    .join(Mailing, Mailing.id == Delivery.mailing_id)
    .join(Contact, Contact.id == Delivery.contact_id)
)


def list_for_survey(
    session: Session, survey_id: int, status: str | None, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """A page of the survey's deliveries in id order after ``after_id`` (``limit + 1`` rows tell the caller whether
    there is a next page)."""
    stmt = _LISTED.where(Mailing.survey_id == survey_id, Delivery.id > after_id)
    if status:
        stmt = stmt.where(Delivery.status == status)
    rows = session.execute(stmt.order_by(Delivery.id).limit(limit + 1)).mappings().all()
    return [dict(row) for row in rows]


def requeue_failed(session: Session, survey_id: int, ids: list[int] | None) -> int:
    """Failed deliveries of the survey (all, or those of ``ids``) go back to the queue, due now, with a fresh
    attempt count; returns how many. Bounced ones stay: their address does not exist."""
    mailing_ids = select(Mailing.id).where(Mailing.survey_id == survey_id)
    stmt = (
        update(Delivery)
        .where(Delivery.mailing_id.in_(mailing_ids), Delivery.status == "failed")
        .values(status="queued", transport_status="queued", attempts=0, due_at=utcnow(), locked_until=None)
    )
    if ids is not None:
        stmt = stmt.where(Delivery.id.in_(ids))
    return rowcount(session.execute(stmt))


def mark_bounced(session: Session, message_id: str, error: str) -> tuple[int, int, str] | None:
    """The delivery whose message this Message-ID names becomes ``bounced`` (an event records it); returns
    (delivery id, workspace id, address), or None when no delivery sent that message."""
    row = session.execute(
        select(Delivery.id, Delivery.status, Survey.workspace_id, Contact.email)
        .join(Mailing, Mailing.id == Delivery.mailing_id)
        .join(Survey, Survey.id == Mailing.survey_id)
        .join(Contact, Contact.id == Delivery.contact_id)
        .where(Delivery.message_id == message_id)
    ).first()
    if row is None:
        return None
    changed = session.execute(
        update(Delivery)
        .where(Delivery.id == row.id, Delivery.status.in_(("sent", "sending", "queued", "failed")))
        .values(status="bounced", transport_status="bounced", last_error=error[:1000], locked_until=None)
    )
    if rowcount(changed) == 1:
        events.delivery_changed(session, row.id, "delivery.bounced")
    return int(row.id), int(row.workspace_id), str(row.email or "")
