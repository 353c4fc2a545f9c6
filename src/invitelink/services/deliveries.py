"""Queueing deliveries: the outbox rows written in the same transaction as what caused them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, case, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Contact, Delivery, Mailing, Token, utcnow
from invitelink.models.base import UtcDateTime

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
