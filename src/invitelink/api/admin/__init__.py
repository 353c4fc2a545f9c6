"""The admin API under /admin/v1/."""

from fastapi import APIRouter

from invitelink.api.admin import (
    api_accesses,
    auth,
    contacts,
    industries,
    mailings,
    results,
    serials,
    surveys,
    trigger_tokens,
    workspaces,
)

router = APIRouter(prefix="/admin/v1")
for module in (
    auth,
    workspaces,
    industries,
    surveys,
    mailings,
    contacts,
    serials,
    api_accesses,
    trigger_tokens,
    results,
):
    router.include_router(module.router)

__all__ = ["router"]
