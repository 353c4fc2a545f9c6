"""Survey results: participations with responses and invitation metadata (pinned by CONTRACT.md section 7)."""

from __future__ import annotations

from fastapi import APIRouter

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Page, ResultItem
from invitelink.services import results
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(tags=["results"], route_class=AdminRoute)


@router.get(
    "/surveys/{survey_id}/results",
    response_model=Page[ResultItem],
    summary="Participations with their responses and invitation metadata",
    description="One item per participation, oldest first. `metadata` is the invitation's hidden metadata, "
    "shown once the participant completed; `response` is what the questionnaire callback sent.",
)
def survey_results(
    survey: ReadableSurvey, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[ResultItem]:
    page = results.list_results(db, survey.id, cursor, limit)
    return Page(
        items=[ResultItem.model_validate(results.result_item(*row)) for row in page.items],
        next_cursor=page.next_cursor,
    )
