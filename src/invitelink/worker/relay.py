"""Whether a channel's relay (the SMTP server, the SMS gateway, the outbox directory) takes mail at all.

A relay failure (``transports.RelayUnavailable``) is nothing about the message in hand, so it costs no delivery an
attempt: the worker gives its claimed, unsent deliveries of that channel back to the queue, claims none of the
channel while it is paused, and probes the relay instead: 5 s after the failure, then twice as long each time up to
a cap. A probe that passes resumes sending; the outage is over when a message has gone through the relay (or
nothing of the channel waits). A relay that answers probes but still fails the message after stays in the same
outage, with the same growing delay: one outage is one WARNING when it starts, a reminder at most every few minutes
while it lasts, and one INFO line when it ends, whatever the number of deliveries or probes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Gauge

PROBE_FIRST_SECONDS = 5.0

# Set by the worker of this process (embedded in ``serve``, where /metrics shows it). With ``serve --workers N``
# each process runs a worker and the lowest value shows: 0 when any of them finds its relay down.
RELAY_UP = Gauge(
    "invitelink_worker_relay_up",
    "1 while this process's delivery worker sends on the channel, 0 while the channel's relay is down and sending "
    "is paused.",
    ["channel"],
    multiprocess_mode="livemin",
)


def duration(seconds: float) -> str:
    """How long an outage lasted, as a reader wants it: "45 s", "4 min 10 s", "2 h 13 min", "3 d 4 h"."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


class Relay:
    """One channel's relay as the worker sees it: up; down (paused, probed with a growing delay); or on trial (a
    probe passed, sending resumed, the outage not over until a message goes through)."""

    def __init__(
        self,
        channel: str,
        label: str,
        *,
        probe_first: float = PROBE_FIRST_SECONDS,
        probe_max: float = 300.0,
        remind_every: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.label = label
        self.probe_first = probe_first
        self.probe_max = max(probe_max, probe_first)
        self.remind_every = remind_every
        self.clock = clock
        self.down_since: float | None = None
        self.reason = ""
        self.delay = probe_first
        self.next_probe = 0.0
        self.last_line = 0.0
        self.on_trial = False
        RELAY_UP.labels(channel).set(1)

    @property
    def down(self) -> bool:
        """In an outage (paused or on trial)."""
        return self.down_since is not None

    @property
    def paused(self) -> bool:
        """Nothing of this channel may be claimed."""
        return self.down_since is not None and not self.on_trial

    def probe_due(self) -> bool:
        return self.paused and self.clock() >= self.next_probe

    def failed(self, reason: str) -> bool:
        """A relay failure (a send's or a probe's): pause and schedule the next probe. True when this opens an
        outage, which the caller announces; within one, the delay keeps growing."""
        now = self.clock()
        opened = self.down_since is None
        if opened:
            self.down_since, self.delay, self.last_line = now, self.probe_first, now
        else:
            self.delay = min(self.delay * 2, self.probe_max)
        self.reason = reason
        self.on_trial = False
        self.next_probe = now + self.delay
        RELAY_UP.labels(self.channel).set(0)
        return opened

    def probe_passed(self) -> None:
        self.on_trial = True

    def recovered(self) -> float | None:
        """The relay took a message (or answered with nothing left to send): the outage's length in seconds when
        this ends one, else None."""
        if self.down_since is None:
            return None
        length = self.clock() - self.down_since
        self.down_since, self.on_trial, self.reason = None, False, ""
        RELAY_UP.labels(self.channel).set(1)
        return length

    def reminder_due(self) -> float | None:
        """How long the relay has been down, when a reminder line is due (at most every ``remind_every`` seconds;
        0 or less: never), else None."""
        if self.down_since is None or self.remind_every <= 0:
            return None
        now = self.clock()
        if now - self.last_line < self.remind_every:
            return None
        self.last_line = now
        return now - self.down_since
