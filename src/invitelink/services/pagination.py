"""Keyset (cursor) pagination on the primary key: the cost of a page does not grow with its depth."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from invitelink.services.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid cursor: pass next_cursor from the previous page", field="cursor") from exc


def paginate(
    session: Session,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[Any],
    cursor: str | None,
    limit: int,
) -> Page[Any]:
    """Rows of ``stmt`` after ``cursor`` in id order, ``limit`` at most, and the cursor of the next page.

    A one-entity select yields the entities; a multi-entity select yields tuples whose first item has the id.
    """
    if cursor:
        stmt = stmt.where(id_column > decode_cursor(cursor))
    result = session.execute(stmt.order_by(id_column).limit(limit + 1)).all()
    more = len(result) > limit
    result = result[:limit]
    single = len(stmt.column_descriptions) == 1
    items: list[Any] = [row[0] if single else tuple(row) for row in result]
    next_cursor = None
    if more and result:
        next_cursor = encode_cursor(result[-1][0].id)
    return Page(items, next_cursor)


def page_of(session: Session, model: Any, cursor: str | None, limit: int, *where: ColumnElement[bool]) -> Page[Any]:
    """A page of ``model`` rows matching ``where``, in id order."""
    return paginate(session, select(model).where(*where), model.id, cursor, limit)
