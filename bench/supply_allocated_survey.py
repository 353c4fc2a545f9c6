"""Benchmark: the supplier API's allocated_survey over 10,000 allocated surveys, page 1 against page 100.

Seeds a demo workspace, then --surveys active surveys allocated to the demo supplier with two country limits each
(bulk inserts, with progress), starts `invitelink serve` on it (SQLite in a temporary folder, or --database-url)
and the bare app (bench/bare_app.py, ten items built in memory). Loads each page with N keep-alive connections
for S seconds and prints throughput and latency per page, the ratio page 100 / page 1 (target: about 1, i.e. the
cost does not grow with the page), and the ratio to the bare endpoint. Run:

    .venv/bin/python bench/supply_allocated_survey.py [--surveys 10000] [--connections 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bare, service
from loadgen import Result, run

from invitelink.db import Database, transaction
from invitelink.models import Allocation, Quota, Supplier, Survey, utcnow
from invitelink.security import digest, random_code

CHUNK = 1000


def seed(database_url: str, workspace_id: int, supplier_public_id: str, count: int) -> None:
    """``count`` active surveys, each allocated to the supplier with limits for two countries."""
    database = Database(database_url, pool_size=1)
    try:
        with transaction(database.sessions) as session:
            supplier_id = session.scalar(select(Supplier.id).where(Supplier.public_id == supplier_public_id))
        tag = random_code(6)
        for start in range(0, count, CHUNK):
            numbers = range(start, min(start + CHUNK, count))
            with transaction(database.sessions) as session:
                now = utcnow()
                session.execute(
                    insert(Survey),
                    [
                        {
                            "workspace_id": workspace_id,
                            "project": f"bench-{tag.lower()}-{n}",
                            "public_id": f"PROJ-B{n:07d}",
                            "title": f"Benchmark study {n}",
                            "status": "active",
                            "questionnaire_url": "https://q.example.org/s",
                            "callback_secret_digest": digest(f"{tag}-{n}"),
                            "cpi_value": 6,
                            "cpi_currency": "USD",
                            "incidence_rate": 40,
                            "length_of_interview": 20,
                            "pii": False,
                            "segment": "B2B",
                            "description": "A benchmark survey.",
                            "countries": ["USA", "UK"],
                            "created_at": now,
                            "updated_at": now,
                        }
                        for n in numbers
                    ],
                )
                ids = session.scalars(
                    select(Survey.id).where(Survey.project.like(f"bench-{tag.lower()}-%")).order_by(Survey.id)
                ).all()[start:]
                session.execute(
                    insert(Allocation),
                    [{"supplier_id": supplier_id, "survey_id": i, "status": "active", "created_at": now} for i in ids],
                )
                allocations = session.scalars(
                    select(Allocation.id).where(Allocation.survey_id.in_(ids)).order_by(Allocation.id)
                ).all()
                session.execute(
                    insert(Quota),
                    [{"allocation_id": a, "country": c, "limit": 100} for a in allocations for c in ("USA", "UK")],
                )
            print(f"  seeded {numbers.stop:>6} / {count} surveys", flush=True)
    finally:
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--surveys", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    def seeding(url: str, demo: dict[str, object]) -> None:
        workspace = demo["workspace"]
        supplier = demo["supplier"]
        assert isinstance(workspace, dict) and isinstance(supplier, dict)
        print(f"seeding {args.surveys} allocated surveys ...", flush=True)
        seed(url, int(workspace["id"]), str(supplier["supplier_id"]), args.surveys)

    # No rate limit: the benchmark is the runaway client the limit exists to stop.
    extra = {"INVITELINK_WORKER": "off", "INVITELINK_SUPPLIER_REQUESTS_PER_MINUTE": "100000000"}
    with (
        service(args.database_url, extra, before_serve=seeding) as svc,
        bare("/docs") as bare_port,
    ):
        key = {"Authorization": f"Bearer {svc.demo['supplier']['sandbox_key']}"}
        engine = "SQLite" if args.database_url is None else args.database_url.split(":", 1)[0]
        print(
            f"allocated_survey, {args.surveys + 1} allocations, per_page 10, {args.connections} connections, "
            f"{args.seconds:g} s each, {engine}, {os.cpu_count()} cores"
        )
        last = (args.surveys + 1 + 9) // 10

        def load(name: str, port: int, page: int, headers: dict[str, str]) -> Result:
            body = json.dumps({"page": page, "per_page": 10}).encode()
            result: Result = asyncio.run(
                run(
                    name,
                    "127.0.0.1",
                    port,
                    lambda _n: "/sandbox/v1/allocated_survey",
                    connections=args.connections,
                    seconds=args.seconds,
                    body_for=lambda _n: body,
                    headers=headers,
                )
            )
            print(result.line())
            return result

        bare_result = load("bare FastAPI (in memory)", bare_port, 1, {})
        first = load("invitelink page 1", svc.port, 1, key)
        hundredth = load("invitelink page 100", svc.port, 100, key)
        final = load(f"invitelink page {last} (last)", svc.port, last, key)
        print(
            f"page 100 / page 1 latency (p50): {hundredth.percentile(50) / first.percentile(50):.2f}   "
            f"last / page 1: {final.percentile(50) / first.percentile(50):.2f}   "
            f"page 1 throughput / bare: {first.throughput / bare_result.throughput:.2f}"
        )


if __name__ == "__main__":
    main()
