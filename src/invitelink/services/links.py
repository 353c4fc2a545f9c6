"""Personal links: issuing a contact's token (idempotently) and building its URL."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Contact, Token
from invitelink.security import random_code

TOKEN_LENGTH = 16
TOKEN_PLACEHOLDER = re.compile(r"\{token\}|%7Btoken%7D", re.IGNORECASE)


def personal_link(public_url: str, project: str, code: str) -> str:
    return f"{public_url}/{project}/?d={code}"


def serial_link(public_url: str, project: str, code: str) -> str:
    return f"{public_url}/{project}/?s={code}"


def redact_link(url: str) -> str:
    """A link safe for logs: the token is a credential, so only its first characters are kept."""
    head, sep, code = url.rpartition("=")
    return f"{head}{sep}{code[:4]}…" if sep else url


def issue_token(
    session: Session, contact: Contact, *, mailing_id: int | None = None, api_access_id: int | None = None
) -> Token:
    """The contact's token for this mailing or API access: the existing one, else a new one.

    Insert-then-fetch on the unique constraint, not check-then-insert, so concurrent callers on several app
    instances all end up with the one token.
    """
    column = Token.api_access_id if api_access_id is not None else Token.mailing_id
    through = api_access_id if api_access_id is not None else mailing_id
    existing = session.scalar(select(Token).where(Token.contact_id == contact.id, column == through))
    if existing is not None:
        return existing
    token = Token(
        code=random_code(TOKEN_LENGTH),
        survey_id=contact.survey_id,
        contact_id=contact.id,
        kind="personal",
        mailing_id=mailing_id,
        api_access_id=api_access_id,
    )
    try:
        with session.begin_nested():
            session.add(token)
            session.flush()
    except IntegrityError:
        winner = session.scalar(select(Token).where(Token.contact_id == contact.id, column == through))
        if winner is None:  # the clash was on the random code itself (36^16): draw again
            return issue_token(session, contact, mailing_id=mailing_id, api_access_id=api_access_id)
        return winner
    return token


def questionnaire_redirect(questionnaire_url: str, code: str) -> str:
    """The questionnaire URL with the token: substituted for ``{token}``, else added as ``?token=``."""
    # URL validation percent-encodes the braces in a path, so both spellings mean the placeholder.
    if TOKEN_PLACEHOLDER.search(questionnaire_url):
        return TOKEN_PLACEHOLDER.sub(quote(code, safe=""), questionnaire_url)
    parts = urlsplit(questionnaire_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", code))
    return urlunsplit(parts._replace(query=urlencode(query)))
