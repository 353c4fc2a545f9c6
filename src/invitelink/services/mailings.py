"""Serial mailings of a survey (the admin-made kind; trigger batches are made by services/triggers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Contact, Delivery, Mailing, Survey, Token, utcnow
from invitelink.models.base import UtcDateTime
from invitelink.security import random_code
from invitelink.services.errors import Conflict, InvalidInput, NotFound
from invitelink.services.links import TOKEN_INSERT_COLUMNS, TOKEN_LENGTH
from invitelink.services.upsert import insert_ignore_many

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


def get_mailing(session: Session, survey: Survey, mailing_id: int) -> Mailing:
    mailing = session.get(Mailing, mailing_id)
    if mailing is None or mailing.survey_id != survey.id:
        raise NotFound("mailing not found")
    return mailing


def create_mailing(session: Session, survey: Survey, fields: dict[str, Any]) -> Mailing:
    mailing = Mailing(survey_id=survey.id, kind="serial", **fields)
    session.add(mailing)
    session.flush()
    return mailing


def update_mailing(session: Session, mailing: Mailing, fields: dict[str, Any]) -> Mailing:
    for name, value in fields.items():
        setattr(mailing, name, value)
    session.flush()
    return mailing


@dataclass(frozen=True)
class SendSummary:
    queued: int
    already_queued: int
    unreachable: int


def send_to_contacts(session: Session, mailing: Mailing, subgroup: str | None, due_at: datetime) -> SendSummary:
    """Queue ``mailing`` to every contact of its survey (or of one subgroup) that it can reach.

    Idempotent: a contact who already has this mailing queued or sent is counted, not queued again (the unique
    delivery constraint decides). Bulk statements, so ten thousand contacts are a few round trips.
    """
    if mailing.kind != "serial":
        raise InvalidInput("only serial mailings are sent this way; trigger batches are queued by their trigger")
    c = Contact.__table__.c
    reach = c.mobile.is_not(None) if mailing.channel == "sms" else or_(c.email.is_not(None), c.mobile.is_not(None))
    scope = [c.survey_id == mailing.survey_id, *([c.subgroup == subgroup] if subgroup is not None else [])]
    where = [*scope, reach]
    total = session.scalar(select(func.count()).select_from(Contact).where(*scope)) or 0
    conn = session.connection()
    t = Token.__table__.c
    missing = (
        conn.execute(
            select(c.id).where(*where, ~select(t.id).where(t.contact_id == c.id, t.mailing_id == mailing.id).exists())
        )
        .scalars()
        .all()
    )
    now = utcnow()
    if missing:
        conn.execute(
            insert_ignore_many(Token.__table__, TOKEN_INSERT_COLUMNS),
            [
                {
                    "code": random_code(TOKEN_LENGTH),
                    "survey_id": mailing.survey_id,
                    "contact_id": contact_id,
                    "kind": "personal",
                    "mailing_id": mailing.id,
                    "api_access_id": None,
                    "notice": "",
                    "created_at": now,
                }
                for contact_id in missing
            ],
        )
    channel: ColumnElement[str]
    if mailing.channel == "sms":
        channel = literal("sms")
    else:
        channel = case((c.email.is_not(None), literal("email")), else_=literal("sms"))
    d = Delivery.__table__.c
    rows = (
        select(
            literal(mailing.id),
            c.id,
            t.id,
            channel,
            literal(0),
            literal("queued"),
            literal("queued"),
            literal(due_at, UtcDateTime()),
            literal(0),
            literal(now, UtcDateTime()),
        )
        .select_from(Contact)
        .join(Token, (t.contact_id == c.id) & (t.mailing_id == mailing.id))
        .where(*where, ~select(d.id).where(d.mailing_id == mailing.id, d.contact_id == c.id, d.sequence == 0).exists())
    )
    # Counted before and after: the driver's rowcount for INSERT … SELECT is not reliable on every engine.
    invitations = select(func.count()).select_from(Delivery).where(d.mailing_id == mailing.id, d.sequence == 0)
    before = session.scalar(invitations) or 0
    try:
        with session.begin_nested():
            session.execute(insert(Delivery).from_select(DELIVERY_COLUMNS, rows))
    except IntegrityError as exc:
        raise Conflict("this mailing is being sent by another request right now; try again") from exc
    queued = (session.scalar(invitations) or 0) - before
    reachable = session.scalar(select(func.count()).select_from(Contact).where(*where)) or 0
    return SendSummary(queued=queued, already_queued=reachable - queued, unreachable=total - reachable)
