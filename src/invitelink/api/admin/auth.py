"""Login (OAuth2 password flow, used by Swagger UI's Authorize button), logout, who am I."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import OAuth2PasswordRequestForm

from invitelink.api.admin.deps import CurrentPrincipal, Db
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import MeOut, TokenOut, UserOut, WorkspaceOut
from invitelink.api.deps import SettingsDep
from invitelink.services import accounts
from invitelink.services.errors import InvalidInput

router = APIRouter(prefix="/auth", tags=["auth"], route_class=AdminRoute)
SCOPE_WORKSPACE = re.compile(r"^workspace:(\d{1,18})$")


def _workspace_from_scopes(scopes: list[str]) -> int | None:
    for scope in scopes:
        match = SCOPE_WORKSPACE.fullmatch(scope)
        if match:
            return int(match.group(1))
    if scopes:
        raise InvalidInput("scope: use 'workspace:<id>' to log into a given workspace, or leave it empty")
    return None


@router.post(
    "/token",
    response_model=TokenOut,
    summary="Log in with e-mail and password",
    description="OAuth2 password flow: `username` is the e-mail. Optional scope `workspace:<id>` picks the "
    "workspace; by default the first one the account belongs to. The token is shown once.",
    responses={401: {"description": "Wrong e-mail or password"}},
)
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: Db,
    settings: SettingsDep,
) -> TokenOut:
    ttl = timedelta(hours=settings.admin_session_hours)
    token, row = accounts.login(db, form.username, form.password, _workspace_from_scopes(form.scopes), ttl)
    role = next(r for w, r in accounts.list_workspaces(db, row.user_id) if w.id == row.workspace_id)
    return TokenOut(access_token=token, expires_in=int(ttl.total_seconds()), workspace_id=row.workspace_id, role=role)


@router.post("/logout", status_code=204, summary="Log out (revoke this token)")
def logout(db: Db, principal: CurrentPrincipal) -> Response:
    accounts.logout(db, principal)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut, summary="The account, workspace and role behind this token")
def me(db: Db, principal: CurrentPrincipal) -> MeOut:
    user = accounts.get_user(db, principal)
    workspace = accounts.get_workspace(db, principal)
    return MeOut(
        user=UserOut.model_validate(user),
        workspace=WorkspaceOut.model_validate(workspace),
        role=principal.role,
    )
