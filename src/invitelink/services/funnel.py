"""A survey's funnel: how many deliveries are in each status, and how far participants got, counted from the
stored rows in one statement (never from counters that could drift)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invitelink.models import Delivery, Mailing, Participation

DELIVERY_STATUSES = ("queued", "sent", "failed", "bounced", "skipped")
ENDED = ("completed", "terminated", "quotafull", "security")


def funnel(session: Session, survey_id: int) -> dict[str, int]:
    """Deliveries by their current status; participations cumulatively (``clicked`` is everyone who opened the
    link, whatever came after; ``started`` everyone who started; the ends by their final status)."""
    mailings = select(Mailing.id).where(Mailing.survey_id == survey_id)

    def deliveries(status: str) -> Any:
        return (
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.mailing_id.in_(mailings), Delivery.status == status)
            .scalar_subquery()
        )

    def participations(*where: Any) -> Any:
        return (
            select(func.count())
            .select_from(Participation)
            .where(Participation.survey_id == survey_id, *where)
            .scalar_subquery()
        )

    columns = {status: deliveries(status) for status in DELIVERY_STATUSES}
    # Sandbox (supplier test) traffic is not the study's.
    production = Participation.environment == "production"
    columns["clicked"] = participations(production, Participation.first_click_at.is_not(None))
    columns["started"] = participations(production, Participation.started_at.is_not(None))
    for status in ENDED:
        columns[status] = participations(production, Participation.status == status)
    row = session.execute(select(*(column.label(name) for name, column in columns.items()))).one()
    return {name: int(getattr(row, name) or 0) for name in columns}
