"""Member invitations: owners and admins invite an e-mail address with a role; the address's owner accepts with the
secret. Inviting answers alike whether or not an account has the address, and nobody joins a workspace without
accepting (the services/invitations.py docstring has the rules).

Accepting runs outside the admin unit of work, as webhooks' URL checks do: with a password it reads, runs argon2
with no transaction open (on SQLite the unit of work would hold the one writer meanwhile), then writes; and a wrong
password must be counted by a commit of its own while the request answers 401, which a unit of work would roll
back."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from invitelink.api.admin.deps import Admin, Db, Limit, oauth2
from invitelink.api.admin.errors import AdminRoute, render
from invitelink.api.admin.login_throttle import admit
from invitelink.api.admin.schemas import (
    InvitationAccept,
    InvitationCreated,
    InvitationIn,
    InvitationOut,
    Page,
    TokenOut,
)
from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route
from invitelink.rate_limits import RateLimits, RateLimitsDep
from invitelink.security import hash_password, verify_password
from invitelink.services import invitations
from invitelink.services.errors import InvalidInput, Unauthorized
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(tags=["members"], route_class=AdminRoute)
# Accepting: the admin error format, no unit of work (see the module's docstring).
acceptance = APIRouter(tags=["members"], route_class=family_route(render, validation_status=422))

InvitationId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The invitation's id.")]


def _error(description: str, detail: str, field: str | None = None) -> dict[str, Any]:
    """An error answer for the OpenAPI document, with an example body in the admin format."""
    example: dict[str, Any] = {"detail": detail, **({"field": field} if field else {})}
    return {"description": description, "content": {"application/json": {"example": example}}}


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _error("No such invitation in this workspace", "invitation not found")
}
CREATE_DESCRIPTION = (
    "Invites an e-mail address into the current workspace with a role (owners and admins; only owners invite "
    "owners). The answer is the same whether or not an account has that address: nobody is added until the "
    "invited person accepts with `secret` at `POST /admin/v1/invitations/accept`. The secret is shown once (null "
    "in an Idempotency-Key replay) and is not mailed by the service: pass it on yourself. It expires after "
    "`expires_in_days` (7 by default). Inviting an address again replaces its pending invitation. 409 if the "
    "address already belongs to a member of this workspace."
)


def _created(issued: invitations.Issued) -> InvitationCreated:
    out = InvitationOut.model_validate(issued.invitation)
    return InvitationCreated(**out.model_dump(), secret=issued.secret)


@router.post(
    "/invitations",
    response_model=InvitationCreated,
    status_code=201,
    summary="Invite someone by e-mail (owners and admins); the secret is shown once",
    description=CREATE_DESCRIPTION,
    responses={409: _error("Already a member", "colleague@example.org is already a member of this workspace", "email")},
)
def create_invitation(body: InvitationIn, db: Db, principal: Admin) -> InvitationCreated:
    return _created(invitations.invite(db, principal, body.email, body.role, body.expires_in_days))


@router.post(
    "/members",
    response_model=InvitationCreated,
    status_code=201,
    deprecated=True,
    summary="Add a member by e-mail: creates an invitation (same as POST /admin/v1/invitations)",
    description="Kept for clients of the time members were added directly. It now does exactly what "
    "`POST /admin/v1/invitations` does: " + CREATE_DESCRIPTION,
)
def add_member(body: InvitationIn, db: Db, principal: Admin) -> InvitationCreated:
    return create_invitation(body, db, principal)


@router.get(
    "/invitations",
    response_model=Page[InvitationOut],
    summary="Pending invitations of the workspace (owners and admins)",
    description="Invitations that can still be accepted, oldest first; never their secrets.",
)
def list_invitations(
    db: Db, principal: Admin, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[InvitationOut]:
    page = invitations.list_pending(db, principal, cursor, limit)
    return Page(items=[InvitationOut.model_validate(i) for i in page.items], next_cursor=page.next_cursor)


@router.get(
    "/invitations/{invitation_id}",
    response_model=InvitationOut,
    summary="One invitation, whatever its status (owners and admins)",
    responses=NOT_FOUND,
)
def get_invitation(invitation_id: InvitationId, db: Db, principal: Admin) -> InvitationOut:
    return InvitationOut.model_validate(invitations.get_invitation(db, principal, invitation_id))


@router.delete(
    "/invitations/{invitation_id}",
    status_code=204,
    summary="Revoke an invitation: its secret stops working",
    description="Owners and admins; only owners revoke an invitation to become owner. Revoking twice is fine; "
    "an accepted invitation cannot be revoked (409): remove the member instead.",
    responses=NOT_FOUND,
)
def revoke_invitation(invitation_id: InvitationId, db: Db, principal: Admin) -> Response:
    invitations.revoke(db, principal, invitation_id)
    return Response(status_code=204)


@acceptance.post(
    "/invitations/accept",
    response_model=TokenOut,
    summary="Accept an invitation: join its workspace (no admin role needed)",
    description="The invited person joins the invitation's workspace with its role, in one of three ways:\n\n"
    "* **logged in**: send your admin bearer token (any workspace) and `secret`; the account must have the "
    "invited address;\n"
    "* **with your password**: `secret` and `password` of the account with the invited address;\n"
    "* **new account**: when no account has the invited address, `secret` and the password it is to have "
    "(at least 8 characters); the account is created with the invited address.\n\n"
    "The answer is an admin token for the joined workspace. An invitation is accepted once; expired, revoked and "
    "accepted invitations are refused with 409. Five wrong passwords revoke the invitation. No Idempotency-Key: a "
    "retry of an accepted invitation gets 409, and the account simply logs in.",
    responses={
        400: _error("A bearer token and a password both given", "password: leave it out when logged in", "password"),
        401: _error("Wrong password, or no way to tell who accepts", "incorrect password for the invited account"),
        403: _error(
            "Logged in as another account",
            "this invitation is for another e-mail address: log in as the invited account, or accept with its password",
            "secret",
        ),
        404: _error("Unknown secret", "invitation not found: check the secret you were given", "secret"),
        409: _error(
            "Accepted, revoked or expired; or the account is a member already",
            "this invitation was revoked: ask for a new one",
            "secret",
        ),
    },
)
async def accept_invitation(
    request: Request,
    body: InvitationAccept,
    database: DatabaseDep,
    settings: SettingsDep,
    limits: RateLimitsDep,
    bearer: Annotated[str | None, Depends(oauth2)],
) -> TokenOut:
    ttl = timedelta(hours=settings.admin_session_hours)
    if bearer:
        if body.password is not None:
            raise InvalidInput("password: leave it out when logged in (a bearer token is sent)", field="password")
        joined = await database.write(invitations.accept_signed_in, body.secret, bearer, ttl)
    elif body.password is None:
        raise Unauthorized(
            "log in and send your admin bearer token, or give the password of the invited account (or, when it "
            "has none yet, the password it is to have)"
        )
    else:
        address = request.client.host if request.client else "unknown"
        joined = await _accept_with_password(database, limits, address, body.secret, body.password, ttl)
    return TokenOut(
        access_token=joined.token,
        expires_in=int(ttl.total_seconds()),
        workspace_id=joined.workspace_id,
        role=joined.role,
    )


async def _accept_with_password(
    database: DatabaseDep, limits: RateLimits, address: str, secret: str, password: str, ttl: timedelta
) -> invitations.Joined:
    # One argon2 computation on either path (a hash for a new account, a verification for an existing one), run
    # in the thread pool with no transaction open.
    invited = await database.read(invitations.look_up, secret)
    if invited.password_hash is None:
        password_hash = await run_in_threadpool(hash_password, password)
        return await database.write(invitations.accept_as_new, invited, password_hash, ttl)
    # An existing account's password is checked under the login's limits (same counts), so whoever holds an
    # invitation secret cannot guess the account's password past them, invitation after invitation.
    attempt = await admit(limits, invited.email, address)
    try:
        verified = await run_in_threadpool(verify_password, invited.password_hash, password)
    except Exception:
        await attempt.give_back()
        raise
    if verified:
        await attempt.give_back()
        return await database.write(invitations.accept_as_account, invited, ttl)
    await database.write(invitations.record_wrong_password, invited.invitation_id)
    raise Unauthorized("incorrect password for the invited account")
