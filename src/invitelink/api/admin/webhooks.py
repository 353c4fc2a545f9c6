"""Placeholder: filled in by the work on lifecycle events."""

from fastapi import APIRouter

from invitelink.api.admin.errors import AdminRoute

router = APIRouter(route_class=AdminRoute)
