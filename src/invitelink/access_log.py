"""One access-log line per request, written by this middleware instead of uvicorn's (whose lines carry full URLs:
API keys in ``?act=``, token codes in ``?d=``), the request counters of /metrics, and the request id (the caller's
``X-Request-ID`` when it is sane, else a new one: on the answer and on every log line of the request), all in one
pass: each ASGI layer costs the hot path its own wrapping of send.

The line names the method, the path and query with every secret value replaced, the status, the duration, the API
family and (through the logging filter) the request id. Headers are never logged, so neither is Authorization."""

from __future__ import annotations

import logging
import re
from time import perf_counter
from uuid import uuid4

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invitelink import metrics
from invitelink.logs import correlation_id, request_id_is_sane

log = logging.getLogger("invitelink.access")

REDACTED = "***"
# Query parameters whose values are credentials, token codes, signatures or a participant's address: the SoSci
# key (act) and link codes (d, s), the questionnaire's and the end page's token, the unsubscribe link (u), the
# supplier entry's signature and ids (security_code, sid, PID), and the generic names a client may add.
SECRET_PARAMS = frozenset(
    {"act", "d", "s", "token", "secret", "u", "security_code", "sid", "pid", "key", "hmac", "signature", "code"}
    | {"password", "email", "mobile"}
)
# A path segment "looks like a token" when it carries a credential prefix, or is a long run of letters and digits
# with both in it (token codes, keys); slugs with hyphens and plain numeric ids stay readable.
SECRET_PREFIXES = ("sit_", "ilk_", "scb_", "whsec_", "r4i_")
TOKEN_LIKE = re.compile(r"^(?=[A-Za-z0-9_]*\d)(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9_]{12,}$")


def redact_path(path: str) -> str:
    return "/".join(
        REDACTED if segment.lower().startswith(SECRET_PREFIXES) or TOKEN_LIKE.match(segment) else segment
        for segment in path.split("/")
    )


def redact_query(query: str) -> str:
    """The query string as sent, with the value of every secret parameter replaced (names compared without case),
    and of any other parameter whose value looks like a token: a client may name its parameters as it likes."""
    parts = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        secret = name.lower() in SECRET_PARAMS or value.lower().startswith(SECRET_PREFIXES) or TOKEN_LIKE.match(value)
        parts.append(f"{name}={REDACTED}" if secret and sep else pair)
    return "&".join(parts)


def redacted_target(path: str, query: str) -> str:
    path = redact_path(path)
    return f"{path}?{redact_query(query)}" if query else path


class RequestLog:
    """Pure ASGI (no BaseHTTPMiddleware: it would cost a task per request on the create_link hot path)."""

    def __init__(self, app: ASGIApp, *, write_lines: bool = True) -> None:
        self.app = app
        # The line costs about a tenth of create_link's throughput on 2 cores (bench/sosci_create_link.py):
        # INVITELINK_ACCESS_LOG=false leaves it out (the request counters of /metrics stay).
        self.write_lines = write_lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = _request_id(scope["headers"])
        bound = correlation_id.set(request_id)
        # An exception raised through here becomes Starlette's 500 further out: count and log it as one.
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            seconds = perf_counter() - start
            path: str = scope["path"]
            family = metrics.family_label(path)
            metrics.observe_request(family, status, seconds)
            if self.write_lines and log.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                target = redacted_target(path, query)
                duration_ms = round(seconds * 1000, 1)
                log.info(
                    "%s %s %d %.1f ms %s",
                    scope["method"],
                    target,
                    status,
                    duration_ms,
                    family,
                    extra={
                        "method": scope["method"],
                        "path": target,
                        "status": status,
                        "duration_ms": duration_ms,
                        "family": family,
                    },
                )
            correlation_id.reset(bound)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            caller = value.decode("latin-1")
            return caller if request_id_is_sane(caller) else uuid4().hex
    return uuid4().hex
