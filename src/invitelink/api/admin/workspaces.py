"""Workspaces (tenants) and their members. Members come in by invitation only (api/admin/invitations.py)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response

from invitelink.api.admin.deps import Admin, CurrentPrincipal, Db, Limit
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import (
    MemberOut,
    MemberPatch,
    MyWorkspaceOut,
    Page,
    TokenOut,
    WorkspaceIn,
    WorkspaceOut,
)
from invitelink.api.deps import SettingsDep
from invitelink.services import accounts
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(tags=["workspaces"], route_class=AdminRoute)


@router.get("/workspaces", response_model=list[MyWorkspaceOut], summary="Workspaces this account belongs to")
def list_my_workspaces(db: Db, principal: CurrentPrincipal) -> list[MyWorkspaceOut]:
    return [
        MyWorkspaceOut(id=w.id, name=w.name, status=w.status, created_at=w.created_at, role=role)
        for w, role in accounts.list_workspaces(db, principal.user_id)
    ]


@router.post("/workspaces", response_model=WorkspaceOut, status_code=201, summary="Create a workspace you own")
def create_workspace(body: WorkspaceIn, db: Db, principal: CurrentPrincipal) -> WorkspaceOut:
    return WorkspaceOut.model_validate(accounts.create_workspace(db, body.name, accounts.get_user(db, principal)))


@router.post(
    "/workspaces/{workspace_id}/token",
    response_model=TokenOut,
    summary="Switch workspace: a token for another workspace of this account",
)
def switch_workspace(
    workspace_id: int,
    db: Db,
    principal: CurrentPrincipal,
    settings: SettingsDep,
) -> TokenOut:
    ttl = timedelta(hours=settings.admin_session_hours)
    token, _row, role = accounts.switch_workspace(db, principal, workspace_id, ttl)
    return TokenOut(access_token=token, expires_in=int(ttl.total_seconds()), workspace_id=workspace_id, role=role)


@router.get("/workspace", response_model=WorkspaceOut, summary="The current workspace")
def get_current_workspace(db: Db, principal: CurrentPrincipal) -> WorkspaceOut:
    return WorkspaceOut.model_validate(accounts.get_workspace(db, principal))


@router.patch("/workspace", response_model=WorkspaceOut, summary="Rename the current workspace")
def rename_workspace(body: WorkspaceIn, db: Db, principal: Admin) -> WorkspaceOut:
    return WorkspaceOut.model_validate(accounts.rename_workspace(db, principal, body.name))


@router.get("/members", response_model=Page[MemberOut], tags=["members"], summary="Members of the workspace")
def list_members(
    db: Db, principal: CurrentPrincipal, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[MemberOut]:
    page = accounts.list_members(db, principal, cursor, limit)
    return Page(items=[MemberOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor)


@router.patch("/members/{member_id}", response_model=MemberOut, tags=["members"], summary="Change a role")
def change_role(member_id: int, body: MemberPatch, db: Db, principal: Admin) -> MemberOut:
    return MemberOut.model_validate(accounts.change_role(db, principal, member_id, body.role))


@router.delete("/members/{member_id}", status_code=204, tags=["members"], summary="Remove a member")
def remove_member(member_id: int, db: Db, principal: Admin) -> Response:
    accounts.remove_member(db, principal, member_id)
    return Response(status_code=204)
