"""PUBLIC_URL/{project}/: the SoSci API URL (?act=), personal links (?d=) and serial-code links (?s=)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from invitelink.api import participant, sosci
from invitelink.api.errors import (
    RETRY_AFTER_SECONDS,
    VALUE_NOT_STORABLE,
    database_unavailable,
    log_unavailable,
    value_not_storable,
)
from invitelink.api.params import merged_params
from invitelink.services.errors import DomainError
from invitelink.services.surveys import PROJECT_PATTERN

router = APIRouter(tags=["sosci mailing API"])
# The slash-less redirect matches every one-segment path (/healthz, /docs, …), so it is included after every
# other route; ``router`` itself only matches "/<segment>/", which no other route of the service has (a test
# checks that), so it is included first and the hot create_link path skips matching the admin API's routes.
fallback_router = APIRouter(tags=["sosci mailing API"])

DOC = """One URL per survey project, as SoSci Survey has it.

* `?act=<key>`: the **mailing API**. The key belongs to an API access (admin API) with one function:
  `create_link` and `send_mail` take `email`, `mobile` (international, normalised to E.164) or `uid` (printable
  ASCII) and answer `{"result": "ok", "token", "url", "error": null}`; `serial_status` takes `serial`;
  `address_status` takes any of `serial`, `email`, `mobile`, `uid`. Parameters may come in the query string, a
  form body or a JSON body. Errors: `{"result": "error", "error": "…", …}` with 400 (bad request) or 404 (unknown
  key, not found).
* `?d=<token>`: a personal link; `?s=<code>`: a serial-code link. Both record the click and redirect to the
  questionnaire (404 page for an unknown link, 410 while the survey is draft or closed).
* A database that cannot serve gives 503 with `Retry-After` (the error body, or a page for participant links)."""


@router.get(
    "/{project}/", summary="SoSci API URL and participant links", description=DOC, operation_id="project_root_get"
)
@router.post(
    "/{project}/",
    summary="SoSci API URL (parameters in a form or JSON body)",
    description=DOC,
    operation_id="project_root_post",
)
async def project_root(project: str, request: Request) -> Response:
    if not PROJECT_PATTERN.fullmatch(project):
        return participant.page(404, *participant.NOT_FOUND_PAGE)
    try:
        params = await merged_params(request)
    except DomainError as exc:
        if request.method == "GET" and "act" not in request.query_params:
            # A participant's browser (a mangled ?d= or ?s= link): the page, not the API's JSON.
            return participant.page(404, *participant.NOT_FOUND_PAGE)
        return sosci.param_error(exc.message, dict(request.query_params))
    try:
        if params.get("act"):
            return await sosci.handle(request, project, params["act"], params)
        if params.get("d"):
            return await participant.open_link(request, project, params["d"], "personal")
        if params.get("s"):
            return await participant.open_link(request, project, params["s"], "serial_code")
    except Exception as exc:
        if value_not_storable(exc):
            if params.get("act"):
                return sosci.param_error(VALUE_NOT_STORABLE, params)
            return participant.page(404, *participant.NOT_FOUND_PAGE)
        if not database_unavailable(exc):
            raise
        log_unavailable(request, exc)
        response = (
            sosci.unavailable(params) if params.get("act") else participant.page(503, *participant.UNAVAILABLE_PAGE)
        )
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response
    return participant.page(404, *participant.NOT_FOUND_PAGE)


@fallback_router.get("/{project}", include_in_schema=False)
async def project_without_slash(project: str, request: Request) -> Response:
    """Links typed without the trailing slash still work."""
    if not PROJECT_PATTERN.fullmatch(project):
        return participant.page(404, *participant.NOT_FOUND_PAGE)
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/{project}/{query}", status_code=308)
