"""Benchmark: can any service reach a given share of pgbench's create_link ceiling on this machine?

`bench/sosci_create_link.py` compares the service with `pgbench` running the same statements. On a machine whose
cores the database shares with the web processes, part of that ceiling is not the service's to take: every call
also needs its HTTP request handled. This measures the room left for an app that costs nothing but HTTP:

1. pgbench alone, as fast as it can (the ceiling, T tx/s) and the bare FastAPI endpoint alone (B req/s), with as
   many uvicorn workers as given;
2. both at once: pgbench held to --share x T transactions a second (pgbench --rate) while wrk loads the bare
   endpoint as fast as it can.

If the bare endpoint then answers fewer than --share x T requests a second, or pgbench falls behind its rate, no
service can reach that share here, whatever its own code costs: it would need both the HTTP and the transactions,
and even with zero work of its own they do not fit. Needs `wrk`, `pgbench` and a PostgreSQL database URL (a
database of its own: a demo workspace is added). Run:

    .venv/bin/python bench/pg_shared_cores.py --database-url URL [--share 0.6] [--workers 2] [--seconds 10]
        [--connections 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bare, service
from pgbench_ceiling import PgbenchResult, run_pgbench
from wrk import run_wrk

BARE_PATH = "/demo-bench/?act=x&uid=shared-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="PostgreSQL (postgresql+psycopg://…)")
    parser.add_argument("--share", type=float, default=0.6, help="the share of pgbench's ceiling to test (0.6)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of the bare endpoint (2)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections and pgbench clients (32)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with service(args.database_url, {"INVITELINK_WORKER": "off"}) as svc:
        key = urlsplit(svc.demo["sosci"]["create_link"]).query.removeprefix("act=")
    with bare(BARE_PATH + "probe", workers=args.workers) as port:
        base = f"http://127.0.0.1:{port}"
        run_wrk(base, BARE_PATH + "w", args.threads, args.connections, 2)  # warm-up, uncounted
        # pgbench's warm-up: prepared on an empty contacts table, its plans scan it (1,206 instead of 5,048 tx/s
        # seen here once the table held 18,000 rows); the measured runs prepare theirs on a filled one.
        run_pgbench(args.database_url, key, args.connections, args.threads, 3)
        ceiling = run_pgbench(args.database_url, key, args.connections, args.threads, args.seconds)
        print(ceiling.line().replace("(same statements)", "alone"))
        alone = run_wrk(base, BARE_PATH + "a", args.threads, args.connections, args.seconds, name="bare FastAPI alone")
        print(alone.line())
        target = args.share * ceiling.tps
        held: list[PgbenchResult] = []
        pgbench = threading.Thread(
            target=lambda: held.append(
                run_pgbench(args.database_url, key, args.connections, args.threads, args.seconds, rate=target)
            )
        )
        pgbench.start()
        shared = run_wrk(
            base, BARE_PATH + "s", args.threads, args.connections, args.seconds, name="bare FastAPI beside it"
        )
        pgbench.join()
    (beside,) = held
    print(f"pgbench held to {target:.0f} tx/s ({args.share:.2f} of its ceiling): {beside.tps:.0f} tx/s done")
    print(shared.line())
    room = min(shared.throughput, beside.tps)
    print(
        f"calls a second that could have both their HTTP request and their transaction: at most {room:.0f}, "
        f"{room / ceiling.tps:.2f} of pgbench's ceiling (tested: {args.share:.2f}), with an app that costs nothing "
        "but HTTP"
    )


if __name__ == "__main__":
    main()
