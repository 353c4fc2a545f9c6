"""Trigger tokens of a survey (owners, admins, editors manage them): the ``sit_…`` secret is shown once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import Field

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Input, LongText, Name, Output, Page, ShortText
from invitelink.api.deps import SettingsDep
from invitelink.services import trigger_tokens
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/surveys/{survey_id}/trigger-tokens", tags=["trigger tokens"], route_class=AdminRoute)

Cooldown = Annotated[int, Field(ge=0, le=86_400, description="Seconds a token waits between accepted calls; 0: none.")]
ReminderDays = Annotated[
    int, Field(ge=0, le=365, description="Days after which recipients who have not completed get a reminder; 0: none.")
]


class TriggerTokenIn(Input):
    name: Name = Field(examples=["CRM post-purchase"])
    cooldown_seconds: Cooldown = 0
    default_subject: ShortText = Field(default="", examples=["{{workspace_name}} asks for your opinion"])
    default_message: LongText = Field(
        default="",
        examples=["Hello {{recipient_name}},\n\nplease take part in {{survey_title}}:\n{{survey_link}}"],
        description="Template with {{recipient_name}}, {{workspace_name}}, {{survey_title}}, {{survey_link}}.",
    )
    default_reminder_days: ReminderDays = 0


class TriggerTokenPatch(Input):
    name: Name | None = None
    cooldown_seconds: Cooldown | None = None
    default_subject: ShortText | None = None
    default_message: LongText | None = None
    default_reminder_days: ReminderDays | None = None


class TriggerTokenOut(Output):
    id: int
    name: str
    prefix: str = Field(description="The secret's first characters, to tell tokens apart.")
    cooldown_seconds: int
    default_subject: str
    default_message: str
    default_reminder_days: int
    created_at: datetime
    last_used_at: datetime | None


class TriggerTokenCreated(TriggerTokenOut):
    secret: str = Field(description="The bearer secret (sit_…). Shown once; only its SHA-256 hash is stored.")
    url: str = Field(description="The endpoint to POST invitation batches to.")


@router.get("", response_model=Page[TriggerTokenOut], summary="List trigger tokens (never their secrets)")
def list_tokens(
    survey: ReadableSurvey, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[TriggerTokenOut]:
    page = trigger_tokens.list_tokens(db, survey, cursor, limit)
    return Page(items=[TriggerTokenOut.model_validate(t) for t in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=TriggerTokenCreated, status_code=201, summary="Create a trigger token")
def create_token(body: TriggerTokenIn, survey: WritableSurvey, db: Db, settings: SettingsDep) -> TriggerTokenCreated:
    token, secret = trigger_tokens.create_token(db, survey, **body.model_dump())
    return TriggerTokenCreated.model_validate(
        {
            **TriggerTokenOut.model_validate(token).model_dump(),
            "secret": secret,
            "url": trigger_tokens.trigger_url(settings.public_url),
        }
    )


@router.get("/{token_id}", response_model=TriggerTokenOut, summary="Show a trigger token")
def get_token(token_id: int, survey: ReadableSurvey, db: Db) -> TriggerTokenOut:
    return TriggerTokenOut.model_validate(trigger_tokens.get_token(db, survey, token_id))


@router.patch("/{token_id}", response_model=TriggerTokenOut, summary="Change a trigger token's name or defaults")
def update_token(token_id: int, body: TriggerTokenPatch, survey: WritableSurvey, db: Db) -> TriggerTokenOut:
    token = trigger_tokens.get_token(db, survey, token_id)
    return TriggerTokenOut.model_validate(trigger_tokens.update_token(db, token, body.model_dump(exclude_unset=True)))


@router.delete(
    "/{token_id}", status_code=204, summary="Delete a trigger token (rotation: create a new one, delete the old)"
)
def delete_token(token_id: int, survey: WritableSurvey, db: Db) -> Response:
    trigger_tokens.delete_token(db, survey, token_id)
    return Response(status_code=204)
