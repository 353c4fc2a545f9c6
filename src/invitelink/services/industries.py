"""The workspace's industry list (R4I ``get_industries``, survey classification)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from invitelink.models import Industry
from invitelink.services.errors import get_owned, remove, save_or_conflict
from invitelink.services.pagination import Page, page_of

DEFAULT_INDUSTRIES = (
    "Healthcare",
    "Finance",
    "Technology",
    "Retail",
    "Education",
    "Travel",
    "Automotive",
    "Real Estate",
    "Energy",
    "Media",
)


def get_industry(session: Session, workspace_id: int, industry_id: int) -> Industry:
    return get_owned(session, Industry, industry_id, "industry not found", workspace_id=workspace_id)


def save_industry(session: Session, industry: Industry) -> Industry:
    save_or_conflict(session, industry, f"industry '{industry.name}' exists in this workspace", field="name")
    return industry


def list_industries(session: Session, workspace_id: int, cursor: str | None, limit: int) -> Page[Industry]:
    return page_of(session, Industry, cursor, limit, Industry.workspace_id == workspace_id)


def delete_industry(session: Session, workspace_id: int, industry_id: int) -> None:
    remove(session, get_industry(session, workspace_id, industry_id))
