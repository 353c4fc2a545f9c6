"""PUBLIC_URL/{project}/: the SoSci API URL (?act=), and the participant links (?d=, ?s=) that share its URL."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import READ_METHODS, storage_failure
from invitelink.api.params import merged_params
from invitelink.db import Database
from invitelink.families.participation.pages import NOT_FOUND_PAGE, UNAVAILABLE_PAGE, page
from invitelink.families.participation.routes import open_link
from invitelink.families.sosci import calls, wire
from invitelink.rate_limits import RateLimits
from invitelink.services.api_accesses import INVALID_KEY, AccessInfo
from invitelink.services.errors import DomainError, NotFound, RateLimited
from invitelink.services.identity import Features
from invitelink.services.surveys import PROJECT_PATTERN, RESERVED_PROJECTS

router = APIRouter(tags=["sosci mailing API"])
# The slash-less URL matches every one-segment path (/healthz, /docs, …), so it is included after every
# other route; ``router`` itself only matches "/<segment>/", which no other route of the service has (a test
# checks that), so it is included first and the hot create_link path skips matching the admin API's routes.
fallback_router = APIRouter(tags=["sosci mailing API"])

# What this URL reads. Anything else in the query or the body is ignored unread (api/params.merged_params).
PARAMETERS = frozenset({"act", "email", "mobile", "uid", "serial", "d", "s"})
ALLOW = "GET, HEAD, POST"

DOC = """One URL per survey project, as SoSci Survey has it.

* `?act=<key>`: the **mailing API**. The key belongs to an API access (admin API) with one function:
  `create_link` and `send_mail` take `email`, `mobile` (international, normalised to E.164) or `uid` (printable
  ASCII) and answer `{"result": "ok", "token", "url", "error": null}`; `serial_status` takes `serial`;
  `address_status` takes any of `serial`, `email`, `mobile`, `uid`. Parameters may come in the query string, a
  form body or a JSON body; other fields are ignored, whatever their type. Errors: `{"result": "error",
  "error": "…", …}` (link functions add `"url": null`, `serial_status` the `code`, `address_status` the four
  search parameters) with 400 (bad request), 404 (unknown key, not found) or 405 (another method).
* `send_mail` is limited per API key (flood protection; by default 600 calls a minute and 20,000 an hour, README
  "Rate limits"): over it, 429 with `Retry-After` (seconds) and the link functions' error body,
  `{"result": "error", "error": "flood protection: …", "url": null}`. `create_link` is not limited.
* `address_status` lists each mailing attempted or queued for the contact as `M{id}`. `sendTime` (`YYYY-MM-DD`,
  UTC) is the day the message was sent; for a message not sent it is the day it is or was due: when it is
  queued, the day it will go out; when it was skipped (no address for the channel, an unsubscribed address) or
  failed, the day the sending fell due and was decided.
* `?d=<token>`: a personal link; `?s=<code>`: a serial-code link. Both record the click and redirect to the
  questionnaire (404 page for an unknown link, 410 while the survey is draft or closed).
* The project part of the URL is matched regardless of case (`/Shop-Study/` is `/shop-study/`: projects are
  lower case). The URL without the slash before the `?` (`/shop-study?act=…`) is served alike, a POST body
  included; a participant link without it is redirected (308) to the URL with it.
* `HEAD` is answered like `GET` without the body, and does what that `GET` does: a `create_link` or `send_mail`
  call creates the contact and link (and queues the mail) as a `GET` would, idempotently, and a participant link
  counts as opened.
