"""Participations: clicks on links, and questionnaire events that only ever move forward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select, update
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
# Who reports an event: the participant's browser (end redirect) or the questionnaire's authenticated callback.
Source = Literal["browser", "callback"]


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
    source: Source = "browser",
) -> str:
    """Apply a questionnaire event; repeats and backward moves change nothing. Returns the status now.

    ``source``: ``callback`` when the event came server to server with the survey's secret, ``browser`` for the end
    redirect. A callback's outcome is final and confirms a completion. On a survey with ``outcome_verification =
    callback`` the browser's completion is held as reported until the callback confirms it, and the callback
    corrects a different outcome that only the browser reported."""
    status = EVENTS.get(event)
    if status is None:
        raise InvalidInput("event must be one of started, completed, terminated, quotafull, security", field="event")
    token = session.scalar(select(Token).where(Token.code == code))
    if token is None or token.survey_id != survey.id:
        raise NotFound("unknown token")
    participation = _participation(session, token)
    if source == "browser" and status == "completed" and survey.outcome_verification == "callback":
        _report_completion(session, participation.id)
    elif not _move(session, participation.id, status, response, source) and source == "callback" and status in TERMINAL:
        _reconcile(session, participation.id, status, response, may_reverse=survey.outcome_verification == "callback")
    session.expire(participation)
    return session.scalar(select(Participation.status).where(Participation.id == participation.id)) or status


def _move(
    session: Session, participation_id: int, status: str, response: dict[str, Any] | None, source: Source
) -> bool:
    """Move forward to ``status`` if the participation may; records its event. False when nothing changed."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status == "started":
        values["started_at"] = now
    else:
        # The participant ended when the browser first said so, even when the callback decides the outcome later.
        values["ended_at"] = func.coalesce(Participation.reported_at, now)
        values["outcome_source"] = source
        if source == "callback" and status == "completed":
            values["verified_at"] = now
    if response is not None:
        values["response"] = response
    # Conditional UPDATE: the database decides, so two racing callbacks cannot move a participation backwards, and
    # its row count says whether anything changed (a repeat or a contradiction records no event).
    moved = session.execute(
        update(Participation)
        .where(Participation.id == participation_id, Participation.status.in_(ALLOWED_FROM[status]))
        .values(**values)
    )
    if status in TERMINAL:
        # A completion straight from a click still counts as started, for stats and serial_status.
        session.execute(
            update(Participation)
            .where(Participation.id == participation_id, Participation.started_at.is_(None))
            .values(started_at=now)
        )
    if rowcount(moved) != 1:
        return False
    events.participation_changed(session, participation_id, f"participation.{status}")
    return True


def _report_completion(session: Session, participation_id: int) -> None:
    """The browser says "complete" on a survey that trusts only the callback: the participant has at least started
    (recorded as such, with its event), and the report is kept for the callback to confirm; it is not an outcome."""
    _move(session, participation_id, "started", None, "browser")
    now = utcnow()
    session.execute(
        update(Participation)
        .where(
            Participation.id == participation_id,
            Participation.status == "started",
            Participation.reported_status.is_(None),
        )
        .values(reported_status="completed", reported_at=now, updated_at=now)
    )


def _reconcile(
    session: Session, participation_id: int, status: str, response: dict[str, Any] | None, *, may_reverse: bool
) -> None:
    """The callback reports an outcome for a participation the browser has already ended: the same outcome is
    confirmed (and final from now on). ``may_reverse`` (surveys with ``outcome_verification = callback``): a
    different one replaces it, as panel exchanges reconcile, with the new status's event carrying
    ``reversed_from``. On other surveys a final status stays final, whoever contradicts it. Outcomes the callback
    or admission set are never changed."""
    current = session.execute(
        select(Participation.status, Participation.outcome_source).where(Participation.id == participation_id)
    ).one()
    if current.outcome_source != "browser" or current.status not in TERMINAL:
        return
    if current.status != status and not may_reverse:
        return
    now = utcnow()
    values: dict[str, Any] = {"status": status, "outcome_source": "callback", "updated_at": now}
    if status == "completed":
        values["verified_at"] = now
    if response is not None:
        values["response"] = response
    # Conditioned on what was read, so of two racing callbacks only the first changes the row.
    changed = session.execute(
        update(Participation)
        .where(
            Participation.id == participation_id,
            Participation.status == current.status,
            Participation.outcome_source == "browser",
        )
        .values(**values)
    )
    if rowcount(changed) == 1 and current.status != status:
        events.participation_changed(session, participation_id, f"participation.{status}", reversed_from=current.status)


def record_end(session: Session, code: str, status: str) -> str:
    """The end redirect: like a callback event, identified by the token alone (the browser knows no secret).
    Returns what the participant's page shows: the status now, or the completion reported and not yet confirmed."""
    survey = session.scalar(select(Survey).join(Token, Token.survey_id == Survey.id).where(Token.code == code))
    if survey is None:
        raise NotFound("unknown token")
    now = record_event(session, survey, code, status, source="browser")
    if now in TERMINAL:
        return now
    reported = session.scalar(
        select(Participation.reported_status).join(Token, Token.id == Participation.token_id).where(Token.code == code)
    )
    return reported or now
