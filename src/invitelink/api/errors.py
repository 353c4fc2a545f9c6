"""Per-family error envelopes: a route class that turns domain and validation errors into the family's body."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from invitelink.api.methods import method_not_allowed
from invitelink.services import idempotency
from invitelink.services.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
    Unprocessable,
)

READ_METHODS = frozenset({"GET", "HEAD"})
# Ids are 64-bit signed integers in both engines.
MAX_ID = 2**63 - 1
STATUS_BY_ERROR: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 400,
    Forbidden: 403,
    Unauthorized: 401,
    RateLimited: 429,
    Unprocessable: 422,
}

# A family's error answer for a status and a message (and the domain error, when there is one).
Renderer = Callable[[int, str, DomainError | None], Response]

log = logging.getLogger("invitelink.api")
DATABASE_UNAVAILABLE = "the database is not ready or not reachable; try again shortly"
RETRY_AFTER_SECONDS = "5"


# PostgreSQL's undefined_table / undefined_column: the schema is older than the code (not migrated yet).
NOT_MIGRATED_SQLSTATES = frozenset({"42P01", "42703"})
VALUE_NOT_STORABLE = "a value cannot be stored as given (an invalid character or a number out of range)"


def database_unavailable(exc: BaseException) -> bool:
    """A driver or pool error that says the database cannot serve now (down, unmigrated, out of connections).

    Not one: an IntegrityError (a broken invariant, a bug to see), a DataError (the request's own value, a 400),
    any other programming error."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, ProgrammingError):
        return getattr(exc.orig, "sqlstate", None) in NOT_MIGRATED_SQLSTATES
    return False


def value_not_storable(exc: BaseException) -> bool:
    """The database refused a value of the request (PostgreSQL: a NUL in text, a number out of range): a 400. The
    readers in api/params.py refuse NULs first with a clearer message; this is the backstop for other paths."""
    # SQLite's driver cannot bind an integer beyond 64 bits (an id or cursor from a URL) and says so with a bare
    # OverflowError, where PostgreSQL answers with a DataError.
    return isinstance(exc, DataError | OverflowError)


def log_unavailable(request: Request, exc: BaseException) -> None:
    # The path and the error type only: query strings carry tokens and keys, and SQL parameters are hidden by the
    # engine (hide_parameters) but the statement text is no help to an operator here.
    log.warning("%s %s: database unavailable (%s)", request.method, request.url.path, type(exc).__name__)


def storage_failure(request: Request, exc: Exception, render: Renderer) -> Response:
    """A driver error as the family's answer: 400 for a value the database refused, 404 for a row deleted by a
    concurrent request, 503 with Retry-After when the database cannot serve. Anything else is a bug, and is raised
    again."""
    if value_not_storable(exc):
        return render(400, VALUE_NOT_STORABLE, None)
    if isinstance(exc, StaleDataError):
        # The row this request changes or deletes was deleted by another request meanwhile (a contact deleted
        # while its survey is): for this caller it no longer exists.
        return render(404, "not found: it was deleted meanwhile", None)
    if not database_unavailable(exc):
        raise exc
    log_unavailable(request, exc)
    response = render(503, DATABASE_UNAVAILABLE, None)
    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def status_of(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def validation_message(exc: RequestValidationError) -> str:
    """One readable line from pydantic's error list: ``field: problem; field: problem``."""
    parts = []
    for error in exc.errors()[:5]:
        loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form"))
        # pydantic prefixes the messages of our own validators with "Value error, ": noise to a client.
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts) or "invalid request"


async def idempotency_key(request: Request, *, always: bool = False) -> idempotency.Keyed | None:
    """The request's Idempotency-Key with its fingerprint, for a POST by an authenticated caller (``always``: the
    family identifies its caller itself, e.g. by a secret in the body); else None."""
    key = request.headers.get("idempotency-key")
    if key is None or request.method != "POST" or not (always or "authorization" in request.headers):
        return None
    return idempotency.Keyed(idempotency.check_key(key), idempotency.fingerprint(request, await request.body()))


def replayed(stored: idempotency.Stored) -> Response:
    """The first answer again, marked as such."""
    return JSONResponse(stored.body, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"})


def family_route(render: Renderer, *, validation_status: int = 400, unit_of_work: bool = False) -> type[APIRoute]:
    """A route class for one API family: every DomainError and validation error is rendered by ``render``, and a
    database that cannot serve gives 503 with Retry-After in the same format.

    ``unit_of_work``: a request that may write (any method but GET and HEAD) runs, dependencies and endpoint, in one
    unit of work of the write seam (``Database.unit_of_work``, its session in ``request.state.session``), committed
    before the answer leaves; an error rolls all of it back. Families whose endpoints hand named use cases to
    ``Database.write`` leave it off."""

    class FamilyRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            original = super().get_route_handler()

            async def run(request: Request) -> Response:
                for value in request.path_params.values():
                    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > MAX_ID:
                        # No stored row has such an id; the database would refuse to compare it (a 400).
                        raise NotFound("not found")
                if not unit_of_work or request.method in READ_METHODS:
                    return await original(request)
                keyed = await idempotency_key(request)
                async with request.app.state.database.unit_of_work() as session:
                    request.state.session = session
                    if keyed is None:
                        return await original(request)
                    # Keyed per credential: the bearer the request carries (its digest).
                    credential = idempotency.credential_of(request.headers.get("authorization", ""))
                    stored = await run_in_threadpool(idempotency.replay, session, credential, keyed)
                    if stored is not None:
                        return replayed(stored)
                    response = await original(request)
                    if 200 <= response.status_code < 300 and response.headers.get("content-type") == "application/json":
                        answer = json.loads(bytes(response.body))
                        await run_in_threadpool(
                            idempotency.remember, session, credential, keyed, response.status_code, answer
                        )
                    return response

            async def handler(request: Request) -> Response:
                try:
                    return await run(request)
                except DomainError as exc:
                    response = render(status_of(exc), exc.message, exc)
                    if isinstance(exc, RateLimited):
                        response.headers["Retry-After"] = str(exc.retry_after)
                    if isinstance(exc, Unauthorized):
                        response.headers.setdefault("WWW-Authenticate", "Bearer")
                    return response
                except RequestValidationError as exc:
                    if any(error.get("loc", ("",))[0] == "path" for error in exc.errors()):
                        # A URL whose id is not a number names nothing here; but where another route serves the
                        # path with another method (GET /invitations/accept), the method is what is wrong.
                        return method_not_allowed(request, render) or render(404, "not found", None)
                    return render(validation_status, validation_message(exc), None)
                except StarletteHTTPException as exc:
                    # FastAPI's own refusals (a body that is not JSON) in the family's format.
                    detail = exc.detail if isinstance(exc.detail, str) else "bad request"
                    response = render(exc.status_code, detail, None)
                    response.headers.update(exc.headers or {})
                    return response
                except Exception as exc:
                    return storage_failure(request, exc, render)

            return handler

    return FamilyRoute


def detail_body(message: str, exc: DomainError | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": message}
    if exc is not None and exc.field:
        body["field"] = exc.field
    body.update(extra)
    return body
