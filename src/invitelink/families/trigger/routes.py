"""The Survey.is-style trigger endpoint: POST PUBLIC_URL/api/invitation-trigger, body ``{ok, …}`` always."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route, idempotency_key, replayed
from invitelink.api.params import FORM_TYPES, bearer, content_type, form_fields, json_object, read_form, reject_nul
from invitelink.config import Settings
from invitelink.families.trigger import calls
from invitelink.models import utcnow
from invitelink.services.errors import DomainError, InvalidInput


def render_error(status: int, message: str, _exc: DomainError | None = None) -> Response:
    """The trigger API's error body, ``{"ok": false, "error": …}``, whatever the status."""
    return JSONResponse({"ok": False, "error": message}, status_code=status)


router = APIRouter(tags=["trigger API"], route_class=family_route(render_error))
PATH = "/api/invitation-trigger"

EXAMPLES = {
    "single": {
        "summary": "Single recipient",
        "value": {
            "email": "person@example.com",
            "name": "Pat",
            "reminder_days": 3,
            "metadata": {"source_id": "evt_12345", "customer_tier": "starter"},
        },
    },
    "multiple": {
        "summary": "Multiple recipients, scheduled",
        "value": {
            "emails": [{"email": "alex@example.com", "name": "Alex"}, {"email": "sam@example.com", "name": "Sam"}],
            "send_at": "2026-05-18 14:00:00 UTC",
            "metadata": {"campaign": "post-demo"},
        },
    },
}


async def _body(request: Request, limits: calls.Limits) -> dict[str, Any]:
    """The JSON object (or form fields) of the request; an empty body is an empty object.

    Form fields are read as PHP's ``http_build_query`` writes a JSON-like array (``emails[0][email]=…``,
    ``metadata[key]=…``), which is how PHP integrations post when they do not send JSON; ``emails`` given
    several times is a list too."""
    if content_type(request) in FORM_TYPES:
        # Each recipient may take two fields (email and name); the rest is metadata and the other fields.
        form = await read_form(request, max_fields=2 * limits.max_recipients + 1000)
        fields = form_fields(((k, v) for k, v in form.multi_items() if isinstance(v, str)), lists=("emails",))
        reject_nul(fields)
        return fields
    return json_object(await request.body())


def _secret(request: Request, body: dict[str, Any]) -> str | None:
    """Bearer header first, then ``token`` / ``secret`` in the query string, then in the body."""
    header = bearer(request)
    if header is not None:
        return header
    for source in (request.query_params, body):
        for key in ("token", "secret"):
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def limits_of(settings: Settings) -> calls.Limits:
    return calls.Limits(
        max_recipients=settings.trigger_max_recipients,
        batches_per_minute=settings.trigger_flood_batches_per_minute,
        recipients_per_hour=settings.trigger_flood_recipients_per_hour,
    )


@router.post(
    PATH,
    summary="Queue an invitation batch (API trigger)",
    description=(
        "Authenticate with `Authorization: Bearer sit_…` (or `token` / `secret` in the query string or body). "
        "Send `email` (one recipient, optional `name`) or `emails` (addresses or `{email, name}` objects; `name` "
        "next to `emails` names every recipient that has no name of its own); "
        "optional `metadata` (JSON object), `subject`, `message` (templates: `{{recipient_name}}`, "
        "`{{workspace_name}}`, `{{survey_title}}`, `{{survey_link}}`), `reminder_days` (0 disables), and one of "
        "`send_in_seconds` or `send_at` (`now` or a UTC date/time). Omitted fields take the token's defaults.\n\n"
        "The body is JSON, or a form (`application/x-www-form-urlencoded` or `multipart/form-data`) with the same "
        "fields in PHP's `http_build_query` notation: `emails[0]=a@example.com&emails[1]=b@example.com`, "
        "`emails[0][email]=…&emails[0][name]=…`, `metadata[source_id]=evt_1` (form values are strings).\n\n"
        "Limits (400 beyond them): 1,000 recipients per call (`INVITELINK_TRIGGER_MAX_RECIPIENTS`), metadata "
        "4 KiB as JSON, subject 300 and message 20,000 characters, names 200, scheduling at most 365 days ahead. "
        "Flood protection per token (429 with `Retry-After`): 60 batches per minute and 20,000 recipients per "
        "hour by default; the token's cooldown likewise.\n\n"
        "Errors: `{ok: false, error}` with 400 (invalid request, missing or unknown token, invalid recipient, "
        "both timing fields, unparseable time, closed survey or disabled workspace), 405 (methods other than "
        "POST), 429, 503 (database not ready). A draft survey accepts batches; they wait until it is active."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "examples": EXAMPLES}},
        }
    },
    responses={
        200: {
            "description": "The queued batch.",
            "content": {
                "application/json": {
                    "example": {
                        "ok": True,
                        "message": "Invitation queued.",
                        "batch": {"uuid": "6f1c…", "scheduled_at": "2026-05-18 14:00:00", "status": "queued"},
                    }
                }
            },
        },
        400: {
            "description": "Invalid request",
            "content": {"application/json": {"example": {"ok": False, "error": "…"}}},
        },
        429: {"description": "Cooldown or flood protection; see Retry-After"},
        503: {"description": "Database not ready"},
    },
)
async def invitation_trigger(request: Request, database: DatabaseDep, settings: SettingsDep) -> Response:
    limits = limits_of(settings)
    body = await _body(request, limits)
    # Validated here, outside the (on SQLite single) writer.
    parsed: calls.TriggerRequest | InvalidInput
    try:
        parsed = calls.parse_request(body, limits, utcnow())
    except InvalidInput as exc:
        parsed = exc
    keyed = await idempotency_key(request, always=True)
    # A database that cannot serve becomes 503 with Retry-After in the route class (api/errors.py).
    answer = await database.write(calls.trigger, _secret(request, body), parsed, limits, keyed)
    return replayed(answer) if answer.replayed else JSONResponse(answer.body, status_code=answer.status_code)


@router.api_route(PATH, methods=["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], include_in_schema=False)
async def wrong_method(request: Request) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error": f"method {request.method} not allowed; use POST"},
        status_code=405,
        headers={"Allow": "POST"},
    )
