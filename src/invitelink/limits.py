"""Request body limits: its size, enforced before a body is read into memory, and how long a client may take to
send it (a client that opens a request and trickles its body holds a connection and a task for as long as it
likes otherwise). Slow request *headers* are the reverse proxy's to cut off: see docs/deployment.md."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invitelink.api.errors import Renderer

# The error answer of the API family that owns a path.
RendererFor = Callable[[str], Renderer]


class BodySizeLimit:
    """413 for bodies over the limit, whether announced by Content-Length or streamed chunked; 408 when a piece of
    the body takes longer than ``read_timeout`` seconds to arrive."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default: int,
        overrides: dict[str, int],
        render: RendererFor,
        read_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.default = default
        self.overrides = overrides  # path suffix -> limit (bulk imports get more)
        self.render = render
        self.read_timeout = read_timeout

    def limit_for(self, path: str) -> int:
        for suffix, limit in self.overrides.items():
            if path.endswith(suffix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, path, limit, send)
            return
        received = 0
        exceeded = False
        timed_out = False
        body_done = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded, timed_out, body_done
            if exceeded or timed_out:
                return {"type": "http.disconnect"}
            if body_done:
                # Past the body, a receive() waits for the client to leave (a streamed CSV export listens so for
                # its whole length): no timeout there.
                return await receive()
            try:
                async with asyncio.timeout(self.read_timeout):
                    message = await receive()
            except TimeoutError:
                timed_out = True  # the app stops reading as if the client left; the 408 below replaces its answer
                return {"type": "http.disconnect"}
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Look like a client that went away: the app stops reading, whatever it catches.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded or timed_out:
                return  # the app's answer to the "disconnect" is replaced by the 413 or 408 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not (exceeded or timed_out):
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, path, limit, send)
        elif timed_out and not started:
            message = f"the request body did not arrive within {self.read_timeout:g} seconds; send it at once"
            response = self.render(path)(408, message, None)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, path: str, limit: int, send: Send) -> None:
        message = f"request body is larger than {limit} bytes; send less per request"
        await self.render(path)(413, message, None)(scope, receive, send)
