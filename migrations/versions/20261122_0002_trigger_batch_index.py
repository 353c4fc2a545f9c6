"""Index for the trigger API's flood protection: a token's recent batches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mailings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mailings_trigger_token_id_created_at"), ["trigger_token_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mailings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailings_trigger_token_id_created_at"))
