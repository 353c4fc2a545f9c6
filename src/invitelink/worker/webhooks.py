"""The webhook sender: POSTs the outbox of webhook messages (events to endpoints, outcomes to suppliers' postback
URLs), signed, at least once, with retries over three days.

It runs as a task of its own beside the mail loop (``worker/runner.Worker.run`` starts it), with its own claims,
so an endpoint that answers slowly or not at all holds up at most its own messages, never mail. Like the mail
queue: a claim is a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), a killed worker's claims come back when the
lease runs out, and only the lease holder records an outcome.

- Up to ``CONCURRENCY`` requests are in flight per worker, at most half of them to one target, so one slow target
  leaves the other half to everyone else.
- 2xx is delivered. Anything else (3xx included: redirects are not followed), a timeout, a refused connection or a
  target on a private address is retried, with the same ``webhook-id``, ``RETRY_AFTER_FIRST`` after the first
  attempt, and failed once three days have passed.
- An endpoint that has answered nothing successfully for ``DISABLE_AFTER`` (its ``failing_since``, set at the first
  failure after a success and cleared by the next success) is disabled at its next failure: its waiting messages
  fail, it gets no new ones, and the admin sees why in ``disabled_reason`` until re-enabling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from invitelink import __version__
from invitelink.config import Settings
from invitelink.db import Database
from invitelink.models import Supplier, WebhookAttempt, WebhookEndpoint, WebhookMessage, utcnow
from invitelink.outbound import TargetRefused, client
from invitelink.services import suppliers, webhooks
from invitelink.services.upsert import rowcount

log = logging.getLogger("invitelink.webhooks")

CONCURRENCY = 10
POLL_SECONDS = 1.0
# A claim outlives the request it is for (at most the timeout) by this much: time to record the outcome.
LEASE_MARGIN = timedelta(seconds=60)
# Rows a claim looks at per free slot: enough to fill the slots when the first due rows are one busy target's.
CANDIDATES_PER_SLOT = 4
# The part of an endpoint's answer kept with a failed attempt (for the admin's attempt log; never logged).
ANSWER_EXCERPT = 200
GIVE_UP_AFTER = timedelta(days=3)
DISABLE_AFTER = timedelta(days=3)


def _retry_schedule() -> tuple[timedelta, ...]:
    """When the retries fall due, counted from the first attempt: about 5 s, 30 s, 2 min, 10 min, 30 min, 2 h, then
    every 6 h, the last at three days."""
    offsets = [timedelta(seconds=s) for s in (5, 30, 120, 600, 1800, 7200)]
    while offsets[-1] + timedelta(hours=6) < GIVE_UP_AFTER:
        offsets.append(offsets[-1] + timedelta(hours=6))
    offsets.append(GIVE_UP_AFTER)
    return tuple(offsets)


RETRY_AFTER_FIRST = _retry_schedule()

# ("endpoint", id) or ("supplier", id): whom a message goes to, for the per-target share of the slots.
Target = tuple[str, int]


@dataclass(frozen=True)
class Job:
    """One message to send, read in the claiming transaction; the keys are not shown in a repr (nor logged)."""

    message_id: int
    endpoint_id: int | None
    supplier_id: int | None
    url: str = field(repr=False)
    body: str = field(repr=False)
    attempts: int
    # Endpoint messages: the keys that sign (the current one first, the previous one during a rotation's grace).
    keys: tuple[bytes, ...] = field(repr=False, default=())
    # Supplier postbacks: the supplier's redirect secret.
    supplier_secret: str | None = field(repr=False, default=None)

    @property
    def target(self) -> Target:
        if self.endpoint_id is not None:
            return ("endpoint", self.endpoint_id)
        assert self.supplier_id is not None  # the table's check: one or the other
        return ("supplier", self.supplier_id)


@dataclass(frozen=True)
class Result:
    """What one attempt got: an HTTP status (``error`` then describes a non-2xx answer), or only an error."""

    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def summary(self) -> str:
        """For the log and the disabled reason: the status, or the error without the endpoint's answer text."""
        return f"HTTP {self.status_code}" if self.status_code is not None else (self.error or "no answer")


# The queue in SQL -----------------------------------------------------------------------------------------------


