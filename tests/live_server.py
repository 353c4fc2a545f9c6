"""``invitelink serve`` on loopback with a demo workspace: for tests that must send bytes no client library would
send (raw request shapes) or run other programs against the service (the client snippets of docs/clients.md)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.smtp_server import free_port
from tests.test_cli import cli_env, run_cli, start_cli, wait_ready


@dataclass
class Live:
    base: str
    port: int
    demo: dict[str, Any]  # what `invitelink demo --json` printed


@contextmanager
def live_server(db_url: str, tmp_path: Path, **settings: str) -> Iterator[Live]:
    """``settings``: more INVITELINK_* variables for the server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    seeded = run_cli(["demo", "--json"], db_url, tmp_path, INVITELINK_PUBLIC_URL=base)
    assert seeded.returncode == 0, seeded.stderr
    env = cli_env(db_url, tmp_path, INVITELINK_PUBLIC_URL=base, INVITELINK_WORKER="off", **settings)
    process = start_cli(["serve", "--port", str(port)], env, tmp_path)
    try:
        wait_ready(base, process)
        yield Live(base, port, json.loads(seeded.stdout))
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
