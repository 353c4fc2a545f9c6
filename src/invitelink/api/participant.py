"""What participants and questionnaires call: personal and serial-code links, the questionnaire callback, the
end redirect. Pages never show participant data."""

from __future__ import annotations

import html
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from invitelink.api.deps import get_db
from invitelink.api.errors import family_route
from invitelink.api.params import no_nul
from invitelink.services import participation, supply_links
from invitelink.services.errors import DomainError, InvalidInput, NotFound, Unauthorized
from invitelink.services.links import questionnaire_redirect

CLOSED_STATUSES = ("draft", "closed")
MAX_RESPONSE_BYTES = 256 * 1024
# Links are credentials: keep them out of referrers and shared caches.
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def page(status: int, title: str, text: str) -> HTMLResponse:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}"
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


NOT_FOUND_PAGE = ("Link not found", "This survey link is not valid. Please check that you copied it completely.")
UNAVAILABLE_PAGE = (
    "Please try again shortly",
    "This survey link cannot be opened right now. Please try again in a minute; your link stays valid.",
)
CLOSED_PAGE = ("Survey not available", "This survey is not open at the moment. Thank you for your interest.")


async def open_link(request: Request, project: str, code: str, kind: str) -> Response:
    """Record a click and send the participant on to the questionnaire (or a 404/410 page)."""
    ip = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent")

    def work(session: Session) -> tuple[str, str | None]:
        try:
            entry = participation.find_entry(session, project, code.strip().upper(), kind)
        except NotFound:
            return "missing", None
        if entry.survey.status in CLOSED_STATUSES:
            return "closed", None
        participation.record_click(session, entry.token, ip, user_agent)
        return "open", questionnaire_redirect(entry.survey.questionnaire_url, entry.token.code)

    outcome, target = await request.app.state.database.write(work, short=True)
    if outcome == "missing":
        return page(404, *NOT_FOUND_PAGE)
    if outcome == "closed":
        return page(410, *CLOSED_PAGE)
    assert target is not None
    return RedirectResponse(target, status_code=302, headers=NO_STORE)


# Questionnaire callback and end redirect -------------------------------------------------------------------


def render_error(_request: Request, status: int, message: str, _exc: DomainError | None) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


router = APIRouter(tags=["participation"], route_class=family_route(render_error))
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
    "monotonic: repeating an event, or an earlier one after a later one, changes nothing. Errors: 401 wrong "
    "secret, 404 unknown token (or a token of another survey), 400 invalid body; body `{ok: false, error}`.",
)
def participation_event(
    body: EventIn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    db: Annotated[Any, Depends(get_db)],
) -> EventOut:
    if credentials is None:
        raise Unauthorized("missing bearer callback secret")
    survey = participation.callback_survey(db, credentials.credentials)
    if body.response is not None and len(str(body.response)) > MAX_RESPONSE_BYTES:
        raise InvalidInput(f"response is larger than {MAX_RESPONSE_BYTES} bytes")
    return EventOut(status=participation.record_event(db, survey, body.token, body.event, body.response, verified=True))


END_STATUSES = Literal["complete", "terminate", "quotafull", "security"]
END_PAGES = {
    "completed": ("Thank you!", "Your answers have been recorded."),
    "terminated": ("Thank you", "Thank you for your time. This survey is not a match for you this time."),
    "quotafull": ("Thank you", "Thank you for your interest. This survey has received enough answers."),
    "security": ("Thank you", "Your participation has ended."),
}


@router.get(
    "/survey/end",
    summary="End redirect: the participant's browser after the questionnaire",
    description="Records the outcome like the callback (idempotent, monotonic) and shows a closing page.",
    response_class=HTMLResponse,
)
def survey_end(
    request: Request,
    token: Annotated[str, Query(min_length=1, max_length=64)],
    status: Annotated[END_STATUSES, Query()],
    db: Annotated[Any, Depends(get_db)],
) -> Response:
    code = token.strip().upper()
    try:
        now = participation.record_end(db, code, status)
    except NotFound:
        return page(404, *NOT_FOUND_PAGE)
    # Supplier traffic goes back to the supplier, with the outcome's signed redirect.
    target = supply_links.end_redirect(db, request.app.state.settings.server_secret, code)
    if target is not None:
        return RedirectResponse(target, status_code=302, headers=NO_STORE)
    return page(200, *END_PAGES.get(now, END_PAGES["security"]))
