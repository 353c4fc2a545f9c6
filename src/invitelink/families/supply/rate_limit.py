"""The supply API's rate limit: calls per key and minute, a sliding window in this process."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from invitelink.services.errors import RateLimited


class RateLimiter:
    """Calls per key and minute in this process (a sliding window). Per instance: with N instances behind a
    balancer a key gets up to N times the limit, which still stops a runaway client."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - 60:
                calls.popleft()
            if len(calls) >= self.per_minute:
                raise RateLimited(
                    f"Rate limit exceeded: {self.per_minute} requests per minute",
                    retry_after=math.ceil(calls[0] + 60 - now),
                )
            calls.append(now)
            if len(self._calls) > 10_000:  # forget idle keys
                for stale in [k for k, v in self._calls.items() if not v or v[-1] <= now - 60]:
                    del self._calls[stale]
