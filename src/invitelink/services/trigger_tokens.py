"""Trigger tokens: ``sit_…`` secrets of one survey with their defaults (subject, message, reminders, cooldown)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.models import Survey, TriggerToken, Workspace
from invitelink.services import credentials
from invitelink.services.errors import InvalidInput, get_owned, remove
from invitelink.services.pagination import Page, page_of

SECRET_PREFIX = "sit_"  # noqa: S105 - the public prefix of every trigger secret, not a secret
PREFIX_SHOWN = 10


def trigger_url(public_url: str) -> str:
    return f"{public_url}/api/invitation-trigger"


def create_token(session: Session, survey: Survey, **settings: object) -> tuple[TriggerToken, str]:
    """A new token and its secret (returned once; only the SHA-256 digest is stored)."""
    secret = credentials.issue(SECRET_PREFIX, 32, shown=PREFIX_SHOWN)
    token = TriggerToken(survey_id=survey.id, prefix=secret.shown, secret_digest=secret.digest, **settings)
    session.add(token)
    session.flush()
    return token, secret.secret


def get_token(session: Session, survey: Survey, token_id: int) -> TriggerToken:
    return get_owned(session, TriggerToken, token_id, "trigger token not found", survey_id=survey.id)


@dataclass(frozen=True)
class Caller:
    """The token behind a trigger call, with its survey and workspace."""

    token: TriggerToken
    survey: Survey
    workspace: Workspace


def authenticate(session: Session, secret: str | None) -> Caller:
    """The token whose secret this is: one indexed lookup by digest (a digest comparison leaks no timing)."""
    if not secret:
        raise InvalidInput("missing trigger token: send Authorization: Bearer sit_…")
    row = session.execute(
        select(TriggerToken, Survey, Workspace)
        .join(Survey, Survey.id == TriggerToken.survey_id)
        .join(Workspace, Workspace.id == Survey.workspace_id)
        .where(TriggerToken.secret_digest == credentials.lookup_digest(secret))
    ).first()
    if row is None:
        raise InvalidInput("unknown trigger token: it may have been deleted; create a new one for this survey")
    return Caller(*row)


def list_tokens(session: Session, survey: Survey, cursor: str | None, limit: int) -> Page[TriggerToken]:
    return page_of(session, TriggerToken, cursor, limit, TriggerToken.survey_id == survey.id)


def update_token(session: Session, token: TriggerToken, fields: dict[str, object]) -> TriggerToken:
    """Set the given name and defaults; a null leaves a field as it is."""
    for name, value in fields.items():
        if value is not None:
            setattr(token, name, value)
    session.flush()
    return token


def delete_token(session: Session, survey: Survey, token_id: int) -> None:
    remove(session, get_token(session, survey, token_id))
