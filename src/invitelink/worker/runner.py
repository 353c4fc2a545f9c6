"""The worker loop, shared by ``invitelink worker`` and the worker embedded in ``invitelink serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from datetime import timedelta

from invitelink.config import Settings
from invitelink.db import Database
from invitelink.worker import queue
from invitelink.worker.messages import build_email, build_sms, message_id
from invitelink.worker.progress import Progress
from invitelink.worker.transports import PermanentError, TransientError, make_mailer, make_sms
from invitelink.worker.webhooks import WebhookSender

log = logging.getLogger("invitelink.worker")

POLL_SECONDS = 1.0


class Worker:
    def __init__(
        self,
        settings: Settings,
        database: Database | None = None,
        *,
        batch: int | None = None,
        lease: timedelta | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.settings = settings
        self.database = database or Database(settings.database_url, pool_size=2)
        self._owns_database = database is None
        self.worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.batch = batch or settings.worker_batch
        self.lease = lease or timedelta(seconds=settings.worker_lease_seconds)
        self.poll_seconds = poll_seconds
        self.mailer = make_mailer(settings)
        self.sms = make_sms(settings)
        self.webhooks = WebhookSender(settings, self.database, self.worker_id)
        self.sent = 0
        self.progress = Progress(self.database)

    async def _record(self, job: queue.Job, outcome: str, detail: str) -> None:
        await self.database.write(queue.record_outcome, job, self.worker_id, outcome, detail)
        self.progress.count(outcome)

    async def send(self, job: queue.Job) -> None:
        """Send one job and record the outcome; never raises for a transport's refusal."""
        key = f"delivery-{job.delivery_id}-{job.sequence}"
        try:
            # Rendering is this message's own business: whatever its data does to the e-mail library (a header
            # that cannot be encoded), it fails this one message for good. Raised out of the loop, it would leave
            # the whole claimed batch leased, to be claimed again with the poisoned row first, for ever.
            email = build_email(self.settings, job) if job.channel == "email" else None
            sms = build_sms(self.settings, job) if job.channel != "email" else ""
        except Exception as exc:
            log.warning("delivery %s cannot be rendered: %s", job.delivery_id, type(exc).__name__)
            await self._record(job, "failed", f"the message cannot be built: {exc}"[:1000])
            return
        try:
            if email is not None:
                await self.mailer.send(email, key)
                detail = message_id(self.settings, job)
            else:
                await self.sms.send(job.to, sms, key)
                detail = key
        except PermanentError as exc:
            log.warning("delivery %s failed: %s", job.delivery_id, exc)
            await self._record(job, "failed", str(exc))
            return
        except TransientError as exc:
            log.info("delivery %s will be retried: %s", job.delivery_id, exc)
            await self._record(job, "retry", str(exc))
            return
        await self._record(job, "sent", detail)
        self.sent += 1

    async def _keep_leases(self, pending: set[int]) -> None:
        """Renew the lease of the batch's unsent deliveries every third of the lease, for as long as the batch takes:
        a slow batch is never taken from a live worker, while a dead worker's claims come free one short lease
        after its last renewal."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            if pending:
                try:
                    await self.database.write(queue.renew, sorted(pending), self.worker_id, self.lease)
                except Exception:  # the database may be briefly away; the next renewal tries again
                    log.warning("renewing the leases of %d deliveries failed; retrying", len(pending))

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Claim one batch and send it; returns how many jobs it claimed. Stops early, releasing the rest."""
        jobs = await self.database.write(queue.claim, self.worker_id, self.batch, self.lease)
        pending = {job.delivery_id for job in jobs}
        heartbeat = asyncio.create_task(self._keep_leases(pending)) if jobs else None
        try:
            for index, job in enumerate(jobs):
                if stop is not None and stop.is_set():
                    await self.database.write(queue.release, [j.delivery_id for j in jobs[index:]], self.worker_id)
                    break
                await self.send(job)
                pending.discard(job.delivery_id)
                await self.progress.report_if_due()
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
        if not jobs:
            await self.progress.report()  # the queue ran dry: the last busy seconds' line, then silence
        return len(jobs)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set: finish the message in hand, give the rest of the batch back."""
        log.info("delivery worker %s started", self.worker_id)
        # Webhooks and postbacks in a loop of their own: a slow endpoint never holds up mail.
        webhooks = asyncio.create_task(self.webhooks.run(stop))
        try:
            while not stop.is_set():
                try:
                    claimed = await self.run_once(stop)
                except Exception:
                    # The database may be briefly away (restart, failover): keep the worker alive and retry.
                    log.exception("worker iteration failed; retrying")
                    claimed = 0
                if claimed == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)
        finally:
            if not stop.is_set():
                webhooks.cancel()
            await asyncio.gather(webhooks, return_exceptions=True)
            await self.close()
            log.info("delivery worker %s stopped after %d messages", self.worker_id, self.sent)

    async def close(self) -> None:
        await self.mailer.close()
        await self.sms.close()
        await self.webhooks.close()
        if self._owns_database:
            self.database.dispose()


def run_forever(settings: Settings) -> None:
    """``invitelink worker``: run until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Worker(settings).run(stop)

    asyncio.run(main())
