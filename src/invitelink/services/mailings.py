"""Serial mailings of a survey (the admin-made kind; trigger batches are made by services/triggers.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Contact, Delivery, Mailing, Survey, Token, utcnow
from invitelink.services.deliveries import enqueue_token_holders, reachable
from invitelink.services.errors import Conflict, InvalidInput, get_owned, remove
from invitelink.services.links import issue_mailing_tokens
from invitelink.services.pagination import Page, page_of


def get_mailing(session: Session, survey: Survey, mailing_id: int) -> Mailing:
    return get_owned(session, Mailing, mailing_id, "mailing not found", survey_id=survey.id)


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
    c, t = Contact.__table__.c, Token.__table__.c
    scope = [c.survey_id == mailing.survey_id, *([c.subgroup == subgroup] if subgroup is not None else [])]
    without_token = ~select(t.id).where(t.contact_id == c.id, t.mailing_id == mailing.id).exists()
    missing = session.scalars(select(c.id).where(*scope, reachable(mailing), without_token)).all()
    issue_mailing_tokens(session.connection(), mailing.survey_id, mailing.id, missing, utcnow())
    # Counted before and after: the driver's rowcount for INSERT … SELECT is not reliable on every engine.
    invitations = select(func.count()).where(Delivery.mailing_id == mailing.id, Delivery.sequence == 0)
    before = session.scalar(invitations) or 0
    try:
        with session.begin_nested():
            enqueue_token_holders(session, mailing, due_at, *scope)
    except IntegrityError as exc:
        raise Conflict("this mailing is being sent by another request right now; try again") from exc
    queued = (session.scalar(invitations) or 0) - before
    total = session.scalar(select(func.count()).select_from(Contact).where(*scope)) or 0
    reachable_count = session.scalar(select(func.count()).select_from(Contact).where(*scope, reachable(mailing))) or 0
    return SendSummary(queued=queued, already_queued=reachable_count - queued, unreachable=total - reachable_count)


def list_mailings(session: Session, survey: Survey, cursor: str | None, limit: int) -> Page[Mailing]:
    return page_of(session, Mailing, cursor, limit, Mailing.survey_id == survey.id)


def delete_mailing(session: Session, survey: Survey, mailing_id: int) -> None:
    remove(session, get_mailing(session, survey, mailing_id))
