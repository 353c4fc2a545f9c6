"""What questionnaires and participants' browsers call: the questionnaire callback and the end redirect. (Personal
and serial-code links are opened at PUBLIC_URL/{project}/, which the SoSci family's route dispatches here.)"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route
from invitelink.api.params import no_nul
from invitelink.db import Database
from invitelink.families.participation import calls
from invitelink.families.participation.pages import CLOSED_PAGE, END_PAGES, NO_STORE, NOT_FOUND_PAGE, page, page_errors
from invitelink.services.errors import DomainError, InvalidInput, NotFound, Unauthorized

MAX_RESPONSE_BYTES = 256 * 1024

# Personal and serial-code links -------------------------------------------------------------------------------


async def open_link(request: Request, database: Database, project: str, code: str, kind: str) -> Response:
    """Record a click and send the participant on to the questionnaire (or a 404/410 page)."""
    ip = request.client.host if request.client else None
    outcome = await database.write_hot(
        calls.open_link, project, code.strip().upper(), kind, ip, request.headers.get("user-agent")
    )
    if outcome.state == "missing":
        return page(404, *NOT_FOUND_PAGE)
    if outcome.state == "closed":
        return page(410, *CLOSED_PAGE)
    assert outcome.target is not None
    return RedirectResponse(outcome.target, status_code=302, headers=NO_STORE)


# Questionnaire callback and end redirect -------------------------------------------------------------------


def render_error(status: int, message: str, _exc: DomainError | None = None) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


router = APIRouter(tags=["participation"], route_class=family_route(render_error))
# The end redirect is opened by the participant's browser: its errors are pages.
pages_router = APIRouter(tags=["participation"], route_class=family_route(page_errors("Survey link")))
bearer = HTTPBearer(auto_error=False, description="The survey's questionnaire callback secret (scb_…).")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _no_nul = model_validator(mode="before")(no_nul)
    token: str = Field(min_length=1, max_length=64, examples=["QS33T6XMVS4KLA9S"])
    event: Literal["started", "completed", "terminated", "quotafull", "security"]
    response: dict[str, Any] | None = Field(default=None, description="Answers to store with the participation.")


class EventOut(BaseModel):
    ok: Literal[True] = True
    status: str


@router.post(
    "/api/v1/participations/events",
    response_model=EventOut,
    summary="Questionnaire callback: a participant started or ended",
    description="Server to server, with `Authorization: Bearer <survey callback secret>`. Idempotent and "
    "monotonic: repeating an event, or an earlier one after a later one, changes nothing. The callback's outcome "
    "is final and verified; it confirms a completion the browser reported at `/survey/end`, and on surveys with "
    "`outcome_verification: callback` corrects a different outcome that only the browser reported (the new "
    "status's event carries `reversed_from`). Errors: "
    "401 wrong secret, 404 unknown token (or a token of another survey), 400 invalid body; body "
    "`{ok: false, error}`.",
)
async def participation_event(
    body: EventIn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    database: DatabaseDep,
) -> EventOut:
    if credentials is None:
        raise Unauthorized("missing bearer callback secret")
    if body.response is not None and len(str(body.response)) > MAX_RESPONSE_BYTES:
        raise InvalidInput(f"response is larger than {MAX_RESPONSE_BYTES} bytes")
    status = await database.write(calls.report_event, credentials.credentials, body.token, body.event, body.response)
    return EventOut(status=status)


END_STATUSES = Literal["complete", "terminate", "quotafull", "security"]


@pages_router.get(
    "/survey/end",
    summary="End redirect: the participant's browser after the questionnaire",
    description="Records the outcome like the callback (idempotent, monotonic) and shows a closing page, or sends "
    "supplier traffic to the supplier's redirect for the outcome, signed (`{hmac}`). On a survey with "
    "`outcome_verification: callback`, `status=complete` is only a report: the participation stays `started` until "
    "the questionnaire callback confirms it, and the supplier's success redirect is sent with `{hmac}` empty and "
    "`verified=0` added. An outcome recorded here may be corrected by the callback. `HEAD` is answered like `GET` "
    "without the body, the outcome recorded alike.",
    response_class=HTMLResponse,
)
async def survey_end(
    token: Annotated[str, Query(min_length=1, max_length=64)],
    status: Annotated[END_STATUSES, Query()],
    database: DatabaseDep,
    settings: SettingsDep,
) -> Response:
    try:
        outcome = await database.write(calls.end, settings.server_secret, token.strip().upper(), status)
    except NotFound:
        return page(404, *NOT_FOUND_PAGE)
    # Supplier traffic goes back to the supplier: the outcome's signed redirect, or for a completion that awaits the
    # callback's confirmation the success redirect unsigned and marked verified=0.
    if outcome.supplier_redirect is not None:
        return RedirectResponse(outcome.supplier_redirect, status_code=302, headers=NO_STORE)
    return page(200, *END_PAGES.get(outcome.shown, END_PAGES["security"]))


# HEAD like GET (uvicorn sends no body for it); not in the schema, where it would repeat GET's operation.
pages_router.add_api_route("/survey/end", survey_end, methods=["HEAD"], include_in_schema=False)
