"""Survey results for admins: each participation with its response and the invitation's metadata."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from invitelink.models import Participation, Supplier, Token
from invitelink.services.pagination import Page, paginate


def results_stmt(survey_id: int) -> Select[tuple[Participation, Token, Supplier]]:
    """Participations of a survey with their token and supplier (both may be NULL: outer joins)."""
    return (
        select(Participation, Token, Supplier)
        .outerjoin(Token, Token.id == Participation.token_id)
        .outerjoin(Supplier, Supplier.id == Participation.supplier_id)
        .where(Participation.survey_id == survey_id)
    )


def result_item(participation: Participation, token: Token | None, supplier: Supplier | None) -> dict[str, Any]:
    """The pinned result shape: metadata shows only once the participant completed (hidden until then)."""
    completed = participation.status == "completed"
    return {
        "id": participation.id,
        "token": token.code if token else None,
        "status": participation.status,
        "clicked_at": participation.first_click_at,
        "click_count": participation.click_count,
        "started_at": participation.started_at,
        "completed_at": participation.ended_at if completed else None,
        "ended_at": participation.ended_at,
        "response": participation.response,
        "metadata": participation.meta if completed else None,
        "environment": participation.environment,
        "supplier_id": supplier.public_id if supplier else None,
        "pid": participation.pid,
    }


def list_results(
    session: Session, survey_id: int, cursor: str | None, limit: int
) -> Page[tuple[Participation, Token | None, Supplier | None]]:
    """A page of the survey's participations with their token and supplier, oldest first."""
    return paginate(session, results_stmt(survey_id), Participation.id, cursor, limit)
