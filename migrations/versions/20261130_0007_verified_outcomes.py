"""Verified outcomes: which end of a participation a supplier is told about, and by whom it was confirmed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, type, default, check constraint name, check). Each column is added in place on every engine:
# on SQLite, batch mode would rebuild the table, and dropping the old `surveys` with foreign keys on deletes every
# row that references it (participations, tokens, contacts, ...).
COLUMNS = (
    (
        "surveys",
        "outcome_verification",
        "VARCHAR(16)",
        "'browser'",
        "ck_surveys_outcome_verification",
        "outcome_verification IN ('browser', 'callback')",
    ),
    (
        "participations",
        "outcome_source",
        "VARCHAR(16)",
        None,
        "ck_participations_outcome_source",
        "outcome_source IN ('browser', 'callback', 'admission')",
    ),
    (
        "participations",
        "reported_status",
        "VARCHAR(16)",
        None,
        "ck_participations_reported_status",
        "reported_status IN ('completed')",
    ),
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, type_, default, check_name, check in COLUMNS:
        if sqlite:
            # SQLite adds a column with its own CHECK in place (ALTER TABLE cannot add a table constraint).
            not_null = f" DEFAULT {default} NOT NULL" if default else ""
            op.execute(
                f"ALTER TABLE {table} ADD COLUMN {column} {type_}{not_null} CONSTRAINT {check_name} CHECK ({check})"
            )
        else:
            op.add_column(
                table,
                sa.Column(
                    column,
                    sa.String(length=16),
                    nullable=default is None,
                    server_default=sa.text(default) if default else None,
                ),
            )
            op.create_check_constraint(check_name, table, check)
    op.add_column("participations", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))
    # A completion the callback confirmed is known to come from it. Other final outcomes recorded before this
    # revision are marked as the browser's, so a callback arriving after the upgrade can still confirm them
    # (verified), as it can newer ones. Every survey had the default (browser) verification then, in which a
    # callback only confirms and never reverses.
    op.execute("UPDATE participations SET outcome_source = 'callback' WHERE verified_at IS NOT NULL")
    op.execute(
        "UPDATE participations SET outcome_source = 'browser' WHERE verified_at IS NULL "
        "AND status IN ('completed', 'terminated', 'quotafull', 'security') AND outcome_source IS NULL"
    )


def downgrade() -> None:
    # In place on SQLite too (DROP COLUMN, SQLite 3.35+), for the reason given above.
    op.execute("ALTER TABLE participations DROP COLUMN reported_at")
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, _type, _default, check_name, _check in reversed(COLUMNS):
        if not sqlite:
            op.drop_constraint(check_name, table, type_="check")
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
