"""The admin login in steps, so the password check runs outside any transaction: read the account's password
hash (read engine), verify it (argon2, in a thread, bounded per process), then open the session (write seam).

In one transaction, in an admin request's unit of work, the check would hold the single writer on SQLite (and a
pooled connection on PostgreSQL) for the ~100 ms of argon2 and for any wait for an argon2 slot. This is the only
login path (api/admin/auth.py), so the throttle there covers every login."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.models import User
from invitelink.services import accounts
from invitelink.services.errors import Unauthorized

INCORRECT = "incorrect e-mail or password"


@dataclass(frozen=True)
class Account:
    user_id: int
    password_hash: str


@dataclass(frozen=True)
class Opened:
    token: str
    workspace_id: int
    role: str


def account_of(session: Session, email: str) -> Account | None:
    """The account an e-mail (as typed) names, with its password hash; None for an unknown address."""
    row = session.execute(
        select(User.id, User.password_hash).where(User.email == accounts.normalize_email(email))
    ).first()
    return Account(row.id, row.password_hash) if row is not None else None


def open_session(session: Session, user_id: int, workspace_id: int | None, ttl: timedelta) -> Opened:
    """A session for an account whose password was verified: ``accounts.open_session`` and the role it has."""
    user = session.get(User, user_id)
    if user is None:  # deleted between the check and now
        raise Unauthorized(INCORRECT)
    token, row = accounts.open_session(session, user, workspace_id, ttl)
    role = next(r for w, r in accounts.list_workspaces(session, row.user_id) if w.id == row.workspace_id)
    return Opened(token, row.workspace_id, role)
