"""Serial mailings of a survey."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StringConstraints

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Input, MailingFields, MailingIn, MailingOut, Page
from invitelink.models import Mailing, utcnow
from invitelink.services import mailings
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/surveys/{survey_id}/mailings", tags=["mailings"], route_class=AdminRoute)


def mailing_out(mailing: Mailing) -> MailingOut:
    return MailingOut.model_validate(
        {**{c: getattr(mailing, c) for c in MailingOut.model_fields if c != "code"}, "code": f"M{mailing.id}"}
    )


@router.get("", response_model=Page[MailingOut], summary="List mailings (serial mails and trigger batches)")
def list_mailings(
    survey: ReadableSurvey, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[MailingOut]:
    page = mailings.list_mailings(db, survey, cursor, limit)
    return Page(items=[mailing_out(m) for m in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=MailingOut, status_code=201, summary="Create a serial mailing")
def create_mailing(body: MailingIn, survey: WritableSurvey, db: Db) -> MailingOut:
    return mailing_out(mailings.create_mailing(db, survey, body.model_dump()))


@router.get("/{mailing_id}", response_model=MailingOut, summary="Get a mailing")
def get_mailing(mailing_id: int, survey: ReadableSurvey, db: Db) -> MailingOut:
    return mailing_out(mailings.get_mailing(db, survey, mailing_id))


@router.patch("/{mailing_id}", response_model=MailingOut, summary="Update a mailing")
def update_mailing(mailing_id: int, body: MailingFields, survey: WritableSurvey, db: Db) -> MailingOut:
    mailing = mailings.get_mailing(db, survey, mailing_id)
    return mailing_out(mailings.update_mailing(db, mailing, body.model_dump(exclude_unset=True)))


@router.delete("/{mailing_id}", status_code=204, summary="Delete a mailing and its queued deliveries")
def delete_mailing(mailing_id: int, survey: WritableSurvey, db: Db) -> Response:
    mailings.delete_mailing(db, survey, mailing_id)
    return Response(status_code=204)


class SendIn(Input):
    subgroup: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Only contacts of this subgroup; omit for all contacts of the survey."
    )
    send_at: datetime | None = Field(default=None, description="When the mails become due (UTC); default now.")


class SendOut(BaseModel):
    queued: int = Field(description="Deliveries queued by this call.")
    already_queued: int = Field(description="Reachable contacts who already had this mailing queued or sent.")
    unreachable: int = Field(description="Contacts in scope without an address for the mailing's channel.")


@router.post(
    "/{mailing_id}/send",
    response_model=SendOut,
    summary="Send a serial mailing to all contacts (or one subgroup)",
    description="Queues one delivery per reachable contact with a personal link each; idempotent: calling it again "
    "queues only contacts added since. The worker sends them while the survey is active.",
)
def send_mailing(mailing_id: int, body: SendIn, survey: WritableSurvey, db: Db) -> SendOut:
    mailing = mailings.get_mailing(db, survey, mailing_id)
    due = utcnow()
    if body.send_at is not None:  # a time without zone is read as UTC
        due = body.send_at.astimezone(UTC) if body.send_at.tzinfo else body.send_at.replace(tzinfo=UTC)
    summary = mailings.send_to_contacts(db, mailing, body.subgroup, due)
    return SendOut(**asdict(summary))
