"""Login (OAuth2 password flow, used by Swagger UI's Authorize button), logout, who am I.

The login is throttled before any password is checked: failed logins are counted per account (the e-mail as
typed, normalised) and per client address (``request.client.host``: behind a reverse proxy, the address uvicorn
takes from X-Forwarded-For when the proxy is among FORWARDED_ALLOW_IPS). A login counts as failed from the start
and is given back when it succeeds (or never got to the check), so concurrent guesses cannot overtake the count.
Unknown and known e-mails are counted, checked and answered alike.

Lockout: an attacker who sends wrong passwords for someone's e-mail fills that account's window and would lock
its owner out for the window's length. So an address from which the account logged in successfully within
KNOWN_ADDRESS_SECONDS keeps its way in past a full account window (only its address limit applies): the owner at
the office or at home is not locked out, a guesser elsewhere is. What this costs: a guesser who shares an address
with the owner (the same NAT) gets the address limit instead of the account limit."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm

from invitelink.api.admin.deps import CurrentPrincipal, Db
from invitelink.api.admin.errors import AdminRoute, render
from invitelink.api.admin.login_throttle import KNOWN_ADDRESS, KNOWN_ADDRESS_SECONDS, admit, pair
from invitelink.api.admin.schemas import MeOut, TokenOut, UserOut, WorkspaceOut
from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route
from invitelink.rate_limits import RateLimitsDep
from invitelink.security import verify_password
from invitelink.services import accounts, logins
from invitelink.services.errors import InvalidInput, Unauthorized

router = APIRouter(prefix="/auth", tags=["auth"], route_class=AdminRoute)
# The login is no unit of work: the password check must not hold a transaction (services/logins.py says why).
LoginRoute = family_route(render, validation_status=422)
SCOPE_WORKSPACE = re.compile(r"^workspace:(\d{1,18})$")


def _workspace_from_scopes(scopes: list[str]) -> int | None:
    for scope in scopes:
        match = SCOPE_WORKSPACE.fullmatch(scope)
        if match:
            return int(match.group(1))
    if scopes:
        raise InvalidInput("scope: use 'workspace:<id>' to log into a given workspace, or leave it empty")
    return None


async def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    database: DatabaseDep,
    settings: SettingsDep,
    limits: RateLimitsDep,
) -> TokenOut:
    ttl = timedelta(hours=settings.admin_session_hours)
    workspace_id = _workspace_from_scopes(form.scopes)
    account = accounts.normalize_email(form.username)
    address = request.client.host if request.client else "unknown"
    attempt = await admit(limits, account, address)
    try:
        found = await database.read(logins.account_of, account)
        # In a thread, outside any transaction; waits for an argon2 slot (security.limit_password_work), else
        # PasswordWorkBusy, a 503 with Retry-After (app.py).
        verified = await run_in_threadpool(verify_password, found.password_hash if found else None, form.password)
    except Exception:
        await attempt.give_back()
        raise
    if found is None or not verified:
        raise Unauthorized(logins.INCORRECT)
    await attempt.give_back()
    await limits.remember(KNOWN_ADDRESS, pair(account, address), KNOWN_ADDRESS_SECONDS)
    opened = await database.write(logins.open_session, found.user_id, workspace_id, ttl)
    return TokenOut(
        access_token=opened.token,
        expires_in=int(ttl.total_seconds()),
        workspace_id=opened.workspace_id,
        role=opened.role,
    )


router.add_api_route(
    "/token",
    login,
    methods=["POST"],
    response_model=TokenOut,
    summary="Log in with e-mail and password",
    description="OAuth2 password flow: `username` is the e-mail. Optional scope `workspace:<id>` picks the "
    "workspace; by default the first one the account belongs to. The token is shown once.\n\n"
    "Failed logins are limited per account and per client address (by default 10 and 50 in 15 minutes; README, "
    '"Rate limits"): over a limit the answer is 429 `{"detail": "too many failed logins; try again later"}` with '
    "`Retry-After`, for known and unknown e-mails alike. An address the account logged in from successfully in the "
    "last 30 days is not held up by the account's limit. 503 with `Retry-After` when the server is busy checking "
    "other passwords.",
    responses={
        401: {"description": "Wrong e-mail or password"},
        429: {"description": "Too many failed logins for this account or from this address (Retry-After)"},
        503: {"description": "Too many password checks at once (Retry-After)"},
    },
    route_class_override=LoginRoute,
)


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
