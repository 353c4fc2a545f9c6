"""INSERT … ON CONFLICT DO NOTHING for SQLite and PostgreSQL alike.

Insert-or-fetch without a savepoint: a conflicting insert returns no row instead of raising, so the caller fetches
the row that won. Statements are built once per dialect and reused, because on the hot path building them costs
more than running them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite


@cache
def insert_ignore(table: Table, dialect: str, returning: str | None = None) -> Insert:
    """``INSERT INTO table … ON CONFLICT DO NOTHING [RETURNING column]`` for ``dialect``."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).on_conflict_do_nothing()
    if returning is not None:
        stmt = stmt.returning(table.c[returning])
    return stmt  # type: ignore[no-any-return]
