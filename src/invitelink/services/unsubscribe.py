"""One-click unsubscribe (RFC 8058): a signed link per delivery that puts the address on the workspace's
suppression list. The link names the delivery, not the address, so no address travels in a URL."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.models import Contact, Delivery, Mailing, Suppression, Survey, utcnow
from invitelink.security import constant_time_equal, derive_key, sign
from invitelink.services import events
from invitelink.services.upsert import insert_ignore_many, rowcount

SIGNATURE_LENGTH = 24


def token_for(server_secret: bytes, delivery_id: int) -> str:
    signature = sign(derive_key(server_secret, "unsubscribe"), str(delivery_id))[:SIGNATURE_LENGTH]
    return f"{delivery_id}.{signature}"


def unsubscribe_url(public_url: str, server_secret: bytes, delivery_id: int) -> str:
    return f"{public_url}/unsubscribe?u={token_for(server_secret, delivery_id)}"


def _delivery_id(server_secret: bytes, token: str) -> int | None:
    ident, _, signature = token.partition(".")
    if not ident.isdigit() or len(ident) > 18:
        return None
    expected = token_for(server_secret, int(ident)).partition(".")[2]
    return int(ident) if constant_time_equal(expected, signature) else None


def resolve(session: Session, server_secret: bytes, token: str) -> tuple[int, str] | None:
    """(workspace id, address) behind a valid link; None for a forged link or a delivery without an address."""
    delivery_id = _delivery_id(server_secret, token)
    if delivery_id is None:
        return None
    row = session.execute(
        select(Survey.workspace_id, Contact.email)
        .select_from(Delivery)
        .join(Contact, Contact.id == Delivery.contact_id)
        .join(Mailing, Mailing.id == Delivery.mailing_id)
        .join(Survey, Survey.id == Mailing.survey_id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None or not row.email:
        return None
    return int(row.workspace_id), str(row.email)


def suppress(session: Session, workspace_id: int, address: str) -> bool:
    """Idempotent: a second unsubscribe of the same address changes nothing (and records no event). True when the
    address was added."""
    result = session.execute(
        insert_ignore_many(Suppression.__table__, ("workspace_id", "address", "created_at")),
        {"workspace_id": workspace_id, "address": address, "created_at": utcnow()},
    )
    if rowcount(result) != 1:
        return False
    events.contact_unsubscribed(session, workspace_id, address)
    return True
