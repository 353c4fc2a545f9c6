"""Benchmark: SoSci create_link with a new uid per request, on SQLite, against a bare FastAPI endpoint.

Starts `invitelink serve` (SQLite in a temporary folder) and the bare app (bench/bare_app.py) with uvicorn, then
loads each with the same client: N concurrent keep-alive connections for S seconds. Prints throughput, p50/p99
latency and errors for both, and the throughput ratio service / bare. Run:

    .venv/bin/python bench/sosci_create_link.py [--connections 32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import Result, run

ROOT = Path(__file__).resolve().parents[1]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="invitelink-bench-"))
    port, bare_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update(
        {
            "INVITELINK_DATABASE_URL": f"sqlite:///{work}/bench.db",
            "INVITELINK_VAR_DIR": str(work),
            "INVITELINK_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "INVITELINK_SECRET_KEY": "bench",
        }
    )
    python = sys.executable
    demo = json.loads(
        subprocess.run(
            [python, "-m", "invitelink.cli", "demo", "--json"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    create_link = urlsplit(demo["sosci"]["create_link"])
    service_path = f"{create_link.path}?{create_link.query}&uid=bench-"
    project = demo["survey"]["project"]

    service = subprocess.Popen(
        [python, "-m", "invitelink.cli", "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bare = subprocess.Popen(
        [
            python,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(bare_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT / "bench",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz")
        wait_for(f"http://127.0.0.1:{bare_port}/{project}/")
        print(
            f"create_link, new uid per request, {args.connections} connections, {args.seconds:g} s each, "
            f"SQLite, 1 uvicorn worker each, {os.cpu_count()} cores"
        )
        bare_result: Result = asyncio.run(
            run(
                "bare FastAPI (no database)",
                "127.0.0.1",
                bare_port,
                lambda n: f"/{project}/?act=x&uid=bench-{n}",
                connections=args.connections,
                seconds=args.seconds,
            )
        )
        print(bare_result.line())
        service_result: Result = asyncio.run(
            run(
                "invitelink create_link",
                "127.0.0.1",
                port,
                lambda n: f"{service_path}{n}",
                connections=args.connections,
                seconds=args.seconds,
            )
        )
        print(service_result.line())
        ratio = service_result.throughput / bare_result.throughput if bare_result.throughput else 0.0
        print(f"throughput ratio invitelink / bare: {ratio:.2f}  (target >= 0.25; p99 < 100 ms; 0 errors)")
    finally:
        for process in (service, bare):
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
