"""PUBLIC_URL/{project}/: the SoSci API URL (?act=), and the participant links (?d=, ?s=) that share its URL."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import storage_failure
from invitelink.api.params import merged_params
from invitelink.db import Database
from invitelink.families.participation.pages import NOT_FOUND_PAGE, UNAVAILABLE_PAGE, page
from invitelink.families.participation.routes import open_link
from invitelink.families.sosci import calls, wire
from invitelink.services.api_accesses import AccessInfo
from invitelink.services.errors import DomainError
from invitelink.services.identity import Features
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


async def call_api(database: Database, public_url: str, project: str, key: str, params: dict[str, str]) -> Response:
    """Resolve the key and run its function; errors are the function's error bodies with 400 or 404.

    Link functions run as one job through the write seam's hot path (group commit), the key lookup included.
    Status functions only read, on the read engine, in parallel."""
    # Parsed here, outside the single SQLite writer; an error is reported once the key (and so the function
    # whose error body to use) is known.
    features: Features | DomainError
    try:
        features = Features.parse(params.get("email"), params.get("mobile"), params.get("uid"))
    except DomainError as exc:
        features = exc
    try:
        outcome = await database.write_hot(calls.call_link_function, project, key, public_url, features)
    except calls.CallError as exc:
        return wire.error(exc.function, exc.error, params)
    except DomainError as exc:  # unknown or revoked key
        return wire.error(None, exc, params)
    if not isinstance(outcome, AccessInfo):
        return JSONResponse(outcome)
    try:
        return JSONResponse(await database.read(calls.call_status_function, outcome, params, features))
    except DomainError as exc:
        return wire.error(outcome.function, exc, params)


@router.get(
    "/{project}/", summary="SoSci API URL and participant links", description=DOC, operation_id="project_root_get"
)
@router.post(
    "/{project}/",
    summary="SoSci API URL (parameters in a form or JSON body)",
    description=DOC,
    operation_id="project_root_post",
)
async def project_root(project: str, request: Request, database: DatabaseDep, settings: SettingsDep) -> Response:
    if not PROJECT_PATTERN.fullmatch(project):
        return page(404, *NOT_FOUND_PAGE)
    try:
        params = await merged_params(request)
    except DomainError as exc:
        if request.method == "GET" and "act" not in request.query_params:
            # A participant's browser (a mangled ?d= or ?s= link): the page, not the API's JSON.
            return page(404, *NOT_FOUND_PAGE)
        return wire.refused(400, exc.message, dict(request.query_params))
    try:
        if params.get("act"):
            return await call_api(database, settings.public_url, project, params["act"], params)
        if params.get("d"):
            return await open_link(request, database, project, params["d"], "personal")
        if params.get("s"):
            return await open_link(request, database, project, params["s"], "serial_code")
    except Exception as exc:
        # This one URL answers an API in JSON and people in pages, so it picks the renderer per request.
        return storage_failure(request, exc, wire.renderer(params) if params.get("act") else _participant_failure)
    return page(404, *NOT_FOUND_PAGE)


def _participant_failure(status: int, _message: str, _exc: DomainError | None = None) -> Response:
    """A participant link that failed in storage: the unavailable page, or (a value refused) the not-found one."""
    return page(503, *UNAVAILABLE_PAGE) if status == 503 else page(404, *NOT_FOUND_PAGE)


@fallback_router.get("/{project}", include_in_schema=False)
async def project_without_slash(project: str, request: Request) -> Response:
    """Links typed without the trailing slash still work."""
    if not PROJECT_PATTERN.fullmatch(project):
        return page(404, *NOT_FOUND_PAGE)
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/{project}/{query}", status_code=308)
