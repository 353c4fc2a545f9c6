"""Lifecycle events: every change of a delivery or a participation (and every unsubscribe) becomes one event row,
written in the change's own transaction, and one outbox message per subscribed webhook endpoint (and, for final
outcomes of supplier traffic, one postback to the supplier). Callers record an event only when their conditional
UPDATE changed a row: a repeat or a contradiction changes nothing and is recorded nowhere."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from invitelink.models import (
    Contact,
    Delivery,
    Event,
    Mailing,
    Participation,
    Supplier,
    Survey,
    Token,
    WebhookEndpoint,
    WebhookMessage,
    utcnow,
)
from invitelink.services.pagination import Page, page_of

FINAL_PARTICIPATION = frozenset({"completed", "terminated", "quotafull", "security"})
VERIFIED_SOURCES = frozenset({"callback", "admission"})


def _contact(row: Any) -> dict[str, Any] | None:
    """The contact's identity, or None for anonymous contacts and for serial-code and supplier traffic."""
    if row.contact_id is None or row.anonymous:
        return None
    return {"id": row.contact_id, "email": row.email, "mobile": row.mobile, "uid": row.uid}


def _data(row: Any, **extra: Any) -> dict[str, Any]:
    """The part of ``data`` every delivery and participation event has, then the event's own fields."""
    return {
        "survey_id": row.survey_id,
        "token": row.code,
        "contact": _contact(row),
        "status": row.status,
        "metadata": row.meta,
        **extra,
    }


@dataclass(frozen=True)
class Recorded:
    """A stored event: its id and its payload (what webhooks deliver)."""

    id: int
    payload: dict[str, Any]


def record(
    session: Session,
    event_type: str,
    *,
    workspace_id: int,
    survey_id: int | None,
    contact_id: int | None,
    data: dict[str, Any],
) -> Recorded:
    """Store the event and queue it to every live endpoint of the workspace that subscribes to its type."""
    now = utcnow()
    payload = {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    # One INSERT … RETURNING rather than an ORM object and a flush: every sent mail records one (the worker's
    # hot path), and nothing reads the object back.
    event_id = session.execute(
        insert(Event)
        .values(
            workspace_id=workspace_id,
            survey_id=survey_id,
            contact_id=contact_id,
            type=event_type,
            payload=payload,
            created_at=now,
        )
        .returning(Event.id)
    ).scalar_one()
    event = Recorded(event_id, payload)
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.event_types).where(
            WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.disabled_at.is_(None)
        )
    ).all()
    body = json.dumps(payload, separators=(",", ":"))
    for endpoint in endpoints:
        if endpoint.event_types is None or event_type in endpoint.event_types:
            session.add(WebhookMessage(endpoint_id=endpoint.id, event_id=event.id, url=endpoint.url, body=body))
    return event


# The contact's identity columns, as every event's ``data.contact`` needs them.
_CONTACT = (Contact.id.label("contact_id"), Contact.email, Contact.mobile, Contact.uid, Contact.anonymous)
_PARTICIPATION = (
    select(
        Participation.id,
        Participation.survey_id,
        Participation.status,
        Participation.meta,
        Participation.pid,
        Participation.environment,
        Participation.outcome_source,
        Participation.supplier_id,
        Survey.workspace_id,
        Token.code,
        *_CONTACT,
        Supplier.postback_url,
        Supplier.public_id.label("supplier_public_id"),
    )
    .select_from(Participation)
    .join(Survey, Survey.id == Participation.survey_id)
    .outerjoin(Token, Token.id == Participation.token_id)
    .outerjoin(Contact, Contact.id == Token.contact_id)
    .outerjoin(Supplier, Supplier.id == Participation.supplier_id)
)


def participation_changed(
    session: Session, participation_id: int, event_type: str, *, reversed_from: str | None = None
) -> None:
    """``event_type`` (participation.clicked, …) for a participation whose status or first click just changed.
    ``reversed_from``: the final status the questionnaire's callback has just corrected (a browser's outcome)."""
    row = session.execute(_PARTICIPATION.where(Participation.id == participation_id)).one()
    # ``source``: who set the final status (browser, callback, admission); null while none is set.
    data = _data(row, participation_id=row.id, source=row.outcome_source)
    if reversed_from is not None:
        data["reversed_from"] = reversed_from
    if row.supplier_id is not None:
        data.update(
            {
                "supplier_id": row.supplier_public_id,
                "pid": row.pid,
                "environment": row.environment,
                # Not the participant's browser's word: the callback set or confirmed it, or admission decided it.
                "verified": row.outcome_source in VERIFIED_SOURCES,
            }
        )
    event = record(
        session,
        event_type,
        workspace_id=row.workspace_id,
        survey_id=row.survey_id,
        contact_id=row.contact_id,
        data=data,
    )
    if row.supplier_id is not None and row.postback_url and row.status in FINAL_PARTICIPATION:
        # Browser redirects get lost; panel exchanges reconcile from these server-to-server postbacks, a reversal
        # included (the corrected outcome, with reversed_from).
        session.add(
            WebhookMessage(
                supplier_id=row.supplier_id,
                event_id=event.id,
                url=row.postback_url,
                body=json.dumps(event.payload, separators=(",", ":")),
            )
        )


_DELIVERY = (
    select(
        Delivery.id,
        Delivery.status,
        Delivery.channel,
        Delivery.sequence,
        Delivery.mailing_id,
        Delivery.attempts,
        Delivery.last_error,
        Delivery.message_id,
        Mailing.survey_id,
        Mailing.meta,
        Survey.workspace_id,
        Token.code,
        *_CONTACT,
    )
    .select_from(Delivery)
    .join(Mailing, Mailing.id == Delivery.mailing_id)
    .join(Survey, Survey.id == Mailing.survey_id)
    .join(Contact, Contact.id == Delivery.contact_id)
    .outerjoin(Token, Token.id == Delivery.token_id)
)


def delivery_changed(session: Session, delivery_id: int, event_type: str) -> None:
    """``event_type`` (delivery.sent, delivery.failed, delivery.bounced) for a delivery that just changed."""
    row = session.execute(_DELIVERY.where(Delivery.id == delivery_id)).one()
    record(
        session,
        event_type,
        workspace_id=row.workspace_id,
        survey_id=row.survey_id,
        contact_id=row.contact_id,
        data=_data(
            row,
            delivery_id=row.id,
            mailing_id=row.mailing_id,
            channel=row.channel,
            reminder=row.sequence > 0,
            attempts=row.attempts,
            error=row.last_error,
            message_id=row.message_id,
        ),
    )


def contact_unsubscribed(session: Session, workspace_id: int, address: str) -> None:
    """An address of the workspace asked not to be mailed again (unsubscribe link, or a permanent bounce)."""
    record(
        session,
        "contact.unsubscribed",
        workspace_id=workspace_id,
        survey_id=None,
        contact_id=None,
        data={"survey_id": None, "token": None, "contact": None, "status": "suppressed", "address": address},
    )


def list_events(
    session: Session,
    survey_id: int,
    cursor: str | None,
    limit: int,
    *,
    contact_id: int | None = None,
    event_type: str | None = None,
) -> Page[Event]:
    """A survey's events in the order they happened; with ``contact_id``, that contact's timeline."""
    where = [Event.survey_id == survey_id]
    if contact_id is not None:
        where.append(Event.contact_id == contact_id)
    if event_type:
        where.append(Event.type == event_type)
    return page_of(session, Event, cursor, limit, *where)
