"""The admin family's error body: ``{"detail": message, "field": name?}``; validation errors are 422."""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import JSONResponse

from invitelink.api.errors import detail_body, family_route
from invitelink.services.errors import DomainError


def render(status: int, message: str, exc: DomainError | None = None) -> Response:
    return JSONResponse(detail_body(message, exc), status_code=status)


AdminRoute = family_route(render, validation_status=422, unit_of_work=True)
