"""A client that trickles its request body is cut off with 408 after the read timeout, in its family's format, and
the server goes on serving others meanwhile."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Message

from invitelink.api.errors import Renderer
from invitelink.limits import BodySizeLimit
from invitelink.services.errors import DomainError
from tests.live_server import live_server


def test_a_stalled_body_gets_408_and_others_are_served(db_url: str, tmp_path: Path) -> None:
    with live_server(db_url, tmp_path, INVITELINK_BODY_READ_TIMEOUT_SECONDS="1") as live:
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as slow:
            slow.sendall(
                b"POST /api/invitation-trigger HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n"
                b'{"email": '  # and then nothing more
            )
            started = time.monotonic()
            # Meanwhile the service answers everyone else.
            assert httpx.get(f"{live.base}/healthz", timeout=5).status_code == 200
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
            waited = time.monotonic() - started
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert json.loads(body) == {
            "ok": False,
            "error": "the request body did not arrive within 1 seconds; send it at once",
        }
        assert 0.8 < waited < 5, waited


def test_a_streamed_answer_outlasts_the_read_timeout() -> None:
    """The timeout covers the body's arrival only. A streamed answer (a CSV export) listens for the client leaving
    for as long as it streams; that wait must not be cut off as a slow body (it truncated exports after 30 s)."""

    async def rows() -> AsyncIterator[bytes]:
        for number in range(3):
            await asyncio.sleep(0.3)
            yield f"row {number}\n".encode()

    def plain(status: int, message: str, _exc: DomainError | None = None) -> Response:
        return PlainTextResponse(message, status_code=status)

    def render(_path: str) -> Renderer:
        return plain

    app = BodySizeLimit(StreamingResponse(rows()), default=1000, overrides={}, render=render, read_timeout=0.2)
    scope: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "method": "GET"}
    scope |= {"path": "/x", "headers": [], "query_string": b""}
    asked = False
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(60)  # a client that stays connected: uvicorn's receive() waits
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=10))
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"row 0\nrow 1\nrow 2\n"
