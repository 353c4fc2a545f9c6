"""Surveys: CRUD, status transitions, callback secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from invitelink.api.admin.deps import Admin, CurrentPrincipal, Db, Editor, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import (
    CallbackSecretOut,
    Cpi,
    Page,
    SurveyCreated,
    SurveyIn,
    SurveyOut,
    SurveyPatch,
    SurveyStatus,
)
from invitelink.models import Survey
from invitelink.services import surveys
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/surveys", tags=["surveys"], route_class=AdminRoute)


def survey_out(survey: Survey) -> dict[str, Any]:
    return {
        "id": survey.id,
        "project": survey.project,
        "public_id": survey.public_id,
        "title": survey.title,
        "status": survey.status,
        "questionnaire_url": survey.questionnaire_url,
        "industry_id": survey.industry_id,
        "segment": survey.segment,
        "cpi": Cpi(value=survey.cpi_value, currency=survey.cpi_currency) if survey.cpi_value is not None else None,
        "ir": survey.incidence_rate,
        "loi": survey.length_of_interview,
        "pii": survey.pii,
        "description": survey.description,
        "countries": survey.countries,
        "outcome_verification": survey.outcome_verification,
        "created_at": survey.created_at,
        "updated_at": survey.updated_at,
    }


def _fields(body: SurveyIn | SurveyPatch) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    if "questionnaire_url" in fields and fields["questionnaire_url"] is not None:
        fields["questionnaire_url"] = str(body.questionnaire_url)
    return fields


@router.get("", response_model=Page[SurveyOut], summary="List surveys")
def list_surveys(
    db: Db,
    principal: CurrentPrincipal,
    status: SurveyStatus | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[SurveyOut]:
    page = surveys.list_surveys(db, principal.workspace_id, status, cursor, limit)
    return Page(items=[SurveyOut.model_validate(survey_out(s)) for s in page.items], next_cursor=page.next_cursor)


@router.post(
    "",
    response_model=SurveyCreated,
    status_code=201,
    summary="Create a survey",
    description="New surveys are `draft` unless `status: active` is given. The response carries the "
    "questionnaire callback secret, shown only this once.",
)
def create_survey(body: SurveyIn, db: Db, principal: Editor) -> SurveyCreated:
    survey, secret = surveys.create_survey(db, principal.workspace_id, _fields(body))
    return SurveyCreated.model_validate({**survey_out(survey), "callback_secret": secret})


@router.get("/{survey_id}", response_model=SurveyOut, summary="Get a survey")
def get_survey(survey: ReadableSurvey) -> SurveyOut:
    return SurveyOut.model_validate(survey_out(survey))


@router.patch(
    "/{survey_id}",
    response_model=SurveyOut,
    summary="Update a survey or change its status",
    description="Status moves draft → active → closed; a closed survey can be reopened (→ active). "
    "Other transitions answer 409.",
)
def update_survey(body: SurveyPatch, survey: WritableSurvey, db: Db) -> SurveyOut:
    return SurveyOut.model_validate(survey_out(surveys.update_survey(db, survey, _fields(body))))


@router.delete("/{survey_id}", status_code=204, summary="Delete a survey and everything in it (admins)")
def delete_survey(survey_id: int, db: Db, principal: Admin) -> Response:
    surveys.delete_survey(db, principal.workspace_id, survey_id)
    return Response(status_code=204)


@router.post(
    "/{survey_id}/callback-secret",
    response_model=CallbackSecretOut,
    summary="Rotate the questionnaire callback secret (the old one stops working)",
)
def rotate_callback_secret(survey: WritableSurvey, db: Db) -> CallbackSecretOut:
    return CallbackSecretOut(callback_secret=surveys.rotate_callback_secret(db, survey))
