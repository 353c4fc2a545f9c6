"""Domain exceptions; each API family maps them to its own error envelope."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


class DomainError(Exception):
    """Base of every error a service raises on purpose; ``message`` is safe to show to the caller."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class InvalidInput(DomainError):
    pass


class Forbidden(DomainError):
    pass


class Unauthorized(DomainError):
    pass


class Unprocessable(DomainError):
    """Well-formed but not acceptable as a whole (422): e.g. an Idempotency-Key reused for another request."""


class RateLimited(DomainError):
    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def save_or_conflict(session: Session, obj: Any, message: str, *, field: str | None = None) -> None:
    """Flush ``obj`` in a savepoint; a unique-constraint clash becomes Conflict and leaves the session usable."""
    try:
        # add() inside the savepoint: begin_nested() flushes pending objects before it starts.
        with session.begin_nested():
            session.add(obj)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(message, field=field) from exc


Row = TypeVar("Row")


def get_owned(session: Session, model: type[Row], ident: int, message: str, **owner: int) -> Row:
    """``session.get(model, ident)`` when its ``owner`` columns (``survey_id=…``, ``workspace_id=…``) match;
    otherwise NotFound(message): another tenant's row is indistinguishable from a missing one."""
    row = session.get(model, ident)
    if row is None or any(getattr(row, column) != value for column, value in owner.items()):
        raise NotFound(message)
    return row


def remove(session: Session, row: object) -> None:
    """Delete ``row`` now (the database cascades to what hangs off it), so a failure is this request's error."""
    session.delete(row)
    session.flush()
