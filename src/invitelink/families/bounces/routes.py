"""POST PUBLIC_URL/api/v1/bounces: an operator pipes the delivery status notifications their MTA receives here."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route
from invitelink.api.params import bearer
from invitelink.families.bounces import calls, dsn
from invitelink.security import constant_time_equal
from invitelink.services.errors import DomainError, InvalidInput, Unauthorized

PATH = "/api/v1/bounces"


def render_error(status: int, message: str, _exc: DomainError | None = None) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


router = APIRouter(tags=["bounces"], route_class=family_route(render_error))

DSN_EXAMPLE = """From: MAILER-DAEMON@mx.example.org
To: noreply@survey.example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

The mail system could not deliver your message.
--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; pat@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown
--b
Content-Type: text/rfc822-headers

Message-ID: <il.42.0.abc123def456@survey.example.org>
Subject: Your survey invitation
--b--
"""


@router.post(
    PATH,
    status_code=202,
    summary="Report a bounce: a delivery status notification (RFC 3464) as received",
    description="For operators: pipe the bounces your mail server receives here (e.g. a Postfix `pipe` transport "
    "or an alias running curl), with `Authorization: Bearer <INVITELINK_BOUNCE_SECRET>` and the raw message as "
    "body (`Content-Type: message/rfc822`). The delivery whose `Message-ID` the notification quotes becomes "
    "`bounced` (an event `delivery.bounced` is recorded and pushed); a permanent failure (status 5.x.x) puts the "
    "address on the workspace's suppression list. Reporting the same bounce again changes nothing; a notification of "
    "a delay or of a delivery is accepted and ignored (`status: ignored`).\n\n"
    "202 `{ok: true, delivery_id, status, permanent, suppressed}`; 401 without the secret (or when no secret is "
    "configured); 400 for a body that is not a delivery status notification; 404 when no delivery sent the quoted "
    "message. Errors: `{ok: false, error}`.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"message/rfc822": {"schema": {"type": "string"}, "example": DSN_EXAMPLE}},
        }
    },
)
async def report_bounce(request: Request, database: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    presented = bearer(request)
    if not settings.bounce_secret or presented is None or not constant_time_equal(presented, settings.bounce_secret):
        raise Unauthorized("send Authorization: Bearer <INVITELINK_BOUNCE_SECRET>")
    try:
        bounce = dsn.parse(await request.body())
    except dsn.NotABounce as exc:
        # Accepted, so the mail server's pipe does not retry or bounce it back: there is just nothing to do.
        return JSONResponse({"ok": True, "status": "ignored", "detail": str(exc)}, status_code=202)
    except dsn.NotADsn as exc:
        raise InvalidInput(str(exc)) from exc
    return JSONResponse(await database.write(calls.record_bounce, bounce), status_code=202)
