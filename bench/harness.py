"""Starting what a benchmark measures: `invitelink serve` on a fresh database (seeded by `invitelink demo`), and the
bare FastAPI baseline (bench/bare_app.py), each as its own uvicorn process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL we built
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


@dataclass
class Service:
    port: int
    base: str
    demo: dict[str, Any]
    env: dict[str, str]


@contextmanager
def service(
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    before_serve: Callable[[str, dict[str, Any]], None] | None = None,
) -> Iterator[Service]:
    """A demo workspace and `invitelink serve` on it (SQLite in a temporary folder unless ``database_url``).

    ``before_serve(database_url, demo)`` may add data before the server starts."""
    work = Path(tempfile.mkdtemp(prefix="invitelink-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update(
        {
            "INVITELINK_DATABASE_URL": database_url or f"sqlite:///{work}/bench.db",
            "INVITELINK_VAR_DIR": str(work),
            "INVITELINK_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "INVITELINK_SECRET_KEY": "bench",
            **(extra_env or {}),
        }
    )
    demo = json.loads(
        subprocess.run(
            [PYTHON, "-m", "invitelink.cli", "demo", "--json"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    if before_serve is not None:
        before_serve(env["INVITELINK_DATABASE_URL"], demo)
    process = subprocess.Popen(
        [PYTHON, "-m", "invitelink.cli", "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz")
        yield Service(port, f"http://127.0.0.1:{port}", demo, env)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def bare(probe_path: str) -> Iterator[int]:
    """The bare baseline app; yields its port once ``probe_path`` answers 200."""
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=BENCH,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}{probe_path}")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
