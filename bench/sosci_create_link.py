"""Benchmark: SoSci create_link with a new uid per request, on SQLite (or PostgreSQL), against a bare FastAPI endpoint.

Starts `invitelink serve` (SQLite in a temporary folder, or --database-url) and the bare app (bench/bare_app.py)
with uvicorn, then loads each with the same client: N concurrent keep-alive connections for S seconds. Prints
throughput, p50/p99 latency and errors for both, and the throughput ratio service / bare. Run:

    .venv/bin/python bench/sosci_create_link.py [--connections 32] [--seconds 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bare, service
from loadgen import Result, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    engine = "SQLite" if args.database_url is None else args.database_url.split(":", 1)[0]

    # No embedded worker: on a --database-url that holds queued mail from elsewhere it would send it during the
    # run and take CPU from the path measured here (seen: PostgreSQL at 240 instead of 600 req/s).
    with (
        service(args.database_url, {"INVITELINK_WORKER": "off"}) as svc,
        bare(f"/{svc.demo['survey']['project']}/") as bare_port,
    ):
        create_link = urlsplit(svc.demo["sosci"]["create_link"])
        service_path = f"{create_link.path}?{create_link.query}&uid=bench-"
        project = svc.demo["survey"]["project"]
        print(
            f"create_link, new uid per request, {args.connections} connections, {args.seconds:g} s each, "
            f"{engine}, 1 uvicorn worker each, {os.cpu_count()} cores"
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
                svc.port,
                lambda n: f"{service_path}{n}",
                connections=args.connections,
                seconds=args.seconds,
            )
        )
        print(service_result.line())
        ratio = service_result.throughput / bare_result.throughput if bare_result.throughput else 0.0
        print(f"throughput ratio invitelink / bare: {ratio:.2f}  (target >= 0.25; p99 < 100 ms; 0 errors)")


if __name__ == "__main__":
    main()
