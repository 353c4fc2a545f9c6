"""The R4I-style supply API: POST PUBLIC_URL/{sandbox|production}/v1/{endpoint}, and the entry link
/survey/letdosurvey that its generated survey links point to."""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route, idempotency_key, replayed
from invitelink.api.params import bearer, json_object
from invitelink.config import Settings
from invitelink.db import Database
from invitelink.families.participation.pages import END_PAGES, INCOMPLETE_PAGE, NO_STORE, NOT_FOUND_PAGE, page
from invitelink.families.supply import calls, entry
from invitelink.rate_limits import RateLimits
from invitelink.security import digest
from invitelink.services import idempotency
from invitelink.services.errors import DomainError, NotFound, Unauthorized

ENVIRONMENTS = ("sandbox", "production")
SUCCESS = "Request processed successfully"
DESCRIPTIONS = {
    "allocated_survey": "Active surveys allocated to you, with limits (page, per_page).",
    "get_survey_by_id": "One allocated survey with its targeting questions (survey_id).",
    "survey_by_date": "Allocated surveys created or active on a date (date: YYYY-MM-DD); at most 1,000.",
    "get_industries": "The industry list.",
    "get_redirects": "Your redirect URLs (supplier_id, email).",
    "view_participants": "Your registered participants (supplier_id, page, per_page).",
    "survey_stats": "Aggregate statistics of all your traffic (supplier_id).",
    "survey_stats_by_id": "Participations in one survey (supplier_id, project_id, page, per_page).",
    "survey_stats_by_participant": "One participant's participations (supplier_id, participant_id, page, per_page).",
    "add_participant": "Register or update a participant (supplier_id, pid, profile).",
    "generate_survey_url": "A signed survey link for an allocated survey (survey_id, supplier_id): `data` is "
    "`{survey_link, security_code}`, the code being the one the link carries; replace [%%pid%%] with the PID.",
}
ENDPOINTS = tuple(DESCRIPTIONS)


class KnownKeys:
    """(environment, key digest) of supplier keys this process saw accepted lately, the least recent forgotten
    beyond ``size``: only keys that authenticated get in, so random bearer values never take room here."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    @classmethod
    def of(cls, request: Request) -> KnownKeys:
        """The app's set, made on first use: the family keeps its own state on the app."""
        state = request.app.state
        known: KnownKeys | None = getattr(state, "known_supplier_keys", None)
        if known is None:
            known = state.known_supplier_keys = cls()
        return known

    def __contains__(self, seen: object) -> bool:
        return seen in self._keys

    def add(self, seen: tuple[str, str]) -> None:
        self._keys[seen] = None
        self._keys.move_to_end(seen)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def discard(self, seen: tuple[str, str]) -> None:
        self._keys.pop(seen, None)


def render_error(status: int, message: str, _exc: DomainError | None = None) -> Response:
    """The supply API's error body, ``{"apiStatus": "error", "msg": …, "result": null}``."""
    return JSONResponse({"apiStatus": "error", "msg": message, "result": None}, status_code=status)


router = APIRouter(route_class=family_route(render_error))


async def _call(request: Request, database: Database, settings: Settings, environment: str, endpoint: str) -> Response:
    key = bearer(request)
    body = json_object(await request.body())
    # The rate limit counts only keys that are valid: anything else is a 401 here and leaves no state behind, so
    # random bearer values cannot fill the limiter. For reading endpoints, a key this process saw accepted lately
    # skips that separate check: the endpoint's own read authenticates it again (a revoked key still gets 401).
    # A write first looks for a stored answer to replay, which must not be given out before the key is checked.
    known = KnownKeys.of(request)
    seen = (environment, digest(key)) if key else None
    if seen is None or seen not in known or endpoint in calls.WRITES:
        await database.read_hot(calls.authenticate, key, environment)
    assert key is not None and seen is not None  # authenticate refused a missing key
    known.add(seen)
    try:
        return await _authenticated_call(request, database, settings, environment, endpoint, key, body)
    except Unauthorized:
        known.discard(seen)
        raise


