"""A client that trickles its request body is cut off with 408 after the read timeout, in its family's format, and
the server goes on serving others meanwhile."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

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
