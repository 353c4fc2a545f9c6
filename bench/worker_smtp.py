"""Benchmark: delivery worker messages per second into a local SMTP sink, next to the sink's own accept rate.

Starts an aiosmtpd sink on loopback in a process of its own (a relay is not the worker's process; sharing one
would make both compete for one interpreter lock). Baseline: --connections aiosmtplib connections sending the same
number of ready-made messages of the same size, each back to back (what the sink and the client library can do,
with no database). Then queues --messages deliveries (SQLite in a temporary folder, or --database-url) and runs the
real worker (`invitelink.worker.runner.Worker`, as `invitelink worker` does) with as many connections
(INVITELINK_SMTP_CONNECTIONS) until the queue is empty. Prints both rates and the ratio (target >= 0.60). Run:

    .venv/bin/python bench/worker_smtp.py [--messages 2000] [--connections 4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from sqlalchemy import func, select

from invitelink.config import Settings
from invitelink.db import Database, transaction
from invitelink.migrate import upgrade_to_head
from invitelink.models import Contact, Delivery, Mailing, utcnow
from invitelink.services import accounts, surveys
from invitelink.services.mailings import send_to_contacts
from invitelink.worker.runner import Worker

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
controller.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def baseline(port: int, count: int, size: int, connections: int) -> float:
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) for _ in range(connections)]
    for client in clients:
        await client.connect()
    numbers = iter(range(count))

    async def send_all(client: aiosmtplib.SMTP) -> None:
        for i in numbers:
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "lab@example.org", f"b{i}@example.org", "Invitation"
            message.set_content("x" * size)
            await client.send_message(message)

    started = time.perf_counter()
    await asyncio.gather(*(send_all(client) for client in clients))
    elapsed = time.perf_counter() - started
    for client in clients:
        await client.quit()
    return count / elapsed


def seed(database: Database, count: int) -> int:
    """A new workspace whose survey has ``count`` deliveries queued; returns the mailing's id."""
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
        return mailing.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections, baseline and worker alike")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="invitelink-bench-"))
    url = args.database_url or f"sqlite:///{work}/bench.db"
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        upgrade_to_head(url)
        settings = Settings(
            database_url=url,
            var_dir=work,
            secret_key="bench",  # noqa: S106 - a throwaway database
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            smtp_connections=args.connections,
            worker="off",
            _env_file=None,  # type: ignore[call-arg]
        )
        database = Database(url, pool_size=2)
        print(f"seeding {args.messages} deliveries ...", flush=True)
        mailing_id = seed(database, args.messages)
        engine = "SQLite" if args.database_url is None else url.split(":", 1)[0]
        print(
            f"{args.messages} messages to an aiosmtpd sink on loopback (its own process), {args.connections} "
            f"connection(s), {engine}, load average {os.getloadavg()[0]:.1f}"
        )
        sink_rate = asyncio.run(baseline(port, args.messages, 600, args.connections))
        print(f"{'sink accept rate (aiosmtplib, no database)':<44} {sink_rate:8.0f} msg/s")

        async def drain() -> tuple[float, int]:
            worker = Worker(settings, database)
            started = time.perf_counter()
            while await worker.run_once():
                pass
            elapsed = time.perf_counter() - started
            await worker.close()
            return elapsed, worker.sent

        elapsed, delivered = asyncio.run(drain())
        rate = delivered / elapsed
        print(
            f"{'invitelink worker (claim, render, send, record)':<44} {rate:8.0f} msg/s  "
            f"({delivered} in {elapsed:.1f} s)"
        )
        with database.read_sessions() as session:
            # This run's mailing only: a PostgreSQL database may hold earlier runs' workspaces.
            sent = session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.mailing_id == mailing_id, Delivery.status == "sent")
            )
        print(
            f"ratio worker / sink: {rate / sink_rate:.2f} (target >= 0.60)   deliveries marked sent: {sent} of "
            f"{args.messages}"
        )
        database.dispose()
    finally:
        if sink.stdin is not None:
            sink.stdin.close()
        sink.wait(timeout=30)
    if sent != args.messages:
        sys.exit(1)


if __name__ == "__main__":
    main()
