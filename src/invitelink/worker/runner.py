"""The worker loop, shared by ``invitelink worker`` and the worker embedded in ``invitelink serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from invitelink.config import Settings
from invitelink.db import Database
from invitelink.worker import queue
from invitelink.worker.messages import build_email, build_sms, message_id
from invitelink.worker.progress import Progress
from invitelink.worker.relay import PROBE_FIRST_SECONDS, Relay, duration
from invitelink.worker.transports import (
    Mailer,
    PermanentError,
    RelayUnavailable,
    Settle,
    TransientError,
    make_mailer,
    make_sms,
    settled,
)
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
        probe_first_seconds: float = PROBE_FIRST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.database = database or Database(settings.database_url, pool_size=2)
        self._owns_database = database is None
        self.worker_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.batch = batch or settings.worker_batch
        self.lease = lease or timedelta(seconds=settings.worker_lease_seconds)
        self.poll_seconds = poll_seconds
        # One transport per connection; the first also probes a relay that went down.
        self.mailers = [make_mailer(settings) for _ in range(settings.smtp_connections)]
        self.mailer = self.mailers[0]
        self.sms = make_sms(settings)
        self.webhooks = WebhookSender(settings, self.database, self.worker_id)
        self.sent = 0
        # Outcome records of messages the relay took, still being written -> their delivery: their leases are
        # renewed meanwhile, and a batch ends only once they are stored.
        self.recording: dict[asyncio.Task[None], int] = {}
        self.progress = Progress(self.database)
        self.retry_window = timedelta(hours=settings.delivery_retry_hours)
        self.relays = {
            channel: Relay(
                channel,
                transport.label,
                probe_first=probe_first_seconds,
                probe_max=settings.relay_probe_max_seconds,
                remind_every=settings.relay_reminder_minutes * 60,
                clock=clock,
            )
            for channel, transport in (("email", self.mailer), ("sms", self.sms))
        }

    async def _record(self, job: queue.Job, outcome: str, detail: str) -> None:
        # A few indexed statements, once per message: the hot path's group commit, so the outcomes of the
        # connections sending at once share a commit on PostgreSQL too (on SQLite every write does). Shielded: a
        # lane cancelled meanwhile (a sibling's error, shutdown) must not drop the record of a message that went.
        await asyncio.shield(
            self.database.write_hot(queue.record_outcome, job, self.worker_id, outcome, detail, self.retry_window)
        )
        self.progress.count(outcome)

    async def _waiting(self, channel: str) -> int | None:
        try:
            return await self.database.read(queue.waiting, channel)
        except Exception:  # an outage line must never stop the worker; the database may be briefly away
            return None

    async def _relay_failed(self, job: queue.Job, reason: str) -> None:
        """The relay refused the job's message as it would any other: pause the channel (the caller gives the rest
        of the batch's jobs of that channel back)."""
        relay = self.relays[job.channel]
        on_trial = relay.on_trial
        # Paused first: should the write below fail, the channel stays paused all the same.
        opened = relay.failed(reason)
        if on_trial:
            # The relay had just passed a probe, so this message may be what it fails on: this try counts (a retry
            # with its backoff, out of the relay's way). Otherwise a message that upset the relay every time would
            # hold the whole channel, probed and resumed for ever.
            await self._record(job, "retry", reason)
        else:
            await self.database.write(queue.release, [job.delivery_id], self.worker_id)
        if opened:
            log.warning(
                "%s is down (%s): sending paused, %s deliveries waiting; none loses an attempt while it is down",
                relay.label,
                reason,
                await self._waiting(job.channel),
                extra={"relay": relay.label, "channel": job.channel},
            )

    async def _relay_back(self, relay: Relay) -> None:
        length = relay.recovered()
        if length is not None:
            log.info(
                "%s back after %s; %s deliveries waiting",
                relay.label,
                duration(length),
                await self._waiting(relay.channel),
                extra={"relay": relay.label, "channel": relay.channel, "down_seconds": round(length)},
            )

    async def _probe_relays(self) -> None:
        """Probe each paused relay whose delay ran out; remind of a long outage now and then."""
        for channel, relay in self.relays.items():
            if relay.probe_due():
                transport = self.mailer if channel == "email" else self.sms
                try:
                    await transport.probe()
                except Exception as exc:
                    # A transport's probe raises RelayUnavailable; anything else is a failed probe all the same.
                    relay.failed(str(exc) if isinstance(exc, RelayUnavailable) else type(exc).__name__)
                else:
                    relay.probe_passed()
            down_for = relay.reminder_due()
            if down_for is not None:
                log.warning(
                    "%s still down after %s (%s); %s deliveries waiting",
                    relay.label,
                    duration(down_for),
                    relay.reason,
                    await self._waiting(channel),
                    extra={"relay": relay.label, "channel": channel, "down_seconds": round(down_for)},
                )

    async def send(
        self, job: queue.Job, mailer: Mailer | None = None, settle: Settle = settled
    ) -> tuple[bool, asyncio.Task[None] | None]:
        """Send one job (e-mail over ``mailer``, by default the first connection) and record the outcome; never
        raises for a transport's refusal (it does raise the previous record's error, from ``settle``). Returns
        whether the relay answered (False: it went down instead, and the job went back to the queue or counted a
        try: ``_relay_failed``) and, for a message the relay took, the record of its outcome, still being written
        (kept in ``self.recording`` until stored). ``settle`` is awaited before the relay takes the message (the
        record of the connection's previous one)."""
        key = f"delivery-{job.delivery_id}-{job.sequence}"
        relay = self.relays[job.channel]
        # Whether the relay was up, or on trial, when this send began: a send that began before another connection
        # found the relay down must not end that outage when it succeeds.
        outage_at_start = relay.down_since
        try:
            # Rendering is this message's own business: whatever its data does to the e-mail library (a header
            # that cannot be encoded), it fails this one message for good. Raised out of the loop, it would leave
            # the whole claimed batch leased, to be claimed again with the poisoned row first, for ever.
            email = build_email(self.settings, job) if job.channel == "email" else None
            sms = build_sms(self.settings, job) if job.channel != "email" else ""
        except Exception as exc:
            log.warning("delivery %s cannot be rendered: %s", job.delivery_id, type(exc).__name__)
            await self._record(job, "failed", f"the message cannot be built: {exc}"[:1000])
            return True, None
        recording = None
        try:
            if email is not None:
                await (mailer or self.mailer).send(email, key, settle)
                detail = message_id(self.settings, job)
            else:
                await settle()
                await self.sms.send(job.to, sms, key)
                detail = key
        except RelayUnavailable as exc:
            await self._relay_failed(job, str(exc))
            return False, None
        except PermanentError as exc:
            log.warning("delivery %s failed: %s", job.delivery_id, exc)
            await self._record(job, "failed", str(exc))
        except TransientError as exc:
            log.info("delivery %s will be retried: %s", job.delivery_id, exc)
            await self._record(job, "retry", str(exc))
        else:
            # Written while the connection's next message gets its envelope (its ``settle``).
            recording = asyncio.create_task(self._record(job, "sent", detail))
            self.recording[recording] = job.delivery_id
            recording.add_done_callback(self.recording.pop)
            self.sent += 1
        # The relay answered for this message (took it, or refused it for its recipient): it is up, unless another
        # connection found it down after this send began.
        if relay.down_since is None or relay.down_since == outage_at_start:
            await self._relay_back(relay)
        return True, recording

    async def _records_stored(self) -> None:
        """Wait for every outcome record still being written. A lane awaits its own and raises its error; one left
        behind by a lane that was cancelled in between is logged here."""
        for task, delivery_id in list(self.recording.items()):
            try:
                await asyncio.shield(task)
            except Exception:
                log.exception("recording the outcome of delivery %s failed", delivery_id)

    async def _keep_leases(self, pending: set[int]) -> None:
        """Renew the lease of the batch's unsent deliveries (``pending``) and of the sent ones whose record is still
        being written, every third of the lease, for as long as the batch takes: a slow batch is never taken from a
        live worker (nor a message whose record waits on a busy writer, to be sent again), while a dead worker's
        claims come free one short lease after its last renewal."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            held = pending | set(self.recording.values())
            if held:
                try:
                    await self.database.write(queue.renew, sorted(held), self.worker_id, self.lease)
                except Exception:  # the database may be briefly away; the next renewal tries again
                    log.warning("renewing the leases of %d deliveries failed; retrying", len(held))

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Claim one batch of the channels whose relay is not paused and send it; returns how many jobs it claimed.
        Stops early, releasing the rest; a relay that goes down gets its channel's rest released."""
        await self._probe_relays()
        channels = [channel for channel, relay in self.relays.items() if not relay.paused]
        jobs = (
            await self.database.write(queue.claim, self.worker_id, self.batch, self.lease, channels) if channels else []
        )
        for channel in channels:
            relay = self.relays[channel]
            if relay.on_trial and all(job.channel != channel for job in jobs) and await self._waiting(channel) == 0:
                await self._relay_back(relay)  # it passed its probe and nothing waits to go through it
        pending = {job.delivery_id for job in jobs}
        heartbeat = asyncio.create_task(self._keep_leases(pending)) if jobs else None
        # The connections take the batch's jobs in order from one iterator, each sending one message at a time. A
        # message's outcome is recorded while the next one's envelope goes out, and that record is stored before
        # the relay takes the next message: so at most one message per connection is ever taken by the relay and
        # not yet recorded (what a SIGKILL can make the next worker send again).
        todo = iter(jobs)
        in_flight: set[int] = set()

        async def lane(mailer: Mailer) -> None:
            # The outcome record of this connection's previous message, while it is being written.
            recording: asyncio.Task[None] | None = None

            async def settle() -> None:
                if recording is not None:
                    # Shielded: this lane cancelled (a sibling's error) must not cancel the record of a message
                    # that went.
                    await asyncio.shield(recording)

            try:
                for job in todo:
                    if stop is not None and stop.is_set():
                        return
                    if job.delivery_id not in pending:
                        continue  # given back when its relay went down
                    if self.relays[job.channel].paused:
                        # Another connection found the relay down and is giving this channel's jobs back: none
                        # may start now (taken by the relay all the same, it would end the outage it began in).
                        continue
                    in_flight.add(job.delivery_id)
                    try:
                        delivered, recorded = await self.send(job, mailer, settle)
                    finally:
                        in_flight.discard(job.delivery_id)
                    if recorded is not None:
                        await settle()  # done already (the transport awaited it), so none is left unawaited
                        recording = recorded
                    pending.discard(job.delivery_id)
                    if not delivered:
                        # Every message of this channel would meet the same relay: give back untried the ones no
                        # connection has taken yet. Those other connections are sending now finish as they will,
                        # and record their own outcome (given back, they would be sent again).
                        rest = [
                            j.delivery_id
                            for j in jobs
                            if j.channel == job.channel and j.delivery_id in pending and j.delivery_id not in in_flight
                        ]
                        if rest:
                            # Out of ``pending`` before the release is awaited: meanwhile another connection must
                            # not take one of them from the iterator and send it (its outcome would find it released).
                            pending.difference_update(rest)
                            await self.database.write(queue.release, rest, self.worker_id)
                    await self.progress.report_if_due()
            finally:
                if recording is not None:
                    # Shielded: a lane cancelled by a sibling's error still lets a message that went be recorded.
                    await asyncio.shield(recording)

        try:
            async with asyncio.TaskGroup() as lanes:
                for mailer in self.mailers[: max(1, min(len(self.mailers), len(jobs)))]:
                    lanes.create_task(lane(mailer))
            if pending:  # stopped early: the rest goes back untried
                rest = [j.delivery_id for j in jobs if j.delivery_id in pending]
                await self.database.write(queue.release, rest, self.worker_id)
        finally:
            await self._records_stored()
            if heartbeat is not None:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
        if jobs:
            await self.progress.report_if_due()  # the batch's last records, stored after its lanes' last look
        else:
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
        for mailer in self.mailers:
            await mailer.close()
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
