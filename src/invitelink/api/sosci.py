"""The SoSci-style mailing API: PUBLIC_URL/{project}/?act={key}, its four functions and its error bodies."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from invitelink.db import transaction
from invitelink.services import api_accesses, sosci
from invitelink.services.errors import DomainError, InvalidInput, NotFound

LINK_FUNCTIONS = ("create_link", "send_mail")


class SosciCallError(Exception):
    """A domain error raised while running ``function``: the error body depends on the function."""

    def __init__(self, function: str, error: DomainError) -> None:
        super().__init__(error.message)
        self.function = function
        self.error = error


def _error_body(function: str | None, message: str, params: dict[str, str]) -> dict[str, Any]:
    """The seed's error shapes: link functions answer url null, status functions echo what was asked."""
    body: dict[str, Any] = {"result": "error", "error": message}
    if function == "serial_status":
        body["code"] = params.get("serial")
    elif function == "address_status":
        body.update({k: params.get(k) for k in ("serial", "email", "mobile", "uid")})
    else:
        body["url"] = None
    return body


def _status(exc: DomainError) -> int:
    return 404 if isinstance(exc, NotFound) else 400


def _call(
    session: Session, public_url: str, project: str, key: str, params: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    access, survey = api_accesses.resolve(session, project, key)
    function = access.function
    try:
        if function in LINK_FUNCTIONS:
            features = sosci.Features.parse(params.get("email"), params.get("mobile"), params.get("uid"))
            handler = sosci.create_link if function == "create_link" else sosci.send_mail
            return function, handler(session, public_url, access, survey, features)
        if function == "serial_status":
            if not params.get("serial"):
                raise InvalidInput("Request must specify serial")
            return function, sosci.serial_status(session, survey, params["serial"])
        features = sosci.Features.parse(params.get("email"), params.get("mobile"), params.get("uid"))
        found = sosci.address_status(session, survey, params.get("serial"), features)
        echo = {k: params.get(k) for k in ("serial", "email", "mobile", "uid")}
        return function, {"result": "ok", **echo, **found, "error": None}
    except DomainError as exc:
        raise SosciCallError(function, exc) from exc


async def handle(request: Request, project: str, key: str, params: dict[str, str]) -> JSONResponse:
    """Run the access's function in one transaction; errors are the seed's bodies with 400 or 404."""
    app = request.app
    public_url: str = app.state.settings.public_url

    def work() -> tuple[str, dict[str, Any]]:
        with transaction(app.state.sessions) as session:
            return _call(session, public_url, project, key, params)

    try:
        _function, body = await run_in_threadpool(work)
    except SosciCallError as exc:
        return JSONResponse(_error_body(exc.function, exc.error.message, params), status_code=_status(exc.error))
    except DomainError as exc:  # the key itself: unknown or revoked
        return JSONResponse(_error_body(None, exc.message, params), status_code=_status(exc))
    return JSONResponse(body)


def param_error(message: str, params: dict[str, str]) -> JSONResponse:
    return JSONResponse(_error_body(None, message, params), status_code=400)
