"""A workspace's suppression list: addresses that are never mailed again (unsubscribed, bounced for good, or added
by an admin)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.models import Suppression
from invitelink.services import unsubscribe
from invitelink.services.errors import get_owned, remove
from invitelink.services.identity import normalize_email
from invitelink.services.pagination import Page, page_of


def list_suppressions(session: Session, workspace_id: int, cursor: str | None, limit: int) -> Page[Suppression]:
    return page_of(session, Suppression, cursor, limit, Suppression.workspace_id == workspace_id)


def add(session: Session, workspace_id: int, address: str) -> tuple[Suppression, bool]:
    """Suppress ``address`` (idempotent); True when it was not suppressed before."""
    normalized = normalize_email(address)
    added = unsubscribe.suppress(session, workspace_id, normalized)
    row = session.scalars(
        select(Suppression).where(Suppression.workspace_id == workspace_id, Suppression.address == normalized)
    ).one()
    return row, added


def remove_suppression(session: Session, workspace_id: int, suppression_id: int) -> None:
    """The address may be mailed again (an admin's decision, e.g. after a mistaken bounce)."""
    remove(session, get_owned(session, Suppression, suppression_id, "suppression not found", workspace_id=workspace_id))
