"""Serial mailings of a survey."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import MailingFields, MailingIn, MailingOut, Page
from invitelink.models import Mailing
from invitelink.services import mailings
from invitelink.services.pagination import DEFAULT_LIMIT, paginate

router = APIRouter(prefix="/surveys/{survey_id}/mailings", tags=["mailings"], route_class=AdminRoute)


def mailing_out(mailing: Mailing) -> MailingOut:
    return MailingOut.model_validate(
        {**{c: getattr(mailing, c) for c in MailingOut.model_fields if c != "code"}, "code": f"M{mailing.id}"}
    )


@router.get("", response_model=Page[MailingOut], summary="List mailings (serial mails and trigger batches)")
def list_mailings(
    survey: ReadableSurvey, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[MailingOut]:
    page = paginate(db, select(Mailing).where(Mailing.survey_id == survey.id), Mailing.id, cursor, limit)
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
    db.delete(mailings.get_mailing(db, survey, mailing_id))
    return Response(status_code=204)
