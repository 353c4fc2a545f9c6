"""Webhook endpoints of a workspace (admins manage them; every member may look): the ``whsec_`` signing secret is
shown at creation and rotation only, and the delivery log shows every attempt.

Creating an endpoint and changing its URL resolve the URL's host (to refuse private addresses) before any
transaction opens: they run as an async route that checks first and then hands a named use case to
``Database.write``, instead of inside the admin unit of work. On SQLite that unit of work holds the one writer, and
a slow DNS answer would hold every write of the process with it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, StringConstraints

from invitelink.api.admin.deps import Admin, CurrentPrincipal, Db, Limit
from invitelink.api.admin.errors import AdminRoute, render
from invitelink.api.admin.schemas import Input, Output, Page
from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route, idempotency_key, replayed
from invitelink.config import Settings
from invitelink.models import EVENT_TYPES, WebhookEndpoint, utcnow
from invitelink.outbound import check_url
from invitelink.services import idempotency, webhooks
from invitelink.services.pagination import DEFAULT_LIMIT

endpoints = APIRouter(prefix="/webhook-endpoints", tags=["webhooks"], route_class=AdminRoute)
# Create and URL changes: the admin error format, no unit of work (see the module's docstring).
checked = APIRouter(
    prefix="/webhook-endpoints", tags=["webhooks"], route_class=family_route(render, validation_status=422)
)

ENDPOINT_EXAMPLE: dict[str, Any] = {
    "id": 3,
    "url": "https://crm.example.org/hooks/invitelink",
    "event_types": ["participation.completed", "delivery.bounced"],
    "description": "CRM: completions and bounces",
    "enabled": True,
    "disabled_at": None,
    "disabled_reason": None,
    "failing_since": None,
    "previous_secret_expires_at": None,
    "created_at": "2026-05-18T14:00:00Z",
}
SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 (an example in the docs)
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No such endpoint in this workspace",
        "content": {"application/json": {"example": {"detail": "webhook endpoint not found"}}},
    }
}
REFUSED: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "A URL the service does not send to, or an unknown event type",
        "content": {
            "application/json": {
                "example": {
                    "detail": "url: localhost resolves to 127.0.0.1, which is loopback; only public addresses "
                    "receive webhooks",
                    "field": "url",
                }
            }
        },
    }
}
EVENT_TYPES_DOC = "Event types to receive; omitted or null: every type. Known types: " + ", ".join(
    f"`{t}`" for t in EVENT_TYPES
)
# Bounded like the column: a larger number is no id (and SQLite's driver cannot even bind it).
EndpointId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The endpoint's id.")]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
EventTypes = Annotated[list[Annotated[str, StringConstraints(max_length=40)]], Field(max_length=len(EVENT_TYPES))]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class EndpointIn(Input):
    url: Url = Field(
        description="Where events are POSTed: http(s), on a public address (checked now and at every send).",
        examples=["https://crm.example.org/hooks/invitelink"],
    )
    event_types: EventTypes | None = Field(
        default=None, description=EVENT_TYPES_DOC, examples=[["participation.completed", "delivery.bounced"]]
    )
    description: Description = Field(default="", examples=["CRM: completions and bounces"])


class EndpointPatch(Input):
    url: Url | None = Field(default=None, description="A new URL; messages still waiting go there too.")
    event_types: EventTypes | None = Field(
        default=None, description=EVENT_TYPES_DOC + " Given as null, every type; left out, unchanged."
    )
    description: Description | None = None
    enabled: bool | None = Field(
        default=None,
        description="true re-enables a disabled endpoint (its failure history is forgotten; messages failed while "
        "it was disabled stay failed); false disables it.",
    )


class EndpointOut(Output):
    model_config = ConfigDict(json_schema_extra={"examples": [ENDPOINT_EXAMPLE]})

    id: int
    url: str
    event_types: list[str] | None = Field(description="null: every event type.")
    description: str
    enabled: bool
    disabled_at: datetime | None = Field(
        description="Set when the endpoint was disabled: after failing for 3 days with no success, or by an admin."
    )
    disabled_reason: str | None = Field(examples=["failing since 2026-05-15 09:12 UTC: last answer HTTP 500"])
    failing_since: datetime | None = Field(description="First failure after the last success; null when healthy.")
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until when the previous secret signs too (a second signature)."
    )
    created_at: datetime


class EndpointSecret(EndpointOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**ENDPOINT_EXAMPLE, "secret": SECRET_EXAMPLE}]})

    secret: str = Field(
        description="The signing secret (`whsec_` + base64 key), as Standard Webhooks libraries take it. Shown "
        "here only; it is derived from the server secret, never stored."
    )


class AttemptOut(Output):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 41,
                    "message_id": 17,
                    "webhook_id": "msg_17",
                    "event_type": "participation.completed",
                    "attempt": 2,
                    "status_code": 500,
                    "error": "HTTP 500: upstream unavailable",
                    "duration_ms": 84,
                    "created_at": "2026-05-18T14:00:05Z",
                }
            ]
        }
    )

    id: int
    message_id: int
    webhook_id: str = Field(description="The `webhook-id` header the attempt carried (the same on every retry).")
    event_type: str
    attempt: int = Field(description="1 for the first attempt of the message.")
    status_code: int | None = Field(description="The endpoint's HTTP status; null when it did not answer.")
    error: str | None = Field(description="Why the attempt failed (the start of a non-2xx answer, or the error).")
    duration_ms: int
    created_at: datetime = Field(description="When the attempt began.")


class MessageOut(Output):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "webhook_id": "msg_17",
                    "event_id": 230,
                    "event_type": "participation.completed",
                    "status": "queued",
                    "attempts": 2,
                    "next_attempt_at": "2026-05-18T14:00:30Z",
                    "last_status_code": 500,
                    "last_error": "HTTP 500: upstream unavailable",
                    "delivered_at": None,
                    "created_at": "2026-05-18T14:00:00Z",
                }
            ]
        }
    )

    id: int
    webhook_id: str
    event_id: int
    event_type: str
    status: Literal["queued", "sending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a queued message is tried next.")
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    previous = endpoint.previous_secret_until
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        description=endpoint.description,
        enabled=endpoint.disabled_at is None,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        previous_secret_expires_at=previous if previous is not None and previous > utcnow() else None,
        created_at=endpoint.created_at,
    )


def with_secret(endpoint: WebhookEndpoint, settings: Settings) -> EndpointSecret:
    return EndpointSecret(
        **endpoint_out(endpoint).model_dump(), secret=webhooks.endpoint_secret(settings.server_secret, endpoint)
    )


@endpoints.get(
    "",
    response_model=Page[EndpointOut],
    summary="List webhook endpoints (never their secrets)",
    description="The workspace's endpoints, oldest first, with their health: `failing_since`, and `disabled_at` "
    "with `disabled_reason` once disabled.",
)
def list_endpoints(
    principal: CurrentPrincipal, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[EndpointOut]:
    page = webhooks.list_endpoints(db, principal.workspace_id, cursor, limit)
    return Page(items=[endpoint_out(e) for e in page.items], next_cursor=page.next_cursor)


@checked.post(
    "",
    response_model=EndpointSecret,
    status_code=201,
    summary="Create a webhook endpoint (admins); the signing secret is shown once",
    description="Every event of the workspace whose type the endpoint subscribes to is POSTed to `url` as JSON "
    "(`{type, timestamp, data}`), signed as Standard Webhooks says: headers `webhook-id` (`msg_…`, the same on "
    "every retry), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>` keyed "
    "with the base64 part of `secret`. A 2xx answer is a delivery; anything else is retried about 5 s, 30 s, 2 min, "
    "10 min, 30 min and 2 h after the first attempt, then every 6 h for 3 days. The host must resolve to public "
    "addresses only (400 otherwise); at most 20 endpoints per workspace (409).",
    responses=REFUSED,
)
async def create_endpoint(
    request: Request, body: EndpointIn, principal: Admin, database: DatabaseDep, settings: SettingsDep
) -> Response:
    keyed = await idempotency_key(request)
    credential = idempotency.credential_of(request.headers.get("authorization", ""))
    if keyed is not None:
        # A replay answers before the URL is resolved again: the first answer, whatever DNS says now.
        stored = await database.read(idempotency.replay, credential, keyed)
        if stored is not None:
            return replayed(stored)
    url = await check_url(body.url, allow_private=settings.webhook_allow_private)
    answer = await database.write(
        webhooks.create_endpoint_once,
        principal.workspace_id,
        url,
        body.event_types,
        body.description,
        (credential, keyed) if keyed is not None else None,
        lambda endpoint: with_secret(endpoint, settings).model_dump(mode="json"),
    )
    return replayed(answer) if answer.replayed else JSONResponse(answer.body, status_code=answer.status_code)


@endpoints.get(
    "/{endpoint_id}",
    response_model=EndpointOut,
    summary="Get a webhook endpoint",
    description="The endpoint and its health; a disabled endpoint says why in `disabled_reason`.",
    responses=ERRORS,
)
def get_endpoint(endpoint_id: EndpointId, principal: CurrentPrincipal, db: Db) -> EndpointOut:
    return endpoint_out(webhooks.get_endpoint(db, principal.workspace_id, endpoint_id))


@checked.patch(
    "/{endpoint_id}",
    response_model=EndpointOut,
    summary="Change a webhook endpoint, or re-enable it (admins)",
    description="Fields left out stay as they are. `event_types: null` subscribes to every type. "
    '`{"enabled": true}` re-enables a disabled endpoint and clears its failure history; `false` disables it '
    "(its waiting messages fail).",
    responses={**REFUSED, **ERRORS},
)
async def update_endpoint(
    endpoint_id: EndpointId, body: EndpointPatch, principal: Admin, database: DatabaseDep, settings: SettingsDep
) -> EndpointOut:
    fields: dict[str, Any] = {}
    if body.url is not None:
        fields["url"] = await check_url(body.url, allow_private=settings.webhook_allow_private)
    if "event_types" in body.model_fields_set:
        fields["event_types"] = body.event_types
    if body.description is not None:
        fields["description"] = body.description
    if body.enabled is not None:
        fields["enabled"] = body.enabled
    endpoint = await database.write(webhooks.update_endpoint, principal.workspace_id, endpoint_id, fields)
    return endpoint_out(endpoint)


@endpoints.delete(
    "/{endpoint_id}",
    status_code=204,
    summary="Delete a webhook endpoint (admins)",
    description="With its waiting messages and its delivery log; nothing more is sent to it.",
    responses=ERRORS,
)
def delete_endpoint(endpoint_id: EndpointId, principal: Admin, db: Db) -> Response:
    webhooks.delete_endpoint(db, principal.workspace_id, endpoint_id)
    return Response(status_code=204)


@endpoints.post(
    "/{endpoint_id}/secret",
    response_model=EndpointSecret,
    summary="Rotate the signing secret (admins); the new one is shown once",
    description="From now on messages carry two signatures in `webhook-signature` (space-separated): one with the "
    "new secret and, for 24 hours, one with the previous secret, so receivers can switch without losing a "
    "message. A second rotation within those 24 hours drops the oldest secret.",
    responses=ERRORS,
)
def rotate_secret(endpoint_id: EndpointId, principal: Admin, db: Db, settings: SettingsDep) -> EndpointSecret:
    endpoint = webhooks.get_endpoint(db, principal.workspace_id, endpoint_id)
    webhooks.rotate_secret(db, endpoint)
    return with_secret(endpoint, settings)


@endpoints.get(
    "/{endpoint_id}/attempts",
    response_model=Page[AttemptOut],
    summary="The endpoint's delivery log, newest first",
    description="One item per attempt: the message and its `webhook-id`, the event type, the attempt number, the "
    "endpoint's status code (null: no answer), the error, and how long it took.",
    responses=ERRORS,
)
def list_attempts(
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    db: Db,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AttemptOut]:
    endpoint = webhooks.get_endpoint(db, principal.workspace_id, endpoint_id)
    page = webhooks.list_attempts(db, endpoint, cursor, limit)
    return Page(
        items=[AttemptOut(**row.__dict__, webhook_id=webhooks.webhook_id(row.message_id)) for row in page.items],
        next_cursor=page.next_cursor,
    )


@endpoints.get(
    "/{endpoint_id}/messages",
    response_model=Page[MessageOut],
    summary="The endpoint's messages, newest first",
    description="One item per event sent (or to be sent) to the endpoint: `queued` (waiting for its next attempt, "
    "`next_attempt_at`), `sending`, `delivered`, or `failed` (given up after 3 days, or the endpoint was disabled). "
    "`?status=` shows one status only.",
    responses=ERRORS,
)
def list_messages(
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    db: Db,
    status: Literal["queued", "sending", "delivered", "failed"] | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[MessageOut]:
    endpoint = webhooks.get_endpoint(db, principal.workspace_id, endpoint_id)
    page = webhooks.list_messages(db, endpoint, status, cursor, limit)
    items = []
    for row in page.items:
        fields = row.__dict__ | {"webhook_id": webhooks.webhook_id(row.id)}
        due = fields.pop("due_at")
        fields["next_attempt_at"] = due if row.status == "queued" else None
        items.append(MessageOut(**fields))
    return Page(items=items, next_cursor=page.next_cursor)


# What the admin API includes: both, each route keeping its route class.
router = APIRouter()
router.include_router(endpoints)
router.include_router(checked)
