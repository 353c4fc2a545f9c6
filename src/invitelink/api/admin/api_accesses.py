"""SoSci API accesses of a survey: the API URL is shown once, at creation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import Field, StringConstraints

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Input, Output, Page
from invitelink.api.deps import SettingsDep
from invitelink.services import api_accesses
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/surveys/{survey_id}/api-accesses", tags=["sosci API accesses"], route_class=AdminRoute)


class ApiAccessIn(Input):
    function: Literal["create_link", "send_mail", "serial_status", "address_status"] = Field(
        description="create_link: find or create the contact, return a personal link, send nothing. "
        "send_mail: the same, and queue the mailing to the contact. serial_status / address_status: status."
    )
    mailing_id: int | None = Field(default=None, description="Required for create_link and send_mail.")
    subgroup: Annotated[str, StringConstraints(max_length=64)] = Field(
        default="", description="Subgroup given to contacts this access creates."
    )
    anonymous: bool = Field(
        default=False, description="Contacts this access creates get no person code (serial) tied to the address."
    )


class ApiAccessOut(Output):
    id: int
    function: str
    mailing_id: int | None
    subgroup: str
    anonymous: bool
    key_prefix: str
    revoked_at: datetime | None
    created_at: datetime


class ApiAccessCreated(ApiAccessOut):
    api_url: str = Field(description="The API URL with its secret key. Shown once; store it now.")


@router.get("", response_model=Page[ApiAccessOut], summary="List API accesses (never their keys)")
def list_accesses(
    survey: ReadableSurvey, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[ApiAccessOut]:
    page = api_accesses.list_accesses(db, survey, cursor, limit)
    return Page(items=[ApiAccessOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=ApiAccessCreated, status_code=201, summary="Create an API access (API URL)")
def create_access(body: ApiAccessIn, survey: WritableSurvey, db: Db, settings: SettingsDep) -> ApiAccessCreated:
    access, key = api_accesses.create_access(db, survey, body.function, body.mailing_id, body.subgroup, body.anonymous)
    return ApiAccessCreated.model_validate(
        {
            **ApiAccessOut.model_validate(access).model_dump(),
            "api_url": api_accesses.api_url(settings.public_url, survey.project, key),
        }
    )


@router.delete("/{access_id}", status_code=204, summary="Revoke an API access (its URL answers 404 from now on)")
def revoke_access(access_id: int, survey: WritableSurvey, db: Db) -> Response:
    api_accesses.revoke(db, api_accesses.get_access(db, survey, access_id))
    return Response(status_code=204)
