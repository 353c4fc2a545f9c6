"""Benchmark: the supplier API's allocated_survey over 10,000 allocated surveys, page 1 against page 100.

Seeds a demo workspace, then --surveys active surveys allocated to the demo supplier with two country limits each
(bulk inserts, with progress), starts `invitelink serve` on it (SQLite in a temporary folder, or --database-url)
and the bare app (bench/bare_app.py, ten items built in memory, same number of uvicorn workers). Loads each page
with wrk (bench/wrk.py; apt-get install wrk): N keep-alive connections for S seconds after an uncounted warm-up, and
prints throughput and latency per page, the ratios page 100 / page 1 and last page / page 1 (target: 1 +- 0.2,
i.e. the cost does not grow with the page), and the ratio of page 1's throughput to the bare endpoint's (target
>= 0.30). Run:

    .venv/bin/python bench/supply_allocated_survey.py [--surveys 10000] [--connections 16] [--seconds 10]
        [--rounds 1] [--workers 1] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bare, service
from wrk import WrkResult, run_wrk

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
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, for the service and the bare app")
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
        service(args.database_url, extra, before_serve=seeding, workers=args.workers) as svc,
        bare("/docs", workers=args.workers) as bare_port,
    ):
        key = {"Authorization": f"Bearer {svc.demo['supplier']['sandbox_key']}", "Content-Type": "application/json"}
        engine = "SQLite" if args.database_url is None else args.database_url.split(":", 1)[0]
        print(
            f"allocated_survey, {args.surveys + 1} allocations, per_page 10, wrk {args.threads} threads "
            f"{args.connections} connections, {args.seconds} s each, {args.workers} worker(s), {engine}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
        )
        last = (args.surveys + 1 + 9) // 10

        def load(name: str, port: int, page: int, headers: dict[str, str], *, counted: bool = True) -> WrkResult:
            result = run_wrk(
                f"http://127.0.0.1:{port}",
                "/sandbox/v1/allocated_survey",
                args.threads,
                args.connections,
                args.seconds if counted else 2,
                name=name,
                method="POST",
                body=json.dumps({"page": page, "per_page": 10}),
                headers=headers,
            )
            if counted:
                print(result.line(), flush=True)
            return result

        load("warm-up", bare_port, 1, {"Content-Type": "application/json"}, counted=False)
        load("warm-up", svc.port, 1, key, counted=False)
        rows: dict[str, list[WrkResult]] = {"bare": [], "first": [], "hundredth": [], "last": []}
        for number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {number} (load average {os.getloadavg()[0]:.1f})", flush=True)
            rows["bare"].append(load("bare FastAPI (in memory)", bare_port, 1, {"Content-Type": "application/json"}))
            rows["first"].append(load("invitelink page 1", svc.port, 1, key))
            rows["hundredth"].append(load("invitelink page 100", svc.port, 100, key))
            rows["last"].append(load(f"invitelink page {last} (last)", svc.port, last, key))

        def median(name: str, value: str) -> float:
            return statistics.median(getattr(r, value) for r in rows[name])

        errors = sum(r.errors for results in rows.values() for r in results)
        print(
            f"medians of {args.rounds} round(s): bare {median('bare', 'throughput'):.0f} req/s, page 1 "
            f"{median('first', 'throughput'):.0f} req/s (p50 {median('first', 'p50'):.1f} ms, p99 "
            f"{median('first', 'p99'):.1f} ms)\n"
            f"page 1 throughput / bare: {median('first', 'throughput') / median('bare', 'throughput'):.2f} "
            f"(target >= 0.30)   p50 page 100 / page 1: {median('hundredth', 'p50') / median('first', 'p50'):.2f}   "
            f"last / page 1: {median('last', 'p50') / median('first', 'p50'):.2f} (target 0.8 to 1.2)   "
            f"errors {errors}"
        )


if __name__ == "__main__":
    main()
