"""Fault injection: terminate PostgreSQL backends again and again under load, then look for every acknowledged
write.

Starts `invitelink serve --workers 3` on a new PostgreSQL database (next to --database-url's), seeded by
`invitelink demo`, and drives three kinds of writes at once for --seconds:

* SoSci `create_link` for a new uid (acknowledged: 200 with `result: ok` and a token),
* admin `POST /admin/v1/surveys/{id}/contacts` (acknowledged: 201 with an id),
* the questionnaire callback `completed` for a token handed out earlier (acknowledged: 200 with `status:
  completed`).

Meanwhile a killer calls `pg_terminate_backend` on every other backend of the database every --interval seconds.
Refusals are expected (503 with Retry-After while connections are being re-established); what must not happen is
an acknowledged write that is not stored. At the end the script reads the database and prints, per kind, how many
calls were acknowledged, refused and lost (acknowledged but not found), and the number of backends killed. It exits
1 if anything acknowledged was lost.

The load is a Python asyncio client: this measures correctness under faults, not speed (see bench/README.md for
the throughput benchmarks, which use wrk). Run:

    .venv/bin/python bench/backend_kills.py [--seconds 60] [--interval 0.5] [--concurrency 24]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--ref GITREF]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import service, worktree
from worker_sigkill import drop_database, fresh_database

KINDS = ("link", "contact", "complete")


@dataclass
class Tally:
    acknowledged: dict[str, set[str]] = field(
        default_factory=lambda: {"link": set(), "contact": set(), "complete": set()}
    )
    refused: Counter[str] = field(default_factory=Counter)
    tokens: list[str] = field(default_factory=list)  # handed out by create_link, to complete later


def kill_backends(url: str, stop: threading.Event, interval: float, killed: list[int]) -> None:
    """Terminate every other backend of the database, every ``interval`` seconds, until ``stop``."""
    name = make_url(url).database
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    while not stop.wait(interval):
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                ).all()
            killed.append(sum(1 for (done,) in rows if done))
        except Exception as exc:  # the killer must outlive its own hiccups
            print(f"killer: {type(exc).__name__}", file=sys.stderr)
    engine.dispose()


async def drive(base: str, demo: dict[str, object], seconds: float, concurrency: int, tally: Tally) -> None:
    sosci = demo["sosci"]
    survey = demo["survey"]
    admin = demo["admin"]
    assert isinstance(sosci, dict) and isinstance(survey, dict) and isinstance(admin, dict)
    admin_headers = {"Authorization": f"Bearer {admin['token']}"}
    callback_headers = {"Authorization": f"Bearer {survey['callback_secret']}"}
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()
    deadline = time.monotonic() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        n = next(counter)
        kind = KINDS[n % 3]
        try:
            if kind == "link":
                uid = f"bk-{run}-{n}"
                # Appended by hand: httpx's params= would replace the API URL's own query (its act= key).
                response = await client.get(f"{sosci['create_link']}&uid={uid}")
                body = response.json()
                if response.status_code == 200 and body.get("result") == "ok":
                    tally.acknowledged["link"].add(uid)
                    tally.tokens.append(body["token"])
                    return
            elif kind == "contact":
                uid = f"bk-admin-{run}-{n}"
                response = await client.post(
                    f"{base}/admin/v1/surveys/{survey['id']}/contacts", json={"uid": uid}, headers=admin_headers
                )
                if response.status_code == 201:
                    tally.acknowledged["contact"].add(uid)
                    return
            else:
                if not tally.tokens:
                    return
                token = tally.tokens.pop()
                response = await client.post(
                    f"{base}/api/v1/participations/events",
                    json={"token": token, "event": "completed"},
                    headers=callback_headers,
                )
                if response.status_code == 200 and response.json().get("status") == "completed":
                    tally.acknowledged["complete"].add(token)
                    return
                tally.tokens.insert(0, token)  # not acknowledged: try it again later
            tally.refused[f"{kind} {response.status_code}"] += 1
        except (httpx.HTTPError, ValueError) as exc:
            tally.refused[f"{kind} {type(exc).__name__}"] += 1

    async def loop() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while time.monotonic() < deadline:
                await one(client)

    await asyncio.gather(*(loop() for _ in range(concurrency)))


def lost(url: str, survey_id: int, tally: Tally) -> dict[str, int]:
    """Acknowledged writes the database does not have."""
    engine = create_engine(url)
    with engine.connect() as conn:
        uids = set(conn.execute(text("SELECT uid FROM contacts WHERE survey_id = :s"), {"s": survey_id}).scalars())
        completed = set(
            conn.execute(
                text(
                    "SELECT t.code FROM participations p JOIN tokens t ON t.id = p.token_id "
                    "WHERE p.status = 'completed'"
                )
            ).scalars()
        )
    engine.dispose()
    return {
        "link": len(tally.acknowledged["link"] - uids),
        "contact": len(tally.acknowledged["contact"] - uids),
        "complete": len(tally.acknowledged["complete"] - completed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between two rounds of kills")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--workers", type=int, default=3, help="uvicorn processes of `invitelink serve`")
    parser.add_argument("--ref", help="run this git ref's code instead of the working tree's")
    args = parser.parse_args()

    url, name = fresh_database(args.database_url)
    tally = Tally()
    killed: list[int] = []
    try:
        with ExitStack() as stack:
            src = stack.enter_context(worktree(args.ref)) / "src" if args.ref else None
            # Two-second cooldowns and per-minute limits would refuse most of the load for reasons of their own.
            env = {"INVITELINK_WORKER": "off", "INVITELINK_ACCESS_LOG": "false", "INVITELINK_LOG_LEVEL": "ERROR"}
            live = stack.enter_context(service(url, env, src_path=src, workers=args.workers))
            stop = threading.Event()
            killer = threading.Thread(target=kill_backends, args=(url, stop, args.interval, killed))
            killer.start()
            try:
                asyncio.run(drive(live.base, live.demo, args.seconds, args.concurrency, tally))
            finally:
                stop.set()
                killer.join()
            survey_id = int(live.demo["survey"]["id"])
        missing = lost(url, survey_id, tally)
    finally:
        drop_database(args.database_url, name)

    print(f"code: {args.ref or 'working tree'}; {args.workers} app processes; {args.seconds:g} s of load")
    print(f"backends terminated: {sum(killed)} in {len(killed)} rounds (every {args.interval:g} s)")
    print(f"{'write':<10} {'acknowledged':>12} {'lost':>6}")
    for kind in KINDS:
        print(f"{kind:<10} {len(tally.acknowledged[kind]):>12} {missing[kind]:>6}")
    print("refused (expected while backends die):", dict(sorted(tally.refused.items())))
    if any(missing.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