* A database that cannot serve gives 503 with `Retry-After` (the error body, or a page for participant links)."""


async def call_api(
    database: Database, limits: RateLimits, public_url: str, project: str, key: str, params: dict[str, str]
) -> Response:
    """Resolve the key and run its function; errors are the function's error bodies with 400, 404 or 429.

    Link functions run as one job through the write seam's hot path (group commit), the key lookup included.
    Status functions only read, through the batch reader (a few indexed statements each). send_mail, when its
    flood limit is on, takes two jobs: the key is resolved, the call counted against the key's limit (rate_limits:
    Redis when configured, so the limit holds across instances), then the contact, link and mail are written.
    Counting runs between the jobs because it may wait on Redis, which must never happen inside the single
    writer."""
    # Parsed here, outside the single SQLite writer; an error is reported once the key (and so the function
    # whose error body to use) is known.
    features: Features | DomainError
    try:
        features = Features.parse(params.get("email"), params.get("mobile"), params.get("uid"))
    except DomainError as exc:
        features = exc
    limited = limits.rules.send_mail_minute is not None or limits.rules.send_mail_hour is not None
    try:
        outcome = await database.write_hot(calls.call_link_function, project, key, public_url, features, limited)
        if isinstance(outcome, AccessInfo) and outcome.function == "send_mail" and isinstance(features, Features):
            access = str(outcome.id)
            await limits.hit_all((limits.rules.send_mail_minute, access), (limits.rules.send_mail_hour, access))
            outcome = await database.write_hot(calls.call_send_mail, outcome, public_url, features)
    except calls.CallError as exc:
        return wire.error(exc.function, exc.error, params)
    except RateLimited as exc:
        return wire.error("send_mail", exc, params)
    except DomainError as exc:  # unknown or revoked key
        return wire.error(None, exc, params)
    if not isinstance(outcome, AccessInfo):
        return JSONResponse(outcome)
    try:
        return JSONResponse(await database.read_hot(calls.call_status_function, outcome, params, features))
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
    try:
        params = await merged_params(request, PARAMETERS)
    except DomainError as exc:
        if request.method in READ_METHODS and "act" not in request.query_params:
            # A participant's browser (a mangled ?d= or ?s= link): the page, not the API's JSON.
            return page(404, *NOT_FOUND_PAGE)
        return wire.refused(400, exc.message, {k: v for k, v in request.query_params.items() if k in PARAMETERS})
    # Projects are stored in lower case (PROJECT_PATTERN allows nothing else), so a URL typed or templated in
    # another case names exactly one project, or none.
    project = project.lower()
    if not PROJECT_PATTERN.fullmatch(project):
        # No project can have this name. An API caller still gets the API's JSON error, a browser the page.
        return wire.error(None, NotFound(INVALID_KEY), params) if params.get("act") else page(404, *NOT_FOUND_PAGE)
    try:
        if params.get("act"):
            limits: RateLimits = request.app.state.rate_limits
            return await call_api(database, limits, settings.public_url, project, params["act"], params)
        if params.get("d"):
            return await open_link(request, database, project, params["d"], "personal")
        if params.get("s"):
            return await open_link(request, database, project, params["s"], "serial_code")
    except Exception as exc:
        # This one URL answers an API in JSON and people in pages, so it picks the renderer per request.
        return storage_failure(request, exc, wire.renderer(params) if params.get("act") else _participant_failure)
    return page(404, *NOT_FOUND_PAGE)


# HEAD like GET (uvicorn sends no body for it). Not in the schema: one operation per method would repeat GET's.
router.add_api_route("/{project}/", project_root, methods=["HEAD"], include_in_schema=False)


@router.api_route("/{project}/", methods=["PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False)
async def project_root_other_methods(request: Request) -> Response:
    """The API's error body for any other method, so a client reading ``result``/``error`` still finds them."""
    params = {k: v for k, v in request.query_params.items() if k in PARAMETERS}
    response = wire.refused(405, f"method {request.method} not allowed; use GET or POST", params)
    response.headers["Allow"] = ALLOW
    return response


def _participant_failure(status: int, _message: str, _exc: DomainError | None = None) -> Response:
    """A participant link that failed in storage: the unavailable page, or (a value refused) the not-found one."""
    return page(503, *UNAVAILABLE_PAGE) if status == 503 else page(404, *NOT_FOUND_PAGE)


@fallback_router.api_route("/{project}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
async def project_without_slash(
    project: str, request: Request, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """The URL without the slash before the ``?``. API calls are served here as at ``/{project}/``: clients build
    ``/{project}?act=…`` by hand, and a redirect would lose a POST's body with many of them (not every client
    follows a 308 with the body). A participant's browser is redirected to the URL with the slash."""
    name = project.lower()
    a_project = name not in RESERVED_PROJECTS and PROJECT_PATTERN.fullmatch(name) is not None
    if request.query_params.get("act") or (request.method == "POST" and a_project):
        return await project_root(project, request, database, settings)
    if request.method == "POST" or (request.method == "HEAD" and not a_project):
        # A one-segment path of the service itself (/healthz, /docs, …), or no project at all: as if this route
        # did not exist, the method is not allowed there.
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": "GET"})
    if not PROJECT_PATTERN.fullmatch(name):
        return page(404, *NOT_FOUND_PAGE)
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/{name}/{query}", status_code=308)
