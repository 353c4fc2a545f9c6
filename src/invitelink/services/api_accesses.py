"""SoSci-style API accesses: an API URL carrying a secret key for one function over one mailing."""

from __future__ import annotations

import string
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from invitelink.models import ApiAccess, Mailing, Survey
from invitelink.services import credentials
from invitelink.services.errors import InvalidInput, NotFound, get_owned
from invitelink.services.pagination import Page, page_of

KEY_BYTES = 24
# Keys are written into shop configurations, URLs, spreadsheets and shell scripts: letters and digits survive all
# of them, and a double-click selects the whole key ("-" and "_" of base64url did not). Keys issued before are
# base64url and stay valid: a key is looked up by its digest, whatever its characters.
KEY_ALPHABET = string.ascii_letters + string.digits
INVALID_KEY = "invalid API key"
NEEDS_MAILING = frozenset({"create_link", "send_mail"})


def api_url(public_url: str, project: str, key: str) -> str:
    """The SoSci-compatible form: PUBLIC_URL/{project}/?act={key}."""
    return f"{public_url}/{project}/?act={key}"


def create_access(
    session: Session, survey: Survey, function: str, mailing_id: int | None, subgroup: str, anonymous: bool
) -> tuple[ApiAccess, str]:
    """A new access and its key (returned once; only the digest is stored)."""
    if function in NEEDS_MAILING and mailing_id is None:
        raise InvalidInput(
            f"{function} needs a mailing_id: the mailing whose links (and mails) it hands out", field="mailing_id"
        )
    if mailing_id is not None:
        mailing = session.get(Mailing, mailing_id)
        if mailing is None or mailing.survey_id != survey.id:
            raise InvalidInput("mailing_id: no such mailing in this survey", field="mailing_id")
    key = credentials.issue("", KEY_BYTES, shown=6, alphabet=KEY_ALPHABET)
    access = ApiAccess(
        survey_id=survey.id,
        mailing_id=mailing_id,
        function=function,
        subgroup=subgroup,
        anonymous=anonymous,
        key_digest=key.digest,
        key_prefix=key.shown,
    )
    session.add(access)
    session.flush()
    return access, key.secret


def get_access(session: Session, survey: Survey, access_id: int) -> ApiAccess:
    return get_owned(session, ApiAccess, access_id, "API access not found", survey_id=survey.id)


def revoke(session: Session, access: ApiAccess) -> None:
    credentials.revoke(session, access)


@dataclass(frozen=True)
class AccessInfo:
    """What a call through an API URL needs to know, read in one narrow query."""

    id: int
    survey_id: int
    mailing_id: int | None
    function: str
    subgroup: str
    anonymous: bool
    project: str


_access = ApiAccess.__table__.c
_survey = Survey.__table__.c
# A Core statement on the table columns, executed on the session's connection: the ORM's per-statement work
# (compile state, result adaptation) was half the cost of this lookup on the create_link hot path.
_RESOLVE = (
    select(
        _access.id,
        _access.survey_id,
        _access.mailing_id,
        _access.function,
        _access.subgroup,
        _access.anonymous,
        _survey.project,
        _access.revoked_at,
    )
    .join_from(ApiAccess.__table__, Survey.__table__, _survey.id == _access.survey_id)
    .where(_access.key_digest == bindparam("key_digest"))
)


def resolve(session: Session, project: str, key: str) -> AccessInfo:
    """The live access behind ``key`` on ``project``: one indexed lookup by digest (no per-request KDF)."""
    row = session.connection().execute(_RESOLVE, {"key_digest": credentials.lookup_digest(key)}).first()
    if row is None or row.revoked_at is not None or row.project != project:
        raise NotFound(INVALID_KEY)
    return AccessInfo(row.id, row.survey_id, row.mailing_id, row.function, row.subgroup, row.anonymous, row.project)


def list_accesses(session: Session, survey: Survey, cursor: str | None, limit: int) -> Page[ApiAccess]:
    return page_of(session, ApiAccess, cursor, limit, ApiAccess.survey_id == survey.id)
