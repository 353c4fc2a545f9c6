"""PUBLIC_URL/unsubscribe?u=…: GET shows a confirmation button (link scanners must not unsubscribe anyone);
POST, from that button or a mail client's one-click (RFC 8058), suppresses the address for the workspace."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from invitelink.api.deps import DatabaseDep, SettingsDep
from invitelink.api.errors import family_route
from invitelink.families.participation import calls
from invitelink.families.participation.pages import NO_STORE, page, page_errors

router = APIRouter(tags=["participation"], route_class=family_route(page_errors("Unsubscribe")))
INVALID = ("Link not valid", "This unsubscribe link is not valid. Please use the link from your e-mail.")
Token = Annotated[str, Query(alias="u", max_length=64)]


@router.get("/unsubscribe", summary="Unsubscribe: confirmation page", response_class=HTMLResponse)
async def confirm(database: DatabaseDep, settings: SettingsDep, u: Token = "") -> Response:
    if not await database.read(calls.unsubscribe_link_valid, settings.server_secret, u):
        return page(404, *INVALID)
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Unsubscribe</title></head><body "
        'style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem">'
        "<h1>Unsubscribe</h1><p>Stop receiving survey invitations from this sender?</p>"
        f'<form method=post action="/unsubscribe?u={html.escape(u)}"><button type=submit>Unsubscribe</button></form>'
        "</body></html>"
    )
    return HTMLResponse(body, headers=NO_STORE)


# HEAD like GET: the confirmation page changes nothing. Not in the schema, where it would repeat GET's operation.
router.add_api_route("/unsubscribe", confirm, methods=["HEAD"], include_in_schema=False)


@router.post("/unsubscribe", summary="Unsubscribe (one-click, RFC 8058)", response_class=HTMLResponse)
async def unsubscribe_now(database: DatabaseDep, settings: SettingsDep, u: Token = "") -> Response:
    if not await database.write(calls.unsubscribe_now, settings.server_secret, u):
        return page(404, *INVALID)
    return page(200, "Unsubscribed", "You will not receive further invitations from this sender.")