def claim(
    session: Session,
    worker_id: str,
    slots: int,
    lease: timedelta,
    server_secret: bytes,
    in_flight: Mapping[Target, int],
    per_target: int,
) -> list[Job]:
    """Lease up to ``slots`` due messages, none to a target that already has ``per_target`` in flight here (counting
    those taken now). Expired leases count as due; messages of disabled endpoints are never due.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent workers take disjoint rows; the candidates not chosen are
    unlocked at commit. SQLite: the transaction began IMMEDIATE and holds the only write lock."""
    m, e = WebhookMessage, WebhookEndpoint
    now = utcnow()
    due = or_(
        and_(m.status == "queued", m.due_at <= now),
        and_(m.status == "sending", m.locked_until < now),
    )
    where: list[ColumnElement[bool]] = [due, e.disabled_at.is_(None)]  # supplier messages: no endpoint row, NULL
    full = {
        kind: [i for (k, i), n in in_flight.items() if k == kind and n >= per_target]
        for kind in ("endpoint", "supplier")
    }
    if full["endpoint"]:
        where.append(or_(m.endpoint_id.is_(None), m.endpoint_id.not_in(full["endpoint"])))
    if full["supplier"]:
        where.append(or_(m.supplier_id.is_(None), m.supplier_id.not_in(full["supplier"])))
    stmt = (
        select(m.id, m.endpoint_id, m.supplier_id)
        .outerjoin(e, e.id == m.endpoint_id)
        .where(*where)
        .order_by(m.due_at, m.id)
        .limit(slots * CANDIDATES_PER_SLOT)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=m, skip_locked=True)
    counts = dict(in_flight)
    chosen: list[int] = []
    for candidate in session.execute(stmt).all():
        target: Target = (
            ("endpoint", candidate.endpoint_id)
            if candidate.endpoint_id is not None
            else ("supplier", candidate.supplier_id)
        )
        if counts.get(target, 0) >= per_target:
            continue
        counts[target] = counts.get(target, 0) + 1
        chosen.append(candidate.id)
        if len(chosen) == slots:
            break
    if not chosen:
        return []
    session.execute(
        update(m)
        .where(m.id.in_(chosen))
        .values(status="sending", locked_until=now + lease, locked_by=worker_id, attempts=m.attempts + 1)
    )
    rows = session.execute(
        select(
            m.id,
            m.endpoint_id,
            m.supplier_id,
            m.url,
            m.body,
            m.attempts,
            e.secret_version,
            e.previous_secret_until,
            Supplier,
        )
        .outerjoin(e, e.id == m.endpoint_id)
        .outerjoin(Supplier, Supplier.id == m.supplier_id)
        .where(m.id.in_(chosen))
        .order_by(m.due_at, m.id)
    ).all()
    jobs = []
    for row in rows:
        keys: tuple[bytes, ...] = ()
        supplier_secret = None
        if row.endpoint_id is not None:
            keys = webhooks.signing_keys(
                server_secret, row.endpoint_id, row.secret_version, row.previous_secret_until, now
            )
        else:
            supplier_secret = suppliers.hmac_secret(server_secret, row.Supplier)
        jobs.append(
            Job(
                message_id=row.id,
                endpoint_id=row.endpoint_id,
                supplier_id=row.supplier_id,
                url=row.url,
                body=row.body,
                attempts=row.attempts,
                keys=keys,
                supplier_secret=supplier_secret,
            )
        )
    return jobs


def _mine(message_id: int, worker_id: str) -> tuple[ColumnElement[bool], ...]:
    # Only the lease holder records an outcome: a worker whose lease expired must not overwrite a newer one.
    return (WebhookMessage.id == message_id, WebhookMessage.locked_by == worker_id, WebhookMessage.status == "sending")


@dataclass(frozen=True)
class Recorded:
    # The message's new status; "lost" when this worker's lease had run out, or the message went with its endpoint.
    status: str
    # Set when this failure disabled the endpoint: why.
    disabled: str | None = None


