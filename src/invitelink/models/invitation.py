"""Member invitations: the only way an account joins a workspace it does not belong to yet."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from invitelink.models.base import Base, utcnow
from invitelink.models.tenancy import User

INVITATION_STATUSES = ("pending", "accepted", "revoked", "expired")


class MemberInvitation(Base):
    """An offer of a role in one workspace to one e-mail address, taken up with a secret (``ilinv_…``) of which only
    the SHA-256 digest is stored. Whether an account with that address exists plays no part until it is accepted."""

    __tablename__ = "member_invitations"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'editor', 'viewer')", name="role"),
        # The pending invitations of a workspace, and the one to replace when an address is invited again.
        Index(None, "workspace_id", "email"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # Lower-cased like User.email; the account it names is looked up only when the invitation is accepted.
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    # Null once the inviting account is deleted: the invitation stays valid, it was the workspace's.
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    # Wrong passwords given when accepting: the invitation is revoked at a limit, so it is no password oracle.
    failed_attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    invited_by: Mapped[User | None] = relationship(lazy="joined")

    @property
    def status(self) -> str:
        """``accepted`` and ``revoked`` are final; ``pending`` becomes ``expired`` with time alone."""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= utcnow() else "pending"
