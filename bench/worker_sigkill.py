"""Fault injection: SIGKILL `invitelink worker` again and again while it sends, at default settings, and count
what arrived.

Seeds --messages queued deliveries (PostgreSQL by default: a new database next to --database-url's; or SQLite with
--sqlite), starts an aiosmtpd sink on loopback that records every Message-ID it accepts, then --kills times: start
a real `invitelink worker` process (default lease and batch), wait until it has sent a message, SIGKILL it a random
0.05 to 0.4 s later (mid-batch).
Then one last worker runs until every delivery is sent. Prints messages lost (never accepted by the sink),
duplicates (accepted more than once: the message in flight at a kill), and how long after the last kill the last
message arrived (target: within 60 s, as killed workers' leases expire). Run:

    .venv/bin/python bench/worker_sigkill.py [--messages 1000] [--kills 20] [--database-url URL | --sqlite]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_smtp import free_port, seed

from invitelink.db import Database
from invitelink.migrate import upgrade_to_head
from invitelink.models import Delivery

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Recorder:
    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.last_at = 0.0

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        for line in envelope.content.decode("utf-8", "replace").splitlines():
            if line.lower().startswith("message-id:"):
                self.ids[line.split(":", 1)[1].strip()] += 1
                break
        self.last_at = time.monotonic()
        return "250 OK"


def fresh_database(base: str) -> tuple[str, str]:
    url = make_url(base)
    name = f"invitelink_sigkill_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_database(base: str, name: str) -> None:
    admin = create_engine(make_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def sent(database: Database) -> int:
    with database.read_sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent")) or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--database-url", default=PG_DEFAULT, help="a PostgreSQL server to create a database on")
    parser.add_argument("--sqlite", action="store_true", help="SQLite in a temporary folder instead")
    parser.add_argument("--deadline", type=float, default=180, help="seconds to wait for the last worker")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="invitelink-sigkill-"))
    dropped: str | None = None
    if args.sqlite:
        url = f"sqlite:///{work}/bench.db"
    else:
        url, dropped = fresh_database(args.database_url)
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update(
        {
            "INVITELINK_DATABASE_URL": url,
            "INVITELINK_VAR_DIR": str(work),
            "INVITELINK_SECRET_KEY": "bench",
            "INVITELINK_SMTP_HOST": "127.0.0.1",
            "INVITELINK_SMTP_PORT": str(port),
            "INVITELINK_SMTP_STARTTLS": "false",
        }
    )
    database = Database(url, pool_size=2)
    try:
        upgrade_to_head(url)
        seed(database, args.messages)
        engine = "SQLite" if args.sqlite else "PostgreSQL"
        print(f"{args.messages} deliveries, {args.kills} SIGKILLs of `invitelink worker` at default settings, {engine}")
        command = [sys.executable, "-m", "invitelink.cli", "worker", "--no-migrate"]
        rng = random.Random(7)
        kills = 0
        for kill in range(args.kills):
            if sent(database) >= args.messages:
                break  # everything went before the last kill: a larger --messages keeps the worker busy longer
            kills += 1
            worker = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Killed while it sends, not while it starts: once it has sent something, a random moment later.
            before, started = sent(database), time.monotonic()
            while sent(database) == before and time.monotonic() - started < 60:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.05, 0.4))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            print(
                f"\r  kill {kill + 1}/{args.kills}: {sent(database)} sent so far", end="", flush=True, file=sys.stderr
            )
        last_kill = time.monotonic()
        print(file=sys.stderr)
        worker = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while sent(database) < args.messages and time.monotonic() - last_kill < args.deadline:
                time.sleep(0.5)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        done = sent(database)
        accepted = set(recorder.ids)
        duplicates = sum(n - 1 for n in recorder.ids.values())
        lost = args.messages - len(accepted)
        after = recorder.last_at - last_kill
        print(f"marked sent: {done} of {args.messages}; accepted by the sink: {len(accepted)} distinct messages")
        print(
            f"lost: {lost}; duplicates: {duplicates} ({duplicates * 100 / args.messages:.1f}%; "
            f"{duplicates / max(kills, 1):.2f} per kill over {kills} kills while sending; bound: one per SMTP "
            "connection per kill)"
        )
        print(f"last message arrived {after:.1f} s after the last kill (target: within 60 s)")
    finally:
        controller.stop()
        database.dispose()
        if dropped is not None:
            drop_database(args.database_url, dropped)


if __name__ == "__main__":
    main()
