"""Admin API authentication and authorisation dependencies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from invitelink.models import Survey
from invitelink.services import accounts, surveys
from invitelink.services.accounts import Principal
from invitelink.services.errors import Forbidden, Unauthorized
from invitelink.services.pagination import MAX_LIMIT


def get_session(request: Request) -> Iterator[Session]:
    """The request's session: the unit of work's for a request that may write (the admin route class opens it, and
    commits it before answering), a read session for GET and HEAD."""
    session: Session | None = getattr(request.state, "session", None)
    if session is not None:
        yield session
        return
    with request.app.state.database.read_sessions() as reader:
        yield reader


# Its description is what the Authorize dialog of /docs shows above the fields (docs.py lists this scheme first).
oauth2 = OAuth2PasswordBearer(
    tokenUrl="/admin/v1/auth/token",
    auto_error=False,
    description=(
        "Admin API: enter your e-mail as username and your password (client_id and client_secret stay empty). "
        "An admin token (ilk_…) you already have goes into a request's Authorization header as Bearer ilk_…; "
        "not into the callback-secret scheme below, which is for questionnaire callbacks only."
    ),
)

Db = Annotated[Session, Depends(get_session)]
# The page size of every admin list.
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def current_principal(db: Db, token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    if not token:
        raise Unauthorized("missing bearer token: log in at /admin/v1/auth/token")
    return accounts.resolve_token(db, token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(role: str) -> Callable[[Principal], Principal]:
    """A dependency that lets through principals with at least ``role``."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(role):
            raise Forbidden(f"this needs the {role} role or higher; you are {principal.role}")
        return principal

    return check


Viewer = CurrentPrincipal
Editor = Annotated[Principal, Depends(require("editor"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def survey_for_read(db: Db, principal: CurrentPrincipal, survey_id: Annotated[int, Path()]) -> Survey:
    return surveys.get_survey(db, principal.workspace_id, survey_id)


def survey_for_write(db: Db, principal: Editor, survey_id: Annotated[int, Path()]) -> Survey:
    return surveys.get_survey(db, principal.workspace_id, survey_id)


ReadableSurvey = Annotated[Survey, Depends(survey_for_read)]
WritableSurvey = Annotated[Survey, Depends(survey_for_write)]
