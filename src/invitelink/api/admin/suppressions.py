"""The workspace's suppression list: addresses that are never mailed again."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import Field, StringConstraints

from invitelink.api.admin.deps import CurrentPrincipal, Db, Editor, Limit
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Input, Output, Page
from invitelink.services import suppressions
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/suppressions", tags=["suppressions"], route_class=AdminRoute)


class SuppressionIn(Input):
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)] = Field(
        examples=["pat@example.com"]
    )


class SuppressionOut(Output):
    id: int
    address: str
    created_at: datetime


@router.get("", response_model=Page[SuppressionOut], summary="Suppressed addresses (never mailed again)")
def list_suppressions(
    principal: CurrentPrincipal, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[SuppressionOut]:
    page = suppressions.list_suppressions(db, principal.workspace_id, cursor, limit)
    return Page(items=[SuppressionOut.model_validate(s) for s in page.items], next_cursor=page.next_cursor)


@router.post(
    "",
    response_model=SuppressionOut,
    status_code=201,
    summary="Suppress an address",
    description="Idempotent: an address already on the list answers 200 with its entry. Queued deliveries to it "
    "are skipped when their turn comes.",
    responses={200: {"description": "Already suppressed", "model": SuppressionOut}},
)
def add_suppression(body: SuppressionIn, principal: Editor, db: Db, response: Response) -> SuppressionOut:
    row, added = suppressions.add(db, principal.workspace_id, body.address)
    if not added:
        response.status_code = 200
    return SuppressionOut.model_validate(row)


@router.delete(
    "/{suppression_id}",
    status_code=204,
    summary="Mail an address again",
    description="For a mistaken suppression (a bounce that was not permanent, an unsubscribe by someone else).",
)
def remove_suppression(suppression_id: int, principal: Editor, db: Db) -> Response:
    suppressions.remove_suppression(db, principal.workspace_id, suppression_id)
    return Response(status_code=204)
