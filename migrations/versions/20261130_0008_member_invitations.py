"""Member invitations: an account joins another workspace only by accepting an invitation.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('owner', 'admin', 'editor', 'viewer')", name=op.f("ck_member_invitations_role")),
        sa.ForeignKeyConstraint(
            ["invited_by_id"],
            ["users.id"],
            name=op.f("fk_member_invitations_invited_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_member_invitations_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_invitations")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_member_invitations_token_digest")),
    )
    with op.batch_alter_table("member_invitations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_invitations_invited_by_id"), ["invited_by_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_member_invitations_workspace_id_email"), ["workspace_id", "email"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("member_invitations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_invitations_workspace_id_email"))
        batch_op.drop_index(batch_op.f("ix_member_invitations_invited_by_id"))

    op.drop_table("member_invitations")
