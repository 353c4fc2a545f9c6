"""Serial codes (access codes) of a survey."""

from __future__ import annotations

from fastapi import APIRouter

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Page, SerialCodeOut, SerialCodesIn
from invitelink.models import Participation, Token
from invitelink.services import serials
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/surveys/{survey_id}/serial-codes", tags=["serial codes"], route_class=AdminRoute)


def code_out(token: Token, participation: Participation | None) -> SerialCodeOut:
    status = participation.status if participation else "none"
    return SerialCodeOut(
        code=token.code,
        notice=token.notice,
        started=participation is not None and participation.started_at is not None,
        completed=status == "completed",
        created_at=token.created_at,
    )


@router.get("", response_model=Page[SerialCodeOut], summary="List serial codes with their status")
def list_codes(
    survey: ReadableSurvey, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[SerialCodeOut]:
    page = serials.list_serial_codes(db, survey.id, cursor, limit)
    return Page(items=[code_out(t, p) for t, p in page.items], next_cursor=page.next_cursor)


@router.post(
    "",
    response_model=list[SerialCodeOut],
    status_code=201,
    summary="Generate serial codes",
    description="Generates `count` (1 to 10,000) new codes of 8 characters that are easy to type "
    "(no 0/O, 1/I/L), each carrying `notice` (returned by the SoSci `serial_status` function).",
)
def generate_codes(body: SerialCodesIn, survey: WritableSurvey, db: Db) -> list[SerialCodeOut]:
    return [code_out(t, None) for t in serials.generate_serial_codes(db, survey, body.count, body.notice)]
