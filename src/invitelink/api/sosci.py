"""The SoSci-style mailing API: PUBLIC_URL/{project}/?act={key}, its four functions and its error bodies."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from invitelink.api.errors import DATABASE_UNAVAILABLE
from invitelink.services import api_accesses, sosci
from invitelink.services.api_accesses import AccessInfo
from invitelink.services.errors import DomainError, InvalidInput, NotFound
from invitelink.services.identity import Features

LINK_FUNCTIONS = ("create_link", "send_mail")
ECHOED = ("serial", "email", "mobile", "uid")


class CallError(Exception):
    """A domain error while running ``function``. Raised, not returned, so the job's savepoint rolls back."""

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
        body.update({k: params.get(k) for k in ECHOED})
    else:
        body["url"] = None
    return body


def _error(function: str | None, exc: DomainError, params: dict[str, str]) -> JSONResponse:
    status = 404 if isinstance(exc, NotFound) else 400
    return JSONResponse(_error_body(function, exc.message, params), status_code=status)


def _read(session: Session, access: AccessInfo, params: dict[str, str], features: Features) -> dict[str, Any]:
    if access.function == "serial_status":
        if not params.get("serial"):
            raise InvalidInput("Request must specify serial")
        return sosci.serial_status(session, access.survey_id, params["serial"])
    found = sosci.address_status(session, access.survey_id, params.get("serial"), features)
    return {"result": "ok", **{k: params.get(k) for k in ECHOED}, **found, "error": None}


async def handle(request: Request, project: str, key: str, params: dict[str, str]) -> JSONResponse:
    """Resolve the key and run its function; errors are the seed's bodies with 400 or 404.

    Link functions run as one job through Database.write (group commit on SQLite): the key lookup happens in
    the same job, because on SQLite the single writer is the bottleneck and every extra thread hop competes
    with it. Status functions only read, on the read engine, in parallel.
    """
    database = request.app.state.database
    public_url: str = request.app.state.settings.public_url
    # Parsed here, outside the single SQLite writer; an error is reported once the key (and so the function
    # whose error body to use) is known.
    features_error: DomainError | None = None
    try:
        features = Features.parse(params.get("email"), params.get("mobile"), params.get("uid"))
    except DomainError as exc:
        features, features_error = Features(), exc

    def link(session: Session) -> tuple[str, Any]:
        access = api_accesses.resolve(session, project, key)
        if access.function not in LINK_FUNCTIONS:
            return access.function, access
        try:
            if features_error is not None:
                raise features_error
            handler = sosci.create_link if access.function == "create_link" else sosci.send_mail
            return access.function, handler(session, public_url, access, features)
        except DomainError as exc:
            raise CallError(access.function, exc) from exc

    try:
        function, outcome = await database.write(link, short=True)
    except CallError as exc:
        return _error(exc.function, exc.error, params)
    except DomainError as exc:  # unknown or revoked key
        return _error(None, exc, params)
    if isinstance(outcome, AccessInfo):
        access = outcome

        def read() -> dict[str, Any]:
            if features_error is not None and access.function == "address_status":
                raise features_error
            with database.read_sessions() as session:
                return _read(session, access, params, features)

        try:
            return JSONResponse(await run_in_threadpool(read))
        except DomainError as exc:
            return _error(function, exc, params)
    return JSONResponse(outcome)


def unavailable(params: dict[str, str]) -> JSONResponse:
    """503 when the database cannot serve; the function is not known (the key was not looked up)."""
    return JSONResponse(_error_body(None, DATABASE_UNAVAILABLE, params), status_code=503)


def param_error(message: str, params: dict[str, str]) -> JSONResponse:
    return JSONResponse(_error_body(None, message, params), status_code=400)
