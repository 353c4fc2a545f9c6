"""The R4I-style supply API: POST PUBLIC_URL/{sandbox|production}/v1/{endpoint}, and the entry link
/survey/letdosurvey that its generated survey links point to."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from invitelink.api.errors import family_route
from invitelink.api.params import bearer, json_object
from invitelink.api.participant import END_PAGES, NO_STORE, NOT_FOUND_PAGE, page
from invitelink.config import Settings
from invitelink.security import digest
from invitelink.services import supply, supply_links
from invitelink.services.errors import DomainError, NotFound, RateLimited

ENVIRONMENTS = ("sandbox", "production")
SUCCESS = "Request processed successfully"
Handler = Callable[[Session, supply.Caller, dict[str, Any]], dict[str, Any]]
READS: dict[str, tuple[Handler, str]] = {
    "allocated_survey": (supply.allocated_survey, "Active surveys allocated to you, with limits (page, per_page)."),
    "get_survey_by_id": (supply.get_survey_by_id, "One allocated survey with its targeting questions (survey_id)."),
    "survey_by_date": (
        supply.survey_by_date,
        "Allocated surveys created or active on a date (date: YYYY-MM-DD); at most 1,000.",
    ),
    "get_industries": (supply.get_industries, "The industry list."),
    "get_redirects": (supply.get_redirects, "Your redirect URLs (supplier_id, email)."),
    "view_participants": (supply.view_participants, "Your registered participants (supplier_id, page, per_page)."),
    "survey_stats": (supply.survey_stats, "Aggregate statistics of all your traffic (supplier_id)."),
    "survey_stats_by_id": (
        supply.survey_stats_by_id,
        "Participations in one survey (supplier_id, project_id, page, per_page).",
    ),
    "survey_stats_by_participant": (
        supply.survey_stats_by_participant,
        "One participant's participations (supplier_id, participant_id, page, per_page).",
    ),
}
WRITES: dict[str, tuple[Handler, str]] = {
    "add_participant": (supply.add_participant, "Register or update a participant (supplier_id, pid, profile)."),
}
ENDPOINTS = (*READS, *WRITES, "generate_survey_url")


def render_error(_request: Request, status: int, message: str, _exc: DomainError | None) -> Response:
    return JSONResponse({"apiStatus": "error", "msg": message, "result": None}, status_code=status)


router = APIRouter(route_class=family_route(render_error))


class RateLimiter:
    """Calls per key and minute in this process (a sliding window). Per instance: with N instances behind a
    balancer a key gets up to N times the limit, which still stops a runaway client."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - 60:
                calls.popleft()
            if len(calls) >= self.per_minute:
                raise RateLimited(
                    f"Rate limit exceeded: {self.per_minute} requests per minute",
                    retry_after=math.ceil(calls[0] + 60 - now),
                )
            calls.append(now)
            if len(self._calls) > 10_000:  # forget idle keys
                for stale in [k for k, v in self._calls.items() if not v or v[-1] <= now - 60]:
                    del self._calls[stale]


def _limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter | None = getattr(request.app.state, "supply_limiter", None)
    if limiter is None:
        limiter = RateLimiter(request.app.state.settings.supplier_requests_per_minute)
        request.app.state.supply_limiter = limiter
    return limiter


async def _call(request: Request, environment: str, endpoint: str) -> JSONResponse:
    key = bearer(request)
    if key is not None:
        _limiter(request).check(digest(key))
    body = json_object(await request.body())
    settings: Settings = request.app.state.settings
    message = SUCCESS
    if endpoint in WRITES:
        handler = WRITES[endpoint][0]
        data = await request.app.state.database.write(
            lambda session: handler(session, supply.authenticate(session, key, environment), body)
        )
    else:

        def read() -> dict[str, Any]:
            with request.app.state.read_sessions() as session:
                caller = supply.authenticate(session, key, environment)
                if endpoint == "generate_survey_url":
                    return supply.generate_survey_url(
                        session, caller, body, settings.public_url, settings.server_secret
                    )
                return READS[endpoint][0](session, caller, body)

        data = await run_in_threadpool(read)
        if endpoint == "generate_survey_url":
            message = "Survey link generated successfully"
    return JSONResponse({"status": "success", "message": message, "data": data})


def _register(environment: str, endpoint: str, description: str) -> None:
    async def endpoint_handler(request: Request) -> JSONResponse:
        return await _call(request, environment, endpoint)

    router.add_api_route(
        f"/{environment}/v1/{endpoint}",
        endpoint_handler,
        methods=["POST"],
        name=f"{environment}_{endpoint}",
        summary=endpoint,
        description=f"{description}\n\n`Authorization: Bearer "
        f"{'R4I_TEST_' if environment == 'sandbox' else 'R4I_LIVE_'}…`; JSON body. Success: "
        '`{"status": "success", "message": …, "data": …}`. Errors: `{"apiStatus": "error", "msg": …, '
        '"result": null}` with 400, 401, 403, 404, 405, 429.',
        tags=[f"supplier API ({environment})"],
    )


for _environment in ENVIRONMENTS:
    for _name, (_handler, _description) in {**READS, **WRITES}.items():
        _register(_environment, _name, _description)
    _register(
        _environment,
        "generate_survey_url",
        "A signed survey link for an allocated survey (survey_id, supplier_id); replace [%%pid%%] with the PID.",
    )


def _register_fallback(environment: str) -> None:
    async def other(request: Request, endpoint: str) -> JSONResponse:
        """Wrong method on a real endpoint: 405 with Allow; anything else under the base URL: 404."""
        if endpoint in ENDPOINTS and request.method != "POST":
            return JSONResponse(
                {"apiStatus": "error", "msg": f"Method {request.method} not allowed; use POST", "result": None},
                status_code=405,
                headers={"Allow": "POST"},
            )
        raise NotFound(f"Unknown endpoint: {endpoint or '(none)'}")

    router.add_api_route(
        f"/{environment}/v1/{{endpoint:path}}",
        other,
        methods=["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS"],
        include_in_schema=False,
        name=f"{environment}_fallback",
    )


for _environment in ENVIRONMENTS:
    _register_fallback(_environment)


@router.get(
    "/survey/letdosurvey",
    tags=["participation"],
    summary="Entry of supplier traffic (the link generate_survey_url hands out)",
    description="Checks the signed `sid`/`security_code`, records the click, applies the per-country limit and "
    "redirects to the questionnaire; a forged link goes to the supplier's security_check redirect, an entrant over "
    "the limit to its quotafull redirect.",
    response_class=RedirectResponse,
    status_code=302,
)
async def letdosurvey(
    request: Request,
    sid: Annotated[str, Query(max_length=400)] = "",
    security_code: Annotated[str, Query(max_length=100)] = "",
    pid: Annotated[str, Query(alias="PID", max_length=400)] = "",
) -> Response:
    settings: Settings = request.app.state.settings
    ip = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent")
    outcome = await request.app.state.database.write(
        lambda session: supply_links.enter(session, settings.server_secret, sid, security_code, pid, ip, user_agent),
        short=True,
    )
    if outcome.url is not None:
        return RedirectResponse(outcome.url, status_code=302, headers=NO_STORE)
    if outcome.page == "bad_pid":
        return page(
            400, "Link incomplete", "This survey link has no participant id. Please use the link you were sent."
        )
    if outcome.page == "missing":
        return page(404, *NOT_FOUND_PAGE)
    return page(200, *END_PAGES[outcome.page or "security"])
