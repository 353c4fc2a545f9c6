"""Lifecycle events: every change of a delivery or a participation (and every unsubscribe) becomes one event row,
written in the change's own transaction, and one outbox message per subscribed webhook endpoint (and, for final
outcomes of supplier traffic, one postback to the supplier). Callers record an event only when their conditional
UPDATE changed a row: a repeat or a contradiction changes nothing and is recorded nowhere."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select
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


# Prebuilt Core statements over the tables (not the mapped classes), compiled once and executed with parameters:
# every sent mail and every click records an event, and building an ORM statement per call (its cache key, the ORM
# compile and row loading) cost the worker's outcome write five times what SQLite took to run it.
_events = cast(Table, Event.__table__)
_endpoints = WebhookEndpoint.__table__
_INSERT_EVENT = insert(_events).returning(_events.c.id)
_LIVE_ENDPOINTS = select(_endpoints.c.id, _endpoints.c.url, _endpoints.c.event_types).where(
    _endpoints.c.workspace_id == bindparam("workspace_id"), _endpoints.c.disabled_at.is_(None)
)
_INSERT_MESSAGE = insert(cast(Table, WebhookMessage.__table__))


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
    event_id = session.execute(
        _INSERT_EVENT,
        {
            "workspace_id": workspace_id,
            "survey_id": survey_id,
            "contact_id": contact_id,
            "type": event_type,
            "payload": payload,
            "created_at": now,
        },
    ).scalar_one()
    endpoints = session.execute(_LIVE_ENDPOINTS, {"workspace_id": workspace_id}).all()
    subscribed = [e for e in endpoints if e.event_types is None or event_type in e.event_types]
    if subscribed:
        body = json.dumps(payload, separators=(",", ":"))
        session.execute(
            _INSERT_MESSAGE,
            [{"endpoint_id": e.id, "event_id": event_id, "url": e.url, "body": body} for e in subscribed],
        )
    return Recorded(event_id, payload)


_participations, _surveys, _tokens = Participation.__table__, Survey.__table__, Token.__table__
_contacts, _suppliers = Contact.__table__, Supplier.__table__
_deliveries, _mailings = Delivery.__table__, Mailing.__table__
# The contact's identity columns, as every event's ``data.contact`` needs them.
_CONTACT = (
    _contacts.c.id.label("contact_id"),
    _contacts.c.email,
    _contacts.c.mobile,
    _contacts.c.uid,
    _contacts.c.anonymous,
)
_PARTICIPATION = (
    select(
        _participations.c.id,
        _participations.c.survey_id,
        _participations.c.status,
        _participations.c.metadata.label("meta"),
        _participations.c.pid,
        _participations.c.environment,
        _participations.c.outcome_source,
        _participations.c.supplier_id,
        _surveys.c.workspace_id,
        _tokens.c.code,
        *_CONTACT,
        _suppliers.c.postback_url,
        _suppliers.c.public_id.label("supplier_public_id"),
    )
    .select_from(_participations)
    .join(_surveys, _surveys.c.id == _participations.c.survey_id)
    .outerjoin(_tokens, _tokens.c.id == _participations.c.token_id)
    .outerjoin(_contacts, _contacts.c.id == _tokens.c.contact_id)
    .outerjoin(_suppliers, _suppliers.c.id == _participations.c.supplier_id)
    .where(_participations.c.id == bindparam("participation_id"))
)


def participation_changed(
    session: Session, participation_id: int, event_type: str, *, reversed_from: str | None = None
) -> None:
    """``event_type`` (participation.clicked, …) for a participation whose status or first click just changed.
    ``reversed_from``: the final status the questionnaire's callback has just corrected (a browser's outcome)."""
    row = session.execute(_PARTICIPATION, {"participation_id": participation_id}).one()
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
        session.execute(
            _INSERT_MESSAGE,
            {
                "supplier_id": row.supplier_id,
                "event_id": event.id,
                "url": row.postback_url,
                "body": json.dumps(event.payload, separators=(",", ":")),
            },
        )


# A delivery as its events describe it, named as DeliveryFacts names the fields; the worker's claim reads the same
# columns (worker/queue.py), over the same joins.
DELIVERY_FACT_COLUMNS = (
    _deliveries.c.id,
    _deliveries.c.status,
    _deliveries.c.channel,
    _deliveries.c.sequence,
    _deliveries.c.mailing_id,
    _deliveries.c.attempts,
    _deliveries.c.last_error,
    _deliveries.c.message_id,
    _mailings.c.survey_id,
    _mailings.c.metadata.label("meta"),
    _surveys.c.workspace_id,
    _tokens.c.code,
    *_CONTACT,
)
_DELIVERY = (
    select(*DELIVERY_FACT_COLUMNS)
    .select_from(_deliveries)
    .join(_mailings, _mailings.c.id == _deliveries.c.mailing_id)
    .join(_surveys, _surveys.c.id == _mailings.c.survey_id)
    .join(_contacts, _contacts.c.id == _deliveries.c.contact_id)
    .outerjoin(_tokens, _tokens.c.id == _deliveries.c.token_id)
    .where(_deliveries.c.id == bindparam("delivery_id"))
)


@dataclass(frozen=True)
class DeliveryFacts:
    """What a delivery event says about its delivery: the columns ``DELIVERY_FACT_COLUMNS``. The worker reads them
    when it claims the delivery (worker/queue.py), so recording an outcome needs no read of its own. The contact's
    address in the event is then the one the message went to, even if the contact was edited while it was sent."""

    id: int
    status: str
    channel: str
    sequence: int
    mailing_id: int
    attempts: int
    last_error: str | None
    message_id: str | None
    survey_id: int
    meta: dict[str, Any] | None
    workspace_id: int
    code: str | None
    contact_id: int
    email: str | None
    mobile: str | None
    uid: str | None
    anonymous: bool

    @classmethod
    def of(cls, row: Any) -> DeliveryFacts:
        """From a row holding ``DELIVERY_FACT_COLUMNS`` (it may hold more)."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


def delivery_changed(session: Session, delivery_id: int, event_type: str, facts: DeliveryFacts | None = None) -> None:
    """``event_type`` (delivery.sent, delivery.failed, delivery.bounced) for a delivery that just changed: as
    ``facts`` say, or else as the database now says."""
    row = (
        facts if facts is not None else DeliveryFacts.of(session.execute(_DELIVERY, {"delivery_id": delivery_id}).one())
    )
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
