"""The workspace's industries."""

from __future__ import annotations

from fastapi import APIRouter, Response

from invitelink.api.admin.deps import CurrentPrincipal, Db, Editor, Limit
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import IndustryIn, IndustryOut, Page
from invitelink.models import Industry
from invitelink.services import industries
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/industries", tags=["industries"], route_class=AdminRoute)


@router.get("", response_model=Page[IndustryOut], summary="List industries")
def list_industries(
    db: Db, principal: CurrentPrincipal, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[IndustryOut]:
    page = industries.list_industries(db, principal.workspace_id, cursor, limit)
    return Page(items=[IndustryOut.model_validate(i) for i in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=IndustryOut, status_code=201, summary="Add an industry")
def create_industry(body: IndustryIn, db: Db, principal: Editor) -> IndustryOut:
    industry = Industry(workspace_id=principal.workspace_id, name=body.name)
    return IndustryOut.model_validate(industries.save_industry(db, industry))


@router.patch("/{industry_id}", response_model=IndustryOut, summary="Rename an industry")
def rename_industry(industry_id: int, body: IndustryIn, db: Db, principal: Editor) -> IndustryOut:
    industry = industries.get_industry(db, principal.workspace_id, industry_id)
    industry.name = body.name
    return IndustryOut.model_validate(industries.save_industry(db, industry))


@router.delete("/{industry_id}", status_code=204, summary="Delete an industry (surveys keep no industry)")
def delete_industry(industry_id: int, db: Db, principal: Editor) -> Response:
    industries.delete_industry(db, principal.workspace_id, industry_id)
    return Response(status_code=204)
