"""The worker's progress lines: while it sends, one line every few seconds (sent, failed, retried, rate, queue
depth); while it idles, nothing. The worker counts each recorded outcome and asks after each message whether a
line is due; the depth is read only when a line is written."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from invitelink.db import Database
from invitelink.services.metrics import due_deliveries

log = logging.getLogger("invitelink.worker.progress")

INTERVAL_SECONDS = 5.0
# worker/queue.record_outcome's outcomes, as the line names them.
OUTCOMES = {"sent": "sent", "failed": "failed", "retry": "retried"}


class Progress:
    def __init__(
        self,
        database: Database,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.interval = interval
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.since = clock()

    def count(self, outcome: str) -> None:
        if not self.counts:
            # The first outcome after a quiet spell starts the interval: the rate is not diluted by idle time.
            self.since = self.clock()
        self.counts[OUTCOMES.get(outcome, outcome)] += 1

    async def report_if_due(self) -> None:
        if self.counts and self.clock() - self.since >= self.interval:
            await self.report()

    async def report(self) -> None:
        """Write the line for the outcomes counted so far (none: no line) and start counting afresh. The counts are
        taken before the depth is read: connections report concurrently, and an outcome counted meanwhile belongs
        to the next line (read after the wait, a second report wrote "0 sent" and a count could be cleared unseen)."""
        if not self.counts:
            return
        counts, self.counts = self.counts, Counter()
        now = self.clock()
        elapsed = max(now - self.since, 1e-3)
        self.since = now
        try:
            depth: int | None = await self.database.read(due_deliveries)
        except Exception:  # a progress line must never stop the worker; the database may be briefly away
            depth = None
        figures = {
            "sent": counts["sent"],
            "failed": counts["failed"],
            "retried": counts["retried"],
            "per_second": round(sum(counts.values()) / elapsed, 1),
            "queue_depth": depth,
        }
        log.info(
            "worker progress: %(sent)d sent, %(failed)d failed, %(retried)d retried, %(per_second).1f/s, "
            "queue depth %(queue_depth)s",
            figures,
            extra=figures,
        )
