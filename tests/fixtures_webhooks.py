"""The HTTP receiver of webhooks and supplier postbacks: a real server on loopback, and its fixture.

Registered from conftest (``pytest_plugins``), so a test module asks for ``receiver`` by name without importing
it; the classes are imported for their types only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str

    def verify(self, secret: str) -> Any:
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """A real HTTP server on loopback that records every POST and answers each path with the next status of its
    script (200 once the script is used up)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                statuses = receiver.script.get(self.path)
                status = statuses.pop(0) if statuses else 200
                answer = b"ok" if status < 300 else b"upstream unavailable"
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
