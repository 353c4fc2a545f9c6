"""Survey results: participations with responses, invitation metadata and the contact's identity, as pages of JSON
or one CSV stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Page, ResultItem
from invitelink.api.deps import DatabaseDep
from invitelink.services import results
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(tags=["results"], route_class=AdminRoute)

CSV_EXAMPLE = (
    "id,token,status,clicked_at,click_count,started_at,completed_at,ended_at,contact_id,email,mobile,uid,"
    "environment,supplier_id,pid,metadata,response\n"
    "1,QS33T6XMVS4KLA9S,completed,2026-05-18T14:02:11+00:00,1,2026-05-18T14:02:15+00:00,"
    "2026-05-18T14:09:40+00:00,2026-05-18T14:09:40+00:00,7,pat@example.com,,,production,,,"
    '"{""source_id"":""evt_12345""}","{""q1"":4}"\n'
)


@router.get(
    "/surveys/{survey_id}/results",
    response_model=Page[ResultItem],
    summary="Participations with their responses, invitation metadata and contact (JSON pages or CSV)",
    description="One item per participation, oldest first. `metadata` is the invitation's hidden metadata, "
    "shown once the participant completed; `response` is what the questionnaire callback sent; `contact` is who "
    "participated (null for anonymous contacts, serial codes and supplier traffic).\n\n"
    "With `Accept: text/csv`, every result of the survey comes as one CSV stream (header row first; `metadata` "
    "and `response` as JSON text), whatever its size: `cursor` and `limit` do not apply.",
    responses={200: {"content": {"text/csv": {"example": CSV_EXAMPLE}}}},
)
def survey_results(
    survey: ReadableSurvey,
    db: Db,
    database: DatabaseDep,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    accept: Annotated[str, Header()] = "application/json",
) -> Page[ResultItem] | StreamingResponse:
    if "text/csv" in accept.lower():
        return StreamingResponse(
            results.results_csv(database.read_sessions, survey.id),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="results-{survey.project}.csv"'},
        )
    page = results.list_results(db, survey.id, cursor, limit)
    return Page(
        items=[ResultItem.model_validate(results.result_item(*row)) for row in page.items],
        next_cursor=page.next_cursor,
    )
