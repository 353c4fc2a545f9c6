"""Personal links: issuing a contact's token (idempotently) and building its URL."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from invitelink.models import Contact, Token, utcnow
from invitelink.security import random_code
from invitelink.services.bulk_rows import insert_rows
from invitelink.services.upsert import insert_ignore

TOKEN_LENGTH = 16
TOKEN_INSERT_COLUMNS = (
    "code",
    "survey_id",
    "contact_id",
    "kind",
    "api_access_id",
    "mailing_id",
    "notice",
    "created_at",
)
TOKEN_PLACEHOLDER = re.compile(r"\{token\}|%7Btoken%7D", re.IGNORECASE)


def personal_link(public_url: str, project: str, code: str) -> str:
    return f"{public_url}/{project}/?d={code}"


def issue_token(
    session: Session, contact: Contact, *, mailing_id: int | None = None, api_access_id: int | None = None
) -> Token:
    """The contact's token for this mailing or API access (the existing one, else a new one), as an object."""
    code = issue_token_code(session, contact.survey_id, contact.id, mailing_id=mailing_id, api_access_id=api_access_id)
    return session.execute(select(Token).where(Token.code == code)).scalar_one()


def questionnaire_redirect(questionnaire_url: str, code: str) -> str:
    """The questionnaire URL with the token: substituted for ``{token}``, else added as ``?token=``."""
    # URL validation percent-encodes the braces in a path, so both spellings mean the placeholder.
    if TOKEN_PLACEHOLDER.search(questionnaire_url):
        return TOKEN_PLACEHOLDER.sub(quote(code, safe=""), questionnaire_url)
    parts = urlsplit(questionnaire_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", code))
    return urlunsplit(parts._replace(query=urlencode(query)))


_t = Token.__table__.c
# Skipped contacts are read back by the (contact_id, mailing_id) index, this many per IN list.
_HELD_CHUNK = 500
# One lookup per channel of issue, built once (hot path): tokens are unique per contact and mailing, and per
# contact and API access.
_TOKEN_THROUGH = {
    name: select(_t.code).where(_t.contact_id == bindparam("contact_id"), _t[name] == bindparam(name))
    for name in ("api_access_id", "mailing_id")
}


def issue_token_code(
    session: Session,
    survey_id: int,
    contact_id: int,
    *,
    api_access_id: int | None = None,
    mailing_id: int | None = None,
    known_new: bool = False,
) -> str:
    """The code of the contact's token for this API access or mailing, issued if missing.

    Insert-or-fetch on the unique constraints (ON CONFLICT DO NOTHING), so concurrent callers on several app
    instances all end up with the one token. ``known_new``: the contact was created in this transaction, so it
    cannot have a token yet.
    """
    through = "api_access_id" if api_access_id is not None else "mailing_id"
    keys = {"contact_id": contact_id, through: api_access_id if api_access_id is not None else mailing_id}
    lookup = _TOKEN_THROUGH[through]
    conn = session.connection()
    if not known_new:
        existing = conn.execute(lookup, keys).scalar()
        if existing is not None:
            return str(existing)
    insert_token = insert_ignore(Token.__table__, TOKEN_INSERT_COLUMNS, "code")
    for _attempt in range(3):
        code = conn.execute(
            insert_token,
            {
                "contact_id": contact_id,
                "api_access_id": api_access_id,
                "mailing_id": mailing_id,
                "code": random_code(TOKEN_LENGTH),
                "survey_id": survey_id,
                "kind": "personal",
                "notice": "",
                "created_at": utcnow(),
            },
        ).scalar()
        if code is not None:
            return str(code)
        winner = conn.execute(lookup, keys).scalar()
        if winner is not None:
            return str(winner)
        # The clash was on the random code itself (36^16): draw again.
    raise RuntimeError("could not issue a unique token")


def issue_mailing_tokens(
    conn: Connection, survey_id: int, mailing_id: int, contact_ids: Iterable[int], now: datetime
) -> dict[int, int]:
    """A personal token of ``mailing_id`` for each contact that has none yet, in bulk; returns contact id -> token id
    for every contact given.

    Insert-or-skip on the unique (contact, mailing), returning what was inserted; a skipped contact either holds a
    token of the mailing already (read back through that index) or lost on its random code, and is drawn again."""
    tokens: dict[int, int] = {}
    pending = list(contact_ids)
    fixed = {"survey_id": survey_id, "kind": "personal", "mailing_id": mailing_id, "notice": "", "created_at": now}
    for _attempt in range(3):
        if not pending:
            return tokens
        inserted = insert_rows(
            conn,
            Token,
            ("code", "contact_id"),
            [(random_code(TOKEN_LENGTH), contact_id) for contact_id in pending],
            fixed,
            returning=("contact_id", "id"),
            skip_conflicts=True,
        )
        tokens.update({row.contact_id: row.id for row in inserted})
        skipped = [contact_id for contact_id in pending if contact_id not in tokens]
        for start in range(0, len(skipped), _HELD_CHUNK):
            held = select(_t.contact_id, _t.id).where(
                _t.mailing_id == mailing_id, _t.contact_id.in_(skipped[start : start + _HELD_CHUNK])
            )
            tokens.update({row.contact_id: row.id for row in conn.execute(held)})
        pending = [contact_id for contact_id in skipped if contact_id not in tokens]
    if pending:
        raise RuntimeError("could not issue unique tokens")
    return tokens
