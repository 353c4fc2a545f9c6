"""INSERT … ON CONFLICT DO NOTHING RETURNING, for SQLite (3.35+) and PostgreSQL alike.

Insert-or-fetch without a savepoint: a conflicting insert returns no row instead of raising, so the caller fetches
the row that won. SQLAlchemy's dialect-specific ``on_conflict_do_nothing()`` statements carry no cache key and are
compiled again on every call; both engines accept the same SQL, so the statement is one ``text()`` (cacheable),
built once from the table definition, with bind parameters typed by the columns (UTC datetimes, JSON, …).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table, TextClause, TextualSelect, bindparam, text


def _insert_sql(table: Table, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    values = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {table.name} ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"  # noqa: S608 - names come from the table definition


@cache
def insert_ignore(table: Table, columns: Sequence[str], returning: str) -> TextualSelect:
    """``INSERT INTO table (columns) VALUES (:columns) ON CONFLICT DO NOTHING RETURNING returning``."""
    sql = f"{_insert_sql(table, columns)} RETURNING {returning}"
    return text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns)).columns(table.c[returning])


@cache
def insert_ignore_many(table: Table, columns: Sequence[str]) -> TextClause:
    """The same without RETURNING, for executemany over a list of rows (bulk insert-or-skip)."""
    return text(_insert_sql(table, columns)).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE, DELETE or INSERT … ON CONFLICT DO NOTHING changed: a conditional statement's way of
    saying whether it did anything."""
    return cast("CursorResult[Any]", result).rowcount
