"""The participant family's use cases: each takes the session the write seam opens and returns an outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from invitelink.services import participation, supplier_redirects, unsubscribe
from invitelink.services.errors import NotFound
from invitelink.services.links import questionnaire_redirect

CLOSED_STATUSES = ("draft", "closed")


@dataclass(frozen=True)
class LinkOutcome:
    """``open``: go on to ``target``; ``missing``: no such link; ``closed``: the survey is draft or closed."""

    state: str
    target: str | None = None


def open_link(
    session: Session, project: str, code: str, kind: str, ip: str | None, user_agent: str | None
) -> LinkOutcome:
    """A personal or serial-code link of ``project`` was opened: count the click, name the questionnaire URL."""
    try:
        entry = participation.find_entry(session, project, code, kind)
    except NotFound:
        return LinkOutcome("missing")
    if entry.survey.status in CLOSED_STATUSES:
        return LinkOutcome("closed")
    participation.record_click(session, entry.token, ip, user_agent)
    return LinkOutcome("open", questionnaire_redirect(entry.survey.questionnaire_url, entry.token.code))


def report_event(session: Session, secret: str, code: str, event: str, response: dict[str, Any] | None) -> str:
    """The questionnaire's authenticated callback; returns the participation's status now."""
    survey = participation.callback_survey(session, secret)
    return participation.record_event(session, survey, code, event, response, source="callback")


@dataclass(frozen=True)
class EndOutcome:
    """What the participant's browser is shown after the end redirect: the page for ``shown`` (the outcome, or the
    completion the browser reported and the callback has yet to confirm) or, for supplier traffic, the supplier's
    redirect (signed only for a recorded outcome)."""

    shown: str
    supplier_redirect: str | None


def end(session: Session, server_secret: bytes, code: str, status: str) -> EndOutcome:
    """The participant's browser reports the end (NotFound for an unknown token)."""
    shown = participation.record_end(session, code, status)
    return EndOutcome(shown, supplier_redirects.end_redirect(session, server_secret, code))


def unsubscribe_link_valid(session: Session, server_secret: bytes, token: str) -> bool:
    return unsubscribe.resolve(session, server_secret, token) is not None


def unsubscribe_now(session: Session, server_secret: bytes, token: str) -> bool:
    """Suppress the address the link was sent to; False for a link that does not verify."""
    found = unsubscribe.resolve(session, server_secret, token)
    if found is not None:
        unsubscribe.suppress(session, *found)
    return found is not None
