"""Benchmark: a long SMTP outage in simulated time: deliveries failed, tries spent, log lines; then the drain.

Queues --deliveries deliveries (SQLite in a temporary folder, or --database-url) and points the real worker
(`invitelink.worker.runner.Worker`) at a closed port on loopback. Simulated time: each step moves the clock --step
seconds on (the queued deliveries' due times move back by as much, so retries fall due as they would; the worker's
probe clock moves on by as much) and runs one worker iteration, for --hours of outage. Then an aiosmtpd relay starts
on that port and the steps go on until nothing is left to send. Prints, for the outage: deliveries failed, tries
spent (the sum of `attempts`), the worker's log lines (warnings; all, progress lines apart); for the drain: the
simulated wait until the worker noticed the relay, and the real time to send, next to the time the same queue takes
with the relay up from the start (the baseline) and the ratio. Run:

    .venv/bin/python bench/smtp_outage.py [--deliveries 20] [--hours 71] [--step 60] [--database-url URL]

A worker without a probe clock (before sending paused during outages) runs too, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import delete, func, select

from invitelink.config import Settings
from invitelink.db import Database, transaction
from invitelink.migrate import upgrade_to_head
from invitelink.models import Contact, Delivery, Mailing, utcnow
from invitelink.services import accounts, surveys
from invitelink.services.mailings import send_to_contacts
from invitelink.worker.runner import Worker


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, _server: Any, _session: Any, _envelope: Any) -> str:
        self.count += 1
        return "250 OK"


class Lines(logging.Handler):
    """Counts the worker's log lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def counts(self) -> dict[str, int]:
        """The worker's lines (leaving out its start and stop lines) by kind."""
        own = [r.getMessage() for r in self.records if "delivery worker" not in r.getMessage()]
        progress = [r for r in self.records if r.name == "invitelink.worker.progress"]
        return {
            "all": len(own) - len(progress),
            "progress": len(progress),
            "down": len([m for m in own if " is down (" in m]),
            "reminders": len([m for m in own if " still down after " in m]),
            "back": len([m for m in own if " back after " in m]),
        }


class Clock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(database: Database, count: int) -> None:
    with transaction(database.sessions) as session:
        workspace, _ = accounts.create_admin(session, f"bench-{time.time_ns()}@example.org", "benchmark-pass", "Bench")
        survey, _ = surveys.create_survey(
            session, workspace.id, {"title": "Bench", "questionnaire_url": "https://q.example.org", "status": "active"}
        )
        mailing = Mailing(survey_id=survey.id, subject="Invitation to {{survey_title}}")
        session.add(mailing)
        session.add_all(Contact(survey_id=survey.id, email=f"r{i}@example.org", name=f"R {i}") for i in range(count))
        session.flush()
        send_to_contacts(session, mailing, None, utcnow())


def figures(database: Database) -> tuple[int, int, int]:
    """(failed, sent, attempts spent) over every delivery."""
    with database.read_sessions() as session:
        failed = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "failed"))
        sent = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent"))
        attempts = session.scalar(select(func.coalesce(func.sum(Delivery.attempts), 0)))
    return int(failed or 0), int(sent or 0), int(attempts or 0)


def make_worker(settings: Settings, database: Database, clock: Clock) -> Worker:
    if "clock" in inspect.signature(Worker).parameters:
        return Worker(settings, database, clock=clock)
    return Worker(settings, database)


async def step(worker: Worker, database: Database, clock: Clock, seconds: float) -> None:
    """``seconds`` pass for the queue and for the worker's probes, then one worker iteration."""
    clock.now += seconds
    with transaction(database.sessions) as session:
        # In Python: date arithmetic in SQL differs between the engines, and the queue is small.
        for delivery in session.scalars(select(Delivery).where(Delivery.status == "queued")):
            delivery.due_at -= timedelta(seconds=seconds)
    await worker.run_once()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=20)
    parser.add_argument("--hours", type=float, default=71.0, help="simulated length of the outage")
    parser.add_argument("--step", type=float, default=60.0, help="simulated seconds per worker iteration")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="invitelink-bench-"))
    url = args.database_url or f"sqlite:///{work}/bench.db"
    upgrade_to_head(url)
    port = free_port()
    settings = Settings(
        database_url=url,
        var_dir=work,
        secret_key="bench",  # noqa: S106 - a throwaway database
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        worker="off",
        _env_file=None,  # type: ignore[call-arg]
    )
    lines = Lines()
    logger = logging.getLogger("invitelink.worker")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    database = Database(url, pool_size=2)
    sink = Sink()

    async def baseline() -> float:
        """The same queue with the relay up from the start."""
        seed(database, args.deliveries)
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            worker = make_worker(settings, database, Clock())
            started = time.perf_counter()
            while await worker.run_once():
                pass
            elapsed = time.perf_counter() - started
            await worker.close()
        finally:
            controller.stop()
        lines.records.clear()
        with transaction(database.sessions) as session:
            session.execute(delete(Delivery))  # out of the way of the measured run
        return elapsed

    async def outage() -> tuple[float | None, float, float]:
        """Returns (simulated minutes to the first failure, simulated seconds to notice the relay, real seconds to
        drain)."""
        seed(database, args.deliveries)
        clock = Clock()
        worker = make_worker(settings, database, clock)
        steps = int(args.hours * 3600 / args.step)
        first_failure: float | None = None
        await worker.run_once()
        for n in range(1, steps + 1):
            await step(worker, database, clock, args.step)
            if first_failure is None and figures(database)[0]:
                first_failure = n * args.step / 60
        failed, _sent, attempts = figures(database)
        n = lines.counts()
        print(f"outage of {args.hours:g} h in {steps} worker iterations, {args.deliveries} deliveries queued:")
        print(f"  {'deliveries failed':<44} {failed:8d}")
        first = f"{first_failure:.0f} min" if first_failure is not None else "none"
        print(f"  {'first failure (simulated time)':<44} {first:>8}")
        print(f"  {'tries spent (sum of attempts)':<44} {attempts:8d}")
        print(f"  {'worker log lines':<44} {n['all']:8d}  (+{n['progress']} progress lines)")
        print(f"  {'  of which: relay down / reminders':<44} {n['down']:8d} / {n['reminders']}")
        lines.records.clear()
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            waited, started, real = 0.0, 0, 0.0
            for _ in range(1000):
                before = sink.count
                t0 = time.perf_counter()
                await step(worker, database, clock, args.step)
                if sink.count > before:
                    started += 1
                    real += time.perf_counter() - t0
                elif started == 0:
                    waited += args.step
                with database.read_sessions() as session:
                    left = session.scalar(
                        select(func.count()).select_from(Delivery).where(Delivery.status.in_(("queued", "sending")))
                    )
                if not left:
                    break
            await worker.close()
        finally:
            controller.stop()
        return first_failure, waited, real

    base = asyncio.run(baseline())
    sent_before = sink.count
    _first, waited, real = asyncio.run(outage())
    failed, _sent, _attempts = figures(database)
    n = lines.counts()
    print("relay back:")
    print(f"  {'sent after the outage':<44} {sink.count - sent_before:8d} of {args.deliveries}")
    if sink.count > sent_before:
        print(f"  {'waited for the next probe (simulated)':<44} {waited:8.0f} s")
    print(f"  {'lines saying the relay is back':<44} {n['back']:8d}")
    print(f"  {'drain, real time':<44} {real:8.3f} s   baseline (relay up throughout) {base:.3f} s", end="")
    print(f"   ratio {real / base:.2f}" if base and real else "")
    database.dispose()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
