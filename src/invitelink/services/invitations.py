"""Member invitations: how an account comes into a workspace it does not belong to.

An owner or admin invites an e-mail address with a role. Inviting never looks at whether an account with that
address exists, so the answer is the same either way and says nothing about other workspaces' people; the address's
owner decides by accepting with the secret (``ilinv_…``, shown once, stored as its SHA-256 digest like every other
credential in ``services/credentials.py``):

- logged in as the invited account (its admin bearer token),
- or with the password of the invited account,
- or, when no account has the address yet, with the password the new account is to have.

Accepting with a password checks (or hashes) it outside the writer: ``look_up`` reads, the route runs argon2, and
one of ``accept_as_account``/``accept_as_new``/``record_wrong_password`` writes, re-checking the invitation under a
row lock. Wrong passwords are counted on the invitation and revoke it at ``MAX_WRONG_PASSWORDS``, so a secret cannot
be used to guess an account's password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, exists, select, update
from sqlalchemy.orm import Session

from invitelink.models import MemberInvitation, Membership, User, utcnow
from invitelink.services import accounts, credentials
from invitelink.services.accounts import Principal
from invitelink.services.errors import Conflict, Forbidden, NotFound, get_owned, save_or_conflict
from invitelink.services.identity import normalize_email
from invitelink.services.pagination import Page, page_of

INVITATION_PREFIX = "ilinv_"
DEFAULT_DAYS = 7
MAX_DAYS = 30
MAX_WRONG_PASSWORDS = 5


@dataclass(frozen=True)
class Issued:
    """A new invitation and its secret, which goes to the inviter once and is never stored."""

    invitation: MemberInvitation
    secret: str


@dataclass(frozen=True)
class Invited:
    """What accepting with a password needs to know before the password is checked (outside the writer)."""

    invitation_id: int
    email: str  # the invited address: whose failed password checks count (api/admin/login_throttle.py)
    # The invited address's account's hash; None: no account has the address, accepting creates one.
    password_hash: str | None


@dataclass(frozen=True)
class Joined:
    """An accepted invitation: the account is a member now, and ``token`` an admin session in that workspace."""

    token: str
    workspace_id: int
    role: str


def invite(session: Session, principal: Principal, email: str, role: str, days: int = DEFAULT_DAYS) -> Issued:
    """Invite ``email`` into the principal's workspace with ``role``. Inviting an address again replaces its pending
    invitation (the earlier secret stops working)."""
    accounts.check_grant(principal, role)
    address = normalize_email(email)
    # The members of one's own workspace are on its member list already: saying so reveals nothing.
    already = session.scalar(
        select(
            exists().where(
                Membership.workspace_id == principal.workspace_id,
                Membership.user_id == User.id,
                User.email == address,
            )
        )
    )
    if already:
        raise Conflict(f"{address} is already a member of this workspace", field="email")
    now = utcnow()
    for earlier in session.scalars(_pending(principal.workspace_id, address, now)):
        accounts.check_grant(principal, earlier.role)
        earlier.revoked_at = now
    token = credentials.issue(INVITATION_PREFIX, 32, shown=0)
    invitation = MemberInvitation(
        workspace_id=principal.workspace_id,
        email=address,
        role=role,
        token_digest=token.digest,
        invited_by_id=principal.user_id,
        failed_attempts=0,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(invitation)
    session.flush()
    return Issued(invitation, token.secret)


def _pending(workspace_id: int, address: str, now: datetime) -> Select[tuple[MemberInvitation]]:
    """Invitations of ``address`` to the workspace that can still be accepted."""
    return select(MemberInvitation).where(
        MemberInvitation.workspace_id == workspace_id,
        MemberInvitation.email == address,
        MemberInvitation.accepted_at.is_(None),
        MemberInvitation.revoked_at.is_(None),
        MemberInvitation.expires_at > now,
    )


def list_pending(session: Session, principal: Principal, cursor: str | None, limit: int) -> Page[MemberInvitation]:
    """The workspace's invitations that can still be accepted, oldest first."""
    return page_of(
        session,
        MemberInvitation,
        cursor,
        limit,
        MemberInvitation.workspace_id == principal.workspace_id,
        MemberInvitation.accepted_at.is_(None),
        MemberInvitation.revoked_at.is_(None),
        MemberInvitation.expires_at > utcnow(),
    )


def get_invitation(session: Session, principal: Principal, invitation_id: int) -> MemberInvitation:
    """One invitation of the principal's workspace, whatever its status (another workspace's: NotFound)."""
    return get_owned(
        session, MemberInvitation, invitation_id, "invitation not found", workspace_id=principal.workspace_id
    )


def revoke(session: Session, principal: Principal, invitation_id: int) -> None:
    """The secret stops working; revoking twice keeps the first time. An accepted invitation is history: the member
    is removed as a member."""
    invitation = get_invitation(session, principal, invitation_id)
    accounts.check_grant(principal, invitation.role)
    if invitation.accepted_at is not None:
        raise Conflict("this invitation was accepted: remove the member instead (DELETE /admin/v1/members/{id})")
    credentials.revoke(session, invitation)