async def _authenticated_call(
    request: Request,
    database: Database,
    settings: Settings,
    environment: str,
    endpoint: str,
    key: str,
    body: dict[str, Any],
) -> Response:
    keyed = await idempotency_key(request) if endpoint in calls.WRITES else None
    if keyed is not None:
        # A replay is not a new call: answered before the limit counts it. (The write looks again, in its own
        # transaction, for a first call that commits meanwhile; the credential is the one call_write records.)
        credential = idempotency.credential_of(f"supplier-key:{key}")
        if (stored := await database.read_hot(idempotency.replay, credential, keyed)) is not None:
            return replayed(stored)
    limits: RateLimits = request.app.state.rate_limits
    await limits.hit(limits.rules.supply, digest(key))
    if endpoint == "generate_survey_url":
        data = await database.read_hot(
            calls.call_generate_survey_url, key, environment, body, settings.public_url, settings.server_secret
        )
        return JSONResponse({"status": "success", "message": "Survey link generated successfully", "data": data})
    if endpoint in calls.WRITES:
        answer = await database.write(calls.call_write, key, environment, endpoint, body, keyed)
        return replayed(answer) if answer.replayed else JSONResponse(answer.body, status_code=answer.status_code)
    read = database.read_hot if endpoint in calls.HOT_READS else database.read
    data = await read(calls.call, key, environment, endpoint, body)
    return JSONResponse({"status": "success", "message": SUCCESS, "data": data})


def _register(environment: str, endpoint: str, description: str) -> None:
    async def endpoint_handler(request: Request, database: DatabaseDep, settings: SettingsDep) -> Response:
        return await _call(request, database, settings, environment, endpoint)

    router.add_api_route(
        f"/{environment}/v1/{endpoint}",
        endpoint_handler,
        methods=["POST"],
        name=f"{environment}_{endpoint}",
        summary=endpoint,
        description=f"{description}\n\n`Authorization: Bearer "
        f"{'R4I_TEST_' if environment == 'sandbox' else 'R4I_LIVE_'}…`; JSON body. Success: "
        '`{"status": "success", "message": …, "data": …}`. Errors: `{"apiStatus": "error", "msg": …, '
        '"result": null}` with 400, 401, 403, 404, 405, 429. The endpoint written with doubled or trailing '
        f"slashes (`/{environment}/v1//{endpoint}`, `/{environment}/v1/{endpoint}/`) is served alike.",
        tags=[f"supplier API ({environment})"],
    )


for _environment in ENVIRONMENTS:
    for _name, _description in DESCRIPTIONS.items():
        _register(_environment, _name, _description)


def endpoint_of(rest: str) -> str | None:
    """The endpoint a path below ``/{environment}/`` names, read past doubled and trailing slashes: clients join
    the base URL, which ends in "/", to "/allocated_survey", or add a slash of their own."""
    parts = [part for part in rest.split("/") if part]
    return parts[1] if len(parts) == 2 and parts[0] == "v1" and parts[1] in ENDPOINTS else None


def _register_fallback(environment: str) -> None:
    async def other(request: Request, rest: str, database: DatabaseDep, settings: SettingsDep) -> Response:
        """Whatever no endpoint's own route matched under /{environment}/: an endpoint written with extra slashes
        is served as that endpoint; another method on an endpoint is 405 with Allow; anything else 404, all in
        the API's error body."""
        endpoint = endpoint_of(rest)
        if endpoint is not None and request.method == "POST":
            return await _call(request, database, settings, environment, endpoint)
        if endpoint is not None:
            return JSONResponse(
                {"apiStatus": "error", "msg": f"Method {request.method} not allowed; use POST", "result": None},
                status_code=405,
                headers={"Allow": "POST"},
            )
        unknown = rest.removeprefix("v1/").strip("/")
        raise NotFound(f"Unknown endpoint: {unknown or '(none)'}")

    router.add_api_route(
        f"/{environment}/{{rest:path}}",
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
    "the limit to its quotafull redirect. `HEAD` is answered like `GET` without the body, and like it admits the "
    "PID and counts the click (a link checker's HEAD is an entry, as its GET would be).",
    response_class=RedirectResponse,
    status_code=302,
)
async def letdosurvey(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    sid: Annotated[str, Query(max_length=400)] = "",
    security_code: Annotated[str, Query(max_length=100)] = "",
    pid: Annotated[str, Query(alias="PID", max_length=400)] = "",
) -> Response:
    ip = request.client.host if request.client else None
    outcome = await database.write_hot(
        entry.enter, settings.server_secret, sid, security_code, pid, ip, request.headers.get("user-agent")
    )
    if outcome.url is not None:
        return RedirectResponse(outcome.url, status_code=302, headers=NO_STORE)
    if outcome.page == "bad_pid":
        return page(400, *INCOMPLETE_PAGE)
    if outcome.page == "missing":
        return page(404, *NOT_FOUND_PAGE)
    return page(200, *END_PAGES[outcome.page or "security"])


# HEAD like GET (uvicorn sends no body for it); not in the schema, where it would repeat GET's operation.
router.add_api_route("/survey/letdosurvey", letdosurvey, methods=["HEAD"], include_in_schema=False)