def record(session: Session, job: Job, worker_id: str, result: Result) -> Recorded:
    """Store the attempt and what follows from it: the message delivered, queued for its next retry or failed, and
    the endpoint's health."""
    m = WebhookMessage
    now = utcnow()
    values: dict[str, object] = {"locked_until": None, "last_status_code": result.status_code}
    if result.ok:
        values.update(status="delivered", delivered_at=now, last_error=None)
    else:
        first = session.scalar(
            select(func.min(WebhookAttempt.created_at)).where(WebhookAttempt.message_id == job.message_id)
        )
        first = first or result.started_at
        step = job.attempts - 1
        if step < len(RETRY_AFTER_FIRST):
            values.update(
                status="queued", due_at=first + RETRY_AFTER_FIRST[step], last_error=(result.error or "")[:1000]
            )
        else:
            values.update(
                status="failed", last_error=f"gave up after {job.attempts} attempts: {result.error or ''}"[:1000]
            )
    owned = rowcount(session.execute(update(m).where(*_mine(job.message_id, worker_id)).values(**values))) == 1
    if owned or session.scalar(select(m.id).where(m.id == job.message_id)) is not None:
        session.add(
            WebhookAttempt(
                message_id=job.message_id,
                endpoint_id=job.endpoint_id,
                attempt=job.attempts,
                status_code=result.status_code,
                error=result.error[:1000] if result.error else None,
                duration_ms=result.duration_ms,
                created_at=result.started_at,
            )
        )
    if not owned:
        return Recorded("lost")
    disabled = _endpoint_health(session, job.endpoint_id, result, now) if job.endpoint_id is not None else None
    return Recorded(str(values["status"]), disabled)


def _endpoint_health(session: Session, endpoint_id: int, result: Result, now: datetime) -> str | None:
    """A success clears ``failing_since``; a failure sets it if unset, and disables the endpoint once it has been
    failing for ``DISABLE_AFTER``. Returns the reason when it disabled the endpoint."""
    e = WebhookEndpoint
    if result.ok:
        session.execute(update(e).where(e.id == endpoint_id, e.failing_since.is_not(None)).values(failing_since=None))
        return None
    session.execute(
        update(e).where(e.id == endpoint_id, e.failing_since.is_(None)).values(failing_since=result.started_at)
    )
    since = session.scalar(select(e.failing_since).where(e.id == endpoint_id, e.disabled_at.is_(None)))
    if since is None or now - since < DISABLE_AFTER:
        return None
    reason = f"failing since {since:%Y-%m-%d %H:%M} UTC: last answer {result.summary}"
    return reason if webhooks.disable(session, endpoint_id, reason, now) else None


# Sending --------------------------------------------------------------------------------------------------------


async def _answer_excerpt(response: httpx.Response) -> str:
    """The start of an error answer, as text the database can store (no NUL, which PostgreSQL refuses)."""
    data = b""
    async for chunk in response.aiter_bytes():  # decoded: an error page may come gzipped
        data += chunk
        if len(data) >= ANSWER_EXCERPT:
            break
    return data[:ANSWER_EXCERPT].decode("utf-8", "replace").replace("\x00", "").strip()


