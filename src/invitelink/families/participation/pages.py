"""The pages participants see in their browser. They never show participant data."""

from __future__ import annotations

import html

from fastapi import Response
from fastapi.responses import HTMLResponse

from invitelink.api.errors import Renderer
from invitelink.services.errors import DomainError

# Links are credentials: keep them out of referrers and shared caches.
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

NOT_FOUND_PAGE = ("Link not found", "This survey link is not valid. Please check that you copied it completely.")
UNAVAILABLE_PAGE = (
    "Please try again shortly",
    "This survey link cannot be opened right now. Please try again in a minute; your link stays valid.",
)
CLOSED_PAGE = ("Survey not available", "This survey is not open at the moment. Thank you for your interest.")
INCOMPLETE_PAGE = ("Link incomplete", "This survey link has no participant id. Please use the link you were sent.")
END_PAGES = {
    "completed": ("Thank you!", "Your answers have been recorded."),
    "terminated": ("Thank you", "Thank you for your time. This survey is not a match for you this time."),
    "quotafull": ("Thank you", "Thank you for your interest. This survey has received enough answers."),
    "security": ("Thank you", "Your participation has ended."),
}


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


def page_errors(title: str) -> Renderer:
    """Errors of routes that people open in a browser (or a mail client posts to): pages titled ``title``, not
    JSON."""

    def render(status: int, message: str, _exc: DomainError | None = None) -> Response:
        return page(status, UNAVAILABLE_PAGE[0] if status == 503 else title, message)

    return render
