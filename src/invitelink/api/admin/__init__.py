"""The admin API under /admin/v1/."""

from fastapi import APIRouter

from invitelink.api.admin import (
    api_accesses,
    auth,
    contacts,
    deliveries,
    errors,
    industries,
    invitations,
    mailings,
    results,
    serials,
    suppliers,
    suppressions,
    surveys,
    trigger_tokens,
    webhooks,
    workspaces,
)
from invitelink.api.family import Family

router = APIRouter(prefix="/admin/v1")
for module in (
    auth,
    workspaces,
    invitations,
    industries,
    surveys,
    mailings,
    contacts,
    serials,
    api_accesses,
    trigger_tokens,
    suppliers,
    results,
    deliveries,
    suppressions,
    webhooks,
):
    router.include_router(module.router)
router.include_router(suppliers.questions_router)
router.include_router(invitations.acceptance)

ADMIN = Family(name="admin", prefixes=("/admin/",), routers=(router,), render_error=errors.render)

__all__ = ["ADMIN", "router"]
