"""Benchmark: does a slow webhook endpoint slow mail? Mail throughput of the worker with no endpoint, and with one
endpoint that answers after 2 seconds and subscribes to every event.

Starts an aiosmtpd sink and a slow HTTP endpoint on loopback, then runs the real worker
(`invitelink.worker.runner.Worker.run`, as `invitelink worker` does: the mail loop and the webhook sender side by
side) twice on one database (SQLite in a temporary folder, or --database-url):

1. a workspace without webhook endpoints: --messages deliveries;
2. a workspace with one endpoint subscribed to all events (every sent mail is a `delivery.sent` event, so one
   webhook message per mail, each answered after --delay seconds): --messages deliveries.

Each run is timed from the start until the sink has accepted every mail. Prints both rates (messages/s into the
sink), the ratio of the second to the first, and what the webhook sender got through meanwhile. Run:

    .venv/bin/python bench/worker_webhooks.py [--messages 2000] [--delay 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_smtp import Counter, free_port

from invitelink.config import Settings
from invitelink.db import Database, transaction
from invitelink.migrate import upgrade_to_head
from invitelink.models import Contact, Mailing, WebhookEndpoint, WebhookMessage, utcnow
from invitelink.services import accounts, surveys
from invitelink.services.mailings import send_to_contacts
from invitelink.worker.runner import Worker


def slow_endpoint(delay: float) -> tuple[ThreadingHTTPServer, list[int]]:
    """An HTTP server on loopback that answers every POST with 200 after ``delay`` seconds (a thread each)."""
    received: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            time.sleep(delay)
            received.append(1)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def prepare(database: Database, count: int, label: str, webhook_url: str | None) -> int:
    """A workspace with ``count`` queued deliveries (and, with ``webhook_url``, an endpoint for every event)."""
    with transaction(database.sessions) as session:
        workspace, _ = accounts.create_admin(session, f"bench-{time.time_ns()}@example.org", "benchmark-pass", label)
        if webhook_url is not None:
            session.add(WebhookEndpoint(workspace_id=workspace.id, url=webhook_url, event_types=None))
        survey, _ = surveys.create_survey(
            session, workspace.id, {"title": label, "questionnaire_url": "https://q.example.org", "status": "active"}
        )
        mailing = Mailing(survey_id=survey.id, subject="Invitation to {{survey_title}}")
        session.add(mailing)
        session.add_all(Contact(survey_id=survey.id, email=f"r{i}@example.org", name=f"R {i}") for i in range(count))
        session.flush()
        send_to_contacts(session, mailing, None, utcnow())
        return workspace.id


async def drain(settings: Settings, database: Database, counter: Counter, count: int) -> tuple[float, int]:
    """Run the worker until the sink has ``count`` more mails; returns the seconds it took and the webhook messages
    the sender delivered meanwhile."""
    worker = Worker(settings, database)
    stop = asyncio.Event()
    target = counter.count + count
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while counter.count < target:
        if task.done():
            task.result()
            sys.exit("the worker stopped early")
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    delivered = worker.webhooks.delivered
    stop.set()
    await task
    return elapsed, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the endpoint takes to answer")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="invitelink-bench-"))
    url = args.database_url or f"sqlite:///{work}/bench.db"
    counter = Counter()
    port = free_port()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    endpoint, received = slow_endpoint(args.delay)
    try:
        upgrade_to_head(url)
        settings = Settings(
            database_url=url,
            var_dir=work,
            secret_key="bench",  # noqa: S106 - a throwaway database
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            worker="off",
            webhook_allow_private=True,  # the endpoint is on loopback
            _env_file=None,  # type: ignore[call-arg]
        )
        database = Database(url, pool_size=4)
        engine = "SQLite" if args.database_url is None else url.split(":", 1)[0]
        print(f"{args.messages} messages per run to an aiosmtpd sink on loopback, {engine}", flush=True)

        prepare(database, args.messages, "Bench without webhooks", None)
        plain, _ = asyncio.run(drain(settings, database, counter, args.messages))
        plain_rate = args.messages / plain
        print(f"{'mail, no webhook endpoint':<52} {plain_rate:8.0f} msg/s  ({plain:.1f} s)", flush=True)

        hook_url = f"http://127.0.0.1:{endpoint.server_address[1]}/hook"
        workspace_id = prepare(database, args.messages, "Bench with webhooks", hook_url)
        hooked, delivered = asyncio.run(drain(settings, database, counter, args.messages))
        hooked_rate = args.messages / hooked
        label = f"mail, one endpoint answering after {args.delay:g} s"
        print(f"{label:<52} {hooked_rate:8.0f} msg/s  ({hooked:.1f} s)")
        with database.read_sessions() as session:
            queued = session.scalar(
                select(func.count())
                .select_from(WebhookMessage)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
                .where(WebhookEndpoint.workspace_id == workspace_id)
            )
        print(
            f"  webhook messages written: {queued}; delivered during the run: {delivered} "
            f"({delivered / hooked:.1f}/s; received by the endpoint by now: {len(received)})"
        )
        print(f"ratio with / without: {hooked_rate / plain_rate:.2f}")
        database.dispose()
    finally:
        controller.stop()
        endpoint.shutdown()
        endpoint.server_close()


if __name__ == "__main__":
    main()
