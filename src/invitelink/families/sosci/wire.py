"""The SoSci mailing API's wire format for errors: ``{"result": "error", "error": …}`` plus what the function
echoes (link functions ``url: null``, serial_status the ``code``, address_status the four search parameters)."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from invitelink.api.errors import Renderer
from invitelink.services.errors import DomainError, NotFound, RateLimited

ECHOED = ("serial", "email", "mobile", "uid")


def error_body(function: str | None, message: str, params: dict[str, str]) -> dict[str, Any]:
    """The error shapes of each function; ``None`` (the key was not resolved) answers like the link functions."""
    body: dict[str, Any] = {"result": "error", "error": message}
    if function == "serial_status":
        body["code"] = params.get("serial")
    elif function == "address_status":
        body.update({k: params.get(k) for k in ECHOED})
    else:
        body["url"] = None
    return body


def error(function: str | None, exc: DomainError, params: dict[str, str]) -> JSONResponse:
    """The function's error body: 404 for not found, 429 with Retry-After for send_mail's flood limit (the
    link functions' shape, ``url: null``), 400 for anything else."""
    if isinstance(exc, RateLimited):
        return JSONResponse(
            error_body(function, exc.message, params),
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    status = 404 if isinstance(exc, NotFound) else 400
    return JSONResponse(error_body(function, exc.message, params), status_code=status)


def refused(status: int, message: str, params: dict[str, str]) -> JSONResponse:
    """An error before the key was resolved (a bad parameter, a database that cannot serve)."""
    return JSONResponse(error_body(None, message, params), status_code=status)


def renderer(params: dict[str, str]) -> Renderer:
    """Errors of a call whose key is not resolved yet, echoing ``params``: for the shared storage-failure answers."""

    def render(status: int, message: str, _exc: DomainError | None = None) -> Response:
        return refused(status, message, params)

    return render


def render_error(status: int, message: str, _exc: DomainError | None = None) -> Response:
    """The family's error body where no parameters are known (a request body over the size limit)."""
    return refused(status, message, {})