# Accepting --------------------------------------------------------------------------------------------------


def _check_usable(invitation: MemberInvitation) -> None:
    """Refuse an invitation that cannot be accepted (409), saying why: the holder of its secret may know."""
    if invitation.accepted_at is not None:
        raise Conflict("this invitation has already been accepted", field="secret")
    if invitation.failed_attempts >= MAX_WRONG_PASSWORDS:
        raise Conflict("this invitation was revoked after too many wrong passwords: ask for a new one", field="secret")
    if invitation.revoked_at is not None:
        raise Conflict("this invitation was revoked: ask for a new one", field="secret")
    if invitation.expires_at <= utcnow():
        raise Conflict(
            f"this invitation expired at {invitation.expires_at:%Y-%m-%d %H:%M} UTC: ask for a new one", field="secret"
        )


def _usable(session: Session, where: ColumnElement[bool], *, lock: bool) -> MemberInvitation:
    stmt = select(MemberInvitation).where(where)
    if lock:
        # PostgreSQL: two accepts of one invitation take turns, and the second sees it accepted (SQLite: one writer).
        # Of this table only: the inviter is joined in, and an outer join's nullable side cannot be locked.
        stmt = stmt.with_for_update(of=MemberInvitation)
    invitation = session.scalar(stmt)
    if invitation is None:
        raise NotFound("invitation not found: check the secret you were given", field="secret")
    _check_usable(invitation)
    return invitation


def _by_secret(secret: str) -> ColumnElement[bool]:
    return MemberInvitation.token_digest == credentials.lookup_digest(secret)


def look_up(session: Session, secret: str) -> Invited:
    """The usable invitation behind ``secret``, and the hash of its address's account if there is one (read)."""
    invitation = _usable(session, _by_secret(secret), lock=False)
    password_hash = session.scalar(select(User.password_hash).where(User.email == invitation.email))
    return Invited(invitation.id, invitation.email, password_hash)


def accept_signed_in(session: Session, secret: str, bearer: str, ttl: timedelta) -> Joined:
    """Accept as the account behind an admin bearer token, which must have the invited address."""
    principal = accounts.resolve_token(session, bearer)
    invitation = _usable(session, _by_secret(secret), lock=True)
    if invitation.email != principal.email:
        raise Forbidden(
            "this invitation is for another e-mail address: log in as the invited account, or accept with its password",
            field="secret",
        )
    return _join(session, invitation, accounts.get_user(session, principal), ttl)


def accept_as_account(session: Session, invited: Invited, ttl: timedelta) -> Joined:
    """Accept as the invited address's account, whose password (hash ``invited.password_hash``) was checked."""
    invitation = _usable(session, MemberInvitation.id == invited.invitation_id, lock=True)
    user = session.scalar(select(User).where(User.email == invitation.email))
    if user is None or user.password_hash != invited.password_hash:
        # Deleted, or its password changed, between the check and now: the check proved nothing about this one.
        raise Conflict("the invited account changed meanwhile: accept again", field="password")
    return _join(session, invitation, user, ttl)


def accept_as_new(session: Session, invited: Invited, password_hash: str, ttl: timedelta) -> Joined:
    """Create the invited address's account with the chosen password (hashed) and accept as it."""
    invitation = _usable(session, MemberInvitation.id == invited.invitation_id, lock=True)
    user = User(email=invitation.email, password_hash=password_hash)
    save_or_conflict(
        session, user, "an account with this e-mail address exists now: accept with its password", field="password"
    )
    return _join(session, invitation, user, ttl)


def record_wrong_password(session: Session, invitation_id: int) -> None:
    """Count a wrong password; at the limit the invitation is revoked (its secret is then no way to guess more)."""
    session.execute(
        update(MemberInvitation)
        .where(MemberInvitation.id == invitation_id)
        .values(failed_attempts=MemberInvitation.failed_attempts + 1)
    )
    session.execute(
        update(MemberInvitation)
        .where(
            MemberInvitation.id == invitation_id,
            MemberInvitation.failed_attempts >= MAX_WRONG_PASSWORDS,
            MemberInvitation.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def _join(session: Session, invitation: MemberInvitation, user: User, ttl: timedelta) -> Joined:
    member = Membership(workspace_id=invitation.workspace_id, user_id=user.id, role=invitation.role)
    save_or_conflict(session, member, "this account is already a member of that workspace", field="secret")
    now = utcnow()
    invitation.accepted_at = now
    # Other invitations of the address to this workspace have nothing left to offer.
    session.execute(
        update(MemberInvitation)
        .where(
            MemberInvitation.workspace_id == invitation.workspace_id,
            MemberInvitation.email == invitation.email,
            MemberInvitation.id != invitation.id,
            MemberInvitation.accepted_at.is_(None),
            MemberInvitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token, _row = accounts.open_session(session, user, invitation.workspace_id, ttl)
    return Joined(token, invitation.workspace_id, invitation.role)