def _describe(exc: Exception) -> str:
    """A transport error as the attempt log shows it (httpx's messages name the address, not the URL)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _drain(response: httpx.Response) -> None:
    """Read a small answer to its end, so the connection can be reused; a large one is cut off (and closed)."""
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > 65_536:
            break


class WebhookSender:
    """Claims due messages and POSTs them, ``CONCURRENCY`` at a time."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        worker_id: str | None = None,
        *,
        concurrency: int = CONCURRENCY,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.settings = settings
        self.database = database
        self.worker_id = worker_id or f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        self.per_target = max(1, concurrency // 2)
        self.poll_seconds = poll_seconds
        self.timeout = settings.webhook_timeout_seconds
        self.lease = timedelta(seconds=self.timeout) + LEASE_MARGIN
        self.client = client(
            allow_private=settings.webhook_allow_private, timeout=self.timeout, connections=concurrency
        )
        self.in_flight: dict[Target, int] = {}
        self.delivered = 0

    async def _claim(self, slots: int) -> list[Job]:
        jobs = await self.database.write(
            claim,
            self.worker_id,
            slots,
            self.lease,
            self.settings.server_secret,
            dict(self.in_flight),
            self.per_target,
        )
        for job in jobs:
            self.in_flight[job.target] = self.in_flight.get(job.target, 0) + 1
        return jobs

    async def attempt(self, job: Job) -> Result:
        """One POST of the message, signed afresh (the timestamp is this attempt's); never raises for the target's
        failings."""
        started_at = utcnow()
        clock = time.monotonic()
        timestamp = int(time.time())
        message_id = webhooks.webhook_id(job.message_id)
        headers = {
            "content-type": "application/json",
            "user-agent": f"invitelink/{__version__}",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
        }
        if job.supplier_secret is not None:
            headers["x-invitelink-signature"] = webhooks.postback_signature(job.supplier_secret, job.body)
        else:
            headers["webhook-signature"] = webhooks.standard_signature(job.keys, message_id, timestamp, job.body)
        status: int | None = None
        error: str | None = None
        try:
            # httpx's timeout bounds each phase (connect, each read); this bounds the whole attempt.
            async with asyncio.timeout(self.timeout):
                async with self.client.stream("POST", job.url, content=job.body.encode(), headers=headers) as answer:
                    status = answer.status_code
                    if 200 <= status < 300:
                        await _drain(answer)
                    else:
                        error = f"HTTP {status}"
                        if 300 <= status < 400:
                            error += " (redirects are not followed)"
                        excerpt = await _answer_excerpt(answer)
                        error += f": {excerpt}" if excerpt else ""
        except TargetRefused as exc:
            error = exc.message
        except (TimeoutError, httpx.HTTPError) as exc:
            # After the status line, the answer stands (a 2xx is delivered) whatever happens to its body.
            if status is None:
                error = f"no answer within {self.timeout:g} s" if isinstance(exc, TimeoutError) else _describe(exc)
        return Result(started_at, int((time.monotonic() - clock) * 1000), status, error)

    async def deliver(self, job: Job) -> None:
        """Send one claimed message and record the outcome; never raises."""
        try:
            result = await self.attempt(job)
            if not result.ok:
                target = f"endpoint {job.endpoint_id}" if job.endpoint_id is not None else f"supplier {job.supplier_id}"
                # Ids and the status only: the payload, the URL (it may carry credentials) and secrets stay out.
                log.info(
                    "webhook message %s to %s failed (attempt %d): %s",
                    job.message_id,
                    target,
                    job.attempts,
                    result.summary,
                )
            recorded = await self.database.write(record, job, self.worker_id, result)
            if recorded.disabled is not None:
                log.warning("webhook endpoint %s disabled: %s", job.endpoint_id, recorded.disabled)
            if result.ok:
                self.delivered += 1
        except Exception:
            # The database may be briefly away: the lease runs out and the message is sent again (at least once).
            log.exception("webhook message %s: recording the attempt failed", job.message_id)
        finally:
            left = self.in_flight.get(job.target, 1) - 1
            if left > 0:
                self.in_flight[job.target] = left
            else:
                self.in_flight.pop(job.target, None)

    async def run_once(self) -> int:
        """Claim what is due (up to ``concurrency``), send it concurrently, record every outcome; returns how many
        messages it claimed."""
        jobs = await self._claim(self.concurrency)
        await asyncio.gather(*(self.deliver(job) for job in jobs))
        return len(jobs)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep up to ``concurrency`` sends in flight until ``stop`` is set, then let those in hand finish (each
        bounded by the timeout)."""
        tasks: set[asyncio.Task[None]] = set()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                free = self.concurrency - len(tasks)
                if free == 0:
                    # Every slot busy: wait for one to free.
                    await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    jobs = await self._claim(free)
                except Exception:
                    # The database may be briefly away (restart, failover): keep going and retry.
                    log.exception("webhook claim failed; retrying")
                    jobs = []
                for job in jobs:
                    task = asyncio.create_task(self.deliver(job))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if len(jobs) < free:
                    # Nothing more is due now: look again after the poll interval (sends in flight go on).
                    await asyncio.wait({stopping}, timeout=self.poll_seconds)
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            log.info("webhook sender %s stopped after %d delivered", self.worker_id, self.delivered)

    async def close(self) -> None:
        await self.client.aclose()
