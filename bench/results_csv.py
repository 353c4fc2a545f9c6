"""Benchmark: the results CSV export (Accept: text/csv) of 100,000 results next to 1,000, rows per second and the
server process's peak memory.

For each size, seeds a demo workspace plus that many contacts, tokens and completed participations with a response
and metadata (bulk inserts, with progress), starts a fresh `invitelink serve` on it (SQLite in a temporary folder,
or --database-url), downloads the export with curl (a compiled client, so the client is not what is measured), and
reads the server's peak resident memory (VmHWM) before and after. The export streams batches of 1,000 rows, so the
peak should not grow with the size. Run:

    .venv/bin/python bench/results_csv.py [--rows 100000] [--small 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import service

from invitelink.db import Database, transaction
from invitelink.models import Contact, Participation, Token, utcnow
from invitelink.security import random_code

CHUNK = 5000


def seed(database_url: str, survey_id: int, rows: int) -> None:
    database = Database(database_url, pool_size=1)
    tag = random_code(6).lower()
    try:
        for start in range(0, rows, CHUNK):
            numbers = range(start, min(start + CHUNK, rows))
            with transaction(database.sessions) as session:
                now = utcnow()
                session.execute(
                    insert(Contact),
                    [
                        {"survey_id": survey_id, "email": f"p{n}-{tag}@example.org", "uid": f"u{n}-{tag}",
                         "name": f"P {n}", "subgroup": "", "anonymous": False, "created_at": now}
                        for n in numbers
                    ],
                )  # fmt: skip
                contact_ids = session.scalars(
                    select(Contact.id).where(Contact.survey_id == survey_id, Contact.uid.like(f"%-{tag}"))
                    .order_by(Contact.id).offset(start)
                ).all()  # fmt: skip
                session.execute(
                    insert(Token),
                    [
                        {"code": random_code(16), "survey_id": survey_id, "contact_id": c, "kind": "personal",
                         "created_at": now}
                        for c in contact_ids
                    ],
                )  # fmt: skip
                token_ids = session.scalars(
                    select(Token.id).where(Token.contact_id.in_(contact_ids)).order_by(Token.id)
                ).all()
                session.execute(
                    insert(Participation),
                    [
                        {"survey_id": survey_id, "token_id": t, "environment": "production", "status": "completed",
                         "first_click_at": now, "click_count": 1, "started_at": now, "ended_at": now,
                         "response": {"q1": 4, "q2": "a longer free-text answer of a participant"},
                         "meta": {"source_id": f"evt_{t}", "tier": "starter"}, "created_at": now, "updated_at": now}
                        for t in token_ids
                    ],
                )  # fmt: skip
            done = min(start + CHUNK, rows)
            print(f"\r  seeding {done:,}/{rows:,} results", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        database.dispose()


def memory_mib(port: int) -> tuple[float, float]:
    """(peak, current) resident memory, VmHWM and VmRSS, of the process listening on ``port`` (the server)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    pid = out.split("pid=")[1].split(",")[0]
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    if "VmHWM" not in fields:
        raise SystemExit("no VmHWM in /proc: run on Linux")
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def measure(rows: int, database_url: str | None) -> tuple[float, tuple[float, float], tuple[float, float], int]:
    """(seconds, (peak, current) MiB before the export, the same after it, rows received)."""
    survey_ids: list[int] = []

    def before_serve(url: str, demo: dict[str, object]) -> None:
        survey = demo["survey"]
        assert isinstance(survey, dict)
        survey_ids.append(int(survey["id"]))
        seed(url, survey_ids[0], rows)

    with service(database_url, {"INVITELINK_WORKER": "off"}, before_serve=before_serve) as svc:
        token = svc.demo["admin"]["token"]
        url = f"{svc.base}/admin/v1/surveys/{survey_ids[0]}/results"
        before = memory_mib(svc.port)
        started = time.perf_counter()
        body = subprocess.run(
            ["curl", "-sf", "-H", f"Authorization: Bearer {token}", "-H", "Accept: text/csv", url],
            capture_output=True,
            check=True,
        ).stdout
        seconds = time.perf_counter() - started
        after = memory_mib(svc.port)
    received = body.count(b"\n") - 1  # the header row
    return seconds, before, after, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    if shutil.which("curl") is None or shutil.which("ss") is None:
        raise SystemExit("needs curl and ss (apt-get install curl iproute2)")
    engine = "SQLite" if args.database_url is None else args.database_url.split(":", 1)[0]
    print(f"results CSV export, {engine}, one `invitelink serve` per size, downloaded with curl")
    figures = {}
    for rows in (args.small, args.rows):
        seconds, before, after, received = measure(rows, args.database_url)
        figures[rows] = after[0]
        print(
            f"  {rows:>9,} results: {received:>9,} rows in {seconds:6.2f} s = {received / seconds:>9,.0f} rows/s; "
            f"server memory peak/current {before[0]:.1f}/{before[1]:.1f} MiB before, "
            f"{after[0]:.1f}/{after[1]:.1f} MiB after the export"
        )
    ratio = figures[args.rows] / figures[args.small]
    print(f"peak memory {args.rows:,} / {args.small:,} results: {ratio:.2f} (target: about 1)")


if __name__ == "__main__":
    main()
