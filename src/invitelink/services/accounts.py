"""Admin accounts: workspaces, users, memberships, login sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from invitelink.models import AdminSession, Membership, User, Workspace, utcnow
from invitelink.security import hash_password, verify_password
from invitelink.services import credentials
from invitelink.services.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthorized,
    get_owned,
)
from invitelink.services.identity import normalize_email as valid_email
from invitelink.services.pagination import Page, page_of

ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2, "owner": 3}
ADMIN_TOKEN_PREFIX = "ilk_"  # noqa: S105 (a prefix)
MIN_PASSWORD_LENGTH = 8


@dataclass(frozen=True)
class Principal:
    """Who is calling the admin API: a user acting in one workspace with one role."""

    user_id: int
    email: str
    workspace_id: int
    role: str
    session_id: int

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_workspace(session: Session, name: str, owner: User) -> Workspace:
    """A new workspace with ``owner`` as its owner."""
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    session.add(Membership(workspace_id=workspace.id, user_id=owner.id, role="owner"))
    session.flush()
    return workspace


def create_admin(
    session: Session, email: str, password: str, workspace_name: str, *, add_workspace: bool = True
) -> tuple[Workspace, User]:
    """An owner account in a new workspace (CLI ``create-admin``). An existing account gets another workspace only
    when ``add_workspace`` and its own password are given; it keeps that password. This is the operator's action on
    the server; through the API an account joins a workspace only by accepting an invitation
    (``services/invitations.py``)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters", field="password")
    address = valid_email(email)
    user = session.scalar(select(User).where(User.email == address))
    if user is not None and not add_workspace:
        raise Conflict(f"an account {user.email} exists: pass --add-workspace to give it another workspace")
    if user is not None and not verify_password(user.password_hash, password):
        raise Conflict(f"{user.email} exists with another password")
    if user is None:
        user = User(email=address, password_hash=hash_password(password))
        session.add(user)
        session.flush()
    return create_workspace(session, workspace_name, user), user


def open_session(session: Session, user: User, workspace_id: int | None, ttl: timedelta) -> tuple[str, AdminSession]:
    stmt = select(Membership).where(Membership.user_id == user.id)
    if workspace_id is not None:
        stmt = stmt.where(Membership.workspace_id == workspace_id)
    membership = session.scalar(stmt.order_by(Membership.id).limit(1))
    if membership is None:
        raise Unauthorized("this account is not a member of that workspace")
    token = credentials.issue(ADMIN_TOKEN_PREFIX, 32, shown=0)
    now = utcnow()
    # Expired sessions are swept on each login, which keeps the table small without a cron job.
    session.execute(delete(AdminSession).where(AdminSession.expires_at < now))
    row = AdminSession(
        token_digest=token.digest,
        user_id=user.id,
        workspace_id=membership.workspace_id,
        expires_at=now + ttl,
    )
    session.add(row)
    session.flush()
    return token.secret, row


def resolve_token(session: Session, token: str) -> Principal:
    """The principal behind an admin bearer token; expired, logged-out and unknown tokens are refused alike."""
    row = session.execute(
        select(AdminSession, Membership, User)
        .join(
            Membership,
            (Membership.user_id == AdminSession.user_id) & (Membership.workspace_id == AdminSession.workspace_id),
        )
        .join(User, User.id == AdminSession.user_id)
        .where(AdminSession.token_digest == credentials.lookup_digest(token))
    ).first()
    if row is None or row[0].expires_at <= utcnow():
        raise Unauthorized("invalid or expired token: log in again at /admin/v1/auth/token")
    admin_session, membership, user = row
    return Principal(user.id, user.email, membership.workspace_id, membership.role, admin_session.id)


def logout(session: Session, principal: Principal) -> None:
    session.execute(delete(AdminSession).where(AdminSession.id == principal.session_id))


def list_workspaces(session: Session, user_id: int) -> list[tuple[Workspace, str]]:
    rows = session.execute(
        select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id)
        .order_by(Workspace.id)
    )
    return [(w, r) for w, r in rows]


def get_workspace(session: Session, principal: Principal) -> Workspace:
    workspace = session.get(Workspace, principal.workspace_id)
    if workspace is None:
        raise NotFound("workspace not found")
    return workspace


# Members --------------------------------------------------------------------------------------------------


def _owners(session: Session, workspace_id: int) -> int:
    return (
        session.scalar(select(func.count()).where(Membership.workspace_id == workspace_id, Membership.role == "owner"))
        or 0
    )


def check_grant(principal: Principal, role: str) -> None:
    """Owners and admins manage members and invitations; only an owner makes (or unmakes) an owner."""
    if not principal.can("admin"):
        raise Forbidden("only owners and admins manage members")
    if role == "owner" and principal.role != "owner":
        raise Forbidden("only an owner can make or change an owner")


def get_member(session: Session, principal: Principal, member_id: int) -> Membership:
    return get_owned(session, Membership, member_id, "member not found", workspace_id=principal.workspace_id)


def change_role(session: Session, principal: Principal, member_id: int, role: str) -> Membership:
    member = get_member(session, principal, member_id)
    check_grant(principal, role)
    if member.role == "owner":
        check_grant(principal, "owner")
        if role != "owner" and _owners(session, principal.workspace_id) <= 1:
            raise Conflict("a workspace keeps at least one owner")
    member.role = role
    session.flush()
    return member


def remove_member(session: Session, principal: Principal, member_id: int) -> None:
    member = get_member(session, principal, member_id)
    check_grant(principal, member.role)
    if member.role == "owner" and _owners(session, principal.workspace_id) <= 1:
        raise Conflict("a workspace keeps at least one owner")
    session.execute(
        delete(AdminSession).where(
            AdminSession.user_id == member.user_id, AdminSession.workspace_id == member.workspace_id
        )
    )
    session.delete(member)
    session.flush()


def get_user(session: Session, principal: Principal) -> User:
    user = session.get(User, principal.user_id)
    if user is None:  # deleted since the token was checked in this very transaction: cannot happen, but say so
        raise Unauthorized("this account no longer exists")
    return user


def rename_workspace(session: Session, principal: Principal, name: str) -> Workspace:
    workspace = get_workspace(session, principal)
    workspace.name = name
    session.flush()
    return workspace


def list_members(session: Session, principal: Principal, cursor: str | None, limit: int) -> Page[Membership]:
    return page_of(session, Membership, cursor, limit, Membership.workspace_id == principal.workspace_id)


def switch_workspace(
    session: Session, principal: Principal, workspace_id: int, ttl: timedelta
) -> tuple[str, AdminSession, str]:
    """A new token of this account for another of its workspaces, with the role there (NotFound if none)."""
    user = get_user(session, principal)
    roles = {w.id: r for w, r in list_workspaces(session, user.id)}
    if workspace_id not in roles:
        raise NotFound("workspace not found")
    token, row = open_session(session, user, workspace_id, ttl)
    return token, row, roles[workspace_id]
