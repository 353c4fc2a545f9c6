"""Participations: clicks on links, and questionnaire events that only ever move forward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Mailing, Participation, Survey, Token, utcnow
from invitelink.security import digest
from invitelink.services import events
from invitelink.services.errors import InvalidInput, NotFound, Unauthorized
from invitelink.services.upsert import rowcount

TERMINAL = ("completed", "terminated", "quotafull", "security")
# Event name (callback) or end-redirect status -> participation status.
EVENTS = {
    "started": "started",
    "completed": "completed",
    "complete": "completed",
    "terminated": "terminated",
    "terminate": "terminated",
    "quotafull": "quotafull",
    "security": "security",
}
# From which statuses each status may be reached: a participation never goes back.
ALLOWED_FROM = {"started": ("clicked",), **{s: ("clicked", "started") for s in TERMINAL}}


@dataclass(frozen=True)
class Entry:
    survey: Survey
    token: Token


def find_entry(session: Session, project: str, code: str, kind: str) -> Entry:
    """The token behind a participant link of ``project``; NotFound for anything else."""
    row = session.execute(
        select(Token, Survey).join(Survey, Survey.id == Token.survey_id).where(Token.code == code)
    ).first()
    if row is None or row[1].project != project or (row[0].kind == "serial_code") != (kind == "serial_code"):
        raise NotFound("unknown link")
    return Entry(survey=row[1], token=row[0])


def _participation(session: Session, token: Token) -> Participation:
    """The token's participation, created on first use (insert-or-fetch on the unique token_id)."""
    existing = session.scalar(select(Participation).where(Participation.token_id == token.id))
    if existing is not None:
        return existing
    # The invitation's metadata (trigger batches) travels with the participation, shown in results once completed.
    meta = session.scalar(select(Mailing.meta).where(Mailing.id == token.mailing_id)) if token.mailing_id else None
    participation = Participation(survey_id=token.survey_id, token_id=token.id, status="clicked", meta=meta)
    try:
        with session.begin_nested():
            session.add(participation)
            session.flush()
    except IntegrityError:
        winner = session.scalar(select(Participation).where(Participation.token_id == token.id))
        assert winner is not None
        return winner
    return participation


def record_click(session: Session, token: Token, ip: str | None, user_agent: str | None) -> None:
    """Count a click; the first one sets first_click_at. A single UPDATE, so concurrent clicks all count."""
    participation = _participation(session, token)
    now = utcnow()
    session.execute(
        update(Participation)
        .where(Participation.id == participation.id)
        .values(click_count=Participation.click_count + 1, updated_at=now)
    )
    first = session.execute(
        update(Participation)
        .where(Participation.id == participation.id, Participation.first_click_at.is_(None))
        .values(first_click_at=now, ip=(ip or "")[:45] or None, user_agent=(user_agent or "")[:500] or None)
    )
    if rowcount(first) == 1:
        events.participation_changed(session, participation.id, "participation.clicked")


def callback_survey(session: Session, secret: str) -> Survey:
    survey = session.scalar(select(Survey).where(Survey.callback_secret_digest == digest(secret)))
    if survey is None:
        raise Unauthorized("invalid callback secret")
    return survey


def record_event(
    session: Session,
    survey: Survey,
    code: str,
    event: str,
    response: dict[str, Any] | None = None,
    *,
    verified: bool = False,
) -> str:
    """Apply a questionnaire event; repeats and backward moves change nothing. Returns the status now.

    ``verified``: the event came server to server with the survey's secret, so a completion is confirmed (even
    when the participant's browser reported it first)."""
    status = EVENTS.get(event)
    if status is None:
        raise InvalidInput("event must be one of started, completed, terminated, quotafull, security", field="event")
    token = session.scalar(select(Token).where(Token.code == code))
    if token is None or token.survey_id != survey.id:
        raise NotFound("unknown token")
    participation = _participation(session, token)
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == "started":
        values["started_at"] = now
    else:
        values["ended_at"] = now
    if response is not None:
        values["response"] = response
    # Conditional UPDATE: the database decides, so two racing callbacks cannot move a participation backwards, and
    # its row count says whether anything changed (a repeat or a contradiction records no event).
    moved = session.execute(
        update(Participation)
        .where(Participation.id == participation.id, Participation.status.in_(ALLOWED_FROM[status]))
        .values(**values)
    )
    if status in TERMINAL:
        # A completion straight from a click still counts as started, for stats and serial_status.
        session.execute(
            update(Participation)
            .where(Participation.id == participation.id, Participation.started_at.is_(None))
            .values(started_at=now)
        )
    if verified and status == "completed":
        session.execute(
            update(Participation)
            .where(
                Participation.id == participation.id,
                Participation.status == "completed",
                Participation.verified_at.is_(None),
            )
            .values(verified_at=now)
        )
    if rowcount(moved) == 1:
        events.participation_changed(session, participation.id, f"participation.{status}")
    session.expire(participation)
    return session.scalar(select(Participation.status).where(Participation.id == participation.id)) or status


def record_end(session: Session, code: str, status: str) -> str:
    """The end redirect: like a callback event, identified by the token alone (the browser knows no secret)."""
    survey = session.scalar(select(Survey).join(Token, Token.survey_id == Survey.id).where(Token.code == code))
    if survey is None:
        raise NotFound("unknown token")
    return record_event(session, survey, code, status)
