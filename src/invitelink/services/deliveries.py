"""Queueing deliveries: the outbox rows written in the same transaction as what caused them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Contact, Delivery, Mailing, Token, utcnow


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
