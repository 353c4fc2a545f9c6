"""Request-scoped dependencies shared by the adapters: settings and a database session per request."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from invitelink.config import Settings

READ_METHODS = frozenset({"GET", "HEAD"})


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back when it raises.

    GET and HEAD requests get a read transaction (on SQLite it does not take the write lock).
    """
    factory = request.app.state.read_sessions if request.method in READ_METHODS else request.app.state.sessions
    session: Session = factory()
    try:
        yield session
        if getattr(request.state, "rollback", False):
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
