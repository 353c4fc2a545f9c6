"""Rate limits shared by the API families: exact moving windows from the ``limits`` library, kept in Redis when
``INVITELINK_REDIS_URL`` is set (one count for every process and instance) and in this process's memory otherwise.

The strategy is the moving window: each accepted call is one timestamp, and a call is accepted while fewer than
``amount`` timestamps lie in the last ``seconds``. That is exact: no window of that length, wherever it starts, ever
holds more. A fixed window lets twice the limit through around a boundary, and the sliding window counter
estimates the previous window's share, so it can let a burst past the limit or refuse below it.

Redis: ``limits`` runs each hit as one Lua script (check and record atomically), so two instances racing for the last
slot cannot both have it; each key expires on its own after its window, and nothing sweeps. When Redis cannot be
reached, the limits fall back to this process's memory (what a single instance counts by itself), with one warning
per outage and Redis tried again every few seconds: a limit never takes the service down with it, and never turns
into no limit at all.

Memory: ``limits``' own memory storages sweep every key after each call (the async one with a thread hop per key),
which is the O(n)-per-request cost this module exists to avoid. ``MemoryWindows`` forgets lazily instead: keys are
kept in order of their newest entry, so the expired ones are always at the front, and each call drops only those
(amortised O(1)), with a bound on the number of keys.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from hashlib import sha256
from typing import TYPE_CHECKING, Annotated, TypeVar, cast

from fastapi import Depends, Request
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MovingWindowSupport, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from invitelink.security import derive_key
from invitelink.services.errors import RateLimited

if TYPE_CHECKING:
    from invitelink.config import Settings

log = logging.getLogger("invitelink.rate_limits")
T = TypeVar("T")

# A limit check must never hold a request up for long: Redis on the same network answers in a millisecond, so a
# second means it is gone (or the event loop is swamped, when a request waits anyway).
REDIS_TIMEOUT_SECONDS = 1.0
# Connections per process and event loop. Calls queue for one rather than opening more: a burst of hundreds of
# requests would otherwise open hundreds of connections at once, and time out doing it.
REDIS_CONNECTIONS = 16
# After a failed call, Redis is left alone this long (the limits are counted in memory meanwhile), so an outage
# costs one timeout every few seconds rather than one per request.
REDIS_RETRY_SECONDS = 5.0
# Keys kept per window length in memory mode; beyond it the least recently used are dropped (their counts are
# forgotten, which errs on the side of letting a call through). A key costs a few hundred bytes.
MEMORY_MAX_KEYS = 100_000


@dataclass(frozen=True)
class Rule:
    """At most ``amount`` accepted calls in any ``seconds``, per identifier, under the name ``name``."""

    name: str
    amount: int
    seconds: int
    message: str

    @cached_property
    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(self.amount, self.seconds, namespace=self.name)


def rule(name: str, amount: int, seconds: int, message: str) -> Rule | None:
    """A rule, or None when ``amount`` is 0 or less (the setting turns the limit off)."""
    return Rule(name, amount, seconds, message) if amount > 0 else None


@dataclass(frozen=True)
class Rules:
    """Every limit the service applies, from the settings (README, "Rate limits")."""

    supply: Rule | None
    send_mail_minute: Rule | None
    send_mail_hour: Rule | None
    login_account: Rule | None
    login_address: Rule | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        per_minute = settings.supplier_requests_per_minute
        mail_minute, mail_hour = settings.sosci_send_mail_per_minute, settings.sosci_send_mail_per_hour
        window = settings.login_failure_window_seconds
        flood = "flood protection: send_mail calls of one API key are limited to"
        failed = "too many failed logins; try again later"
        return cls(
            supply=rule("supply", per_minute, 60, f"Rate limit exceeded: {per_minute} requests per minute"),
            send_mail_minute=rule("send-mail-minute", mail_minute, 60, f"{flood} {mail_minute} per minute"),
            send_mail_hour=rule("send-mail-hour", mail_hour, 3600, f"{flood} {mail_hour} per hour"),
            # One message for both, so the answer does not tell which limit an e-mail address ran into.
            login_account=rule("login-account", settings.login_failures_per_account, window, failed),
            login_address=rule("login-address", settings.login_failures_per_address, window, failed),
        )


class MemoryWindows(Storage, MovingWindowSupport):
    """Moving windows in this process's memory, for ``limits``' MovingWindowRateLimiter; used from one event loop.

    Per window length, keys sit in an OrderedDict in the order of their newest entry (an accepted hit moves its
    key to the end), so a key whose newest entry has expired is at the front: each call pops those, and stops at
    the first live one. A key holds its ``limit`` newest timestamps, oldest first."""

    STORAGE_SCHEME = None  # not registered for a storage URI: built directly

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        super().__init__()
        self.max_keys = max_keys
        self._windows: dict[int, OrderedDict[str, list[float]]] = {}
        self._flags: OrderedDict[str, float] = OrderedDict()  # key -> when it expires, in order of setting

    def _live(self, expiry: int, now: float) -> OrderedDict[str, list[float]]:
        windows = self._windows.setdefault(expiry, OrderedDict())
        while windows:
            key, times = next(iter(windows.items()))
            if times[-1] > now - expiry and len(windows) <= self.max_keys:
                break
            del windows[key]
        return windows

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        windows = self._live(expiry, now)
        times = windows.get(key, [])
        # As limits' Redis script: refused while the entry ``limit - amount`` places from the newest is in the window.
        if len(times) > limit - amount and times[-(limit - amount + 1)] >= now - expiry:
            return False
        times.extend([now] * amount)
        del times[:-limit]
        windows[key] = times
        windows.move_to_end(key)
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        times = self._live(expiry, now).get(key, [])
        first = bisect.bisect_right(times, now - expiry)
        return (times[first], len(times) - first) if first < len(times) else (now, 0)

    def give_back(self, key: str, expiry: int) -> None:
        """Forget the newest entry of ``key``: a call counted in advance that turned out not to count."""
        windows = self._windows.get(expiry)
        times = windows.get(key) if windows is not None else None
        if windows is not None and times:
            times.pop()
            if not times:
                del windows[key]

    def set_flag(self, key: str, seconds: int) -> None:
        now = time.time()
        while self._flags and (next(iter(self._flags.values())) <= now or len(self._flags) >= self.max_keys):
            self._flags.popitem(last=False)
        self._flags[key] = now + seconds
        self._flags.move_to_end(key)

    def has_flag(self, key: str) -> bool:
        return self._flags.get(key, 0.0) > time.time()

    def size(self) -> int:
        """How many keys are held (windows and flags): what a test of "no state for X" reads."""
        return sum(len(windows) for windows in self._windows.values()) + len(self._flags)

    # The rest of limits' Storage interface; the moving window strategy does not call it.
    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("MemoryWindows only keeps moving windows")

    async def get(self, key: str) -> int:
        raise NotImplementedError("MemoryWindows only keeps moving windows")

    async def get_expiry(self, key: str) -> float:
        raise NotImplementedError("MemoryWindows only keeps moving windows")

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = self.size()
        self._windows.clear()
        self._flags.clear()
        return count

    async def clear(self, key: str) -> None:
        for windows in self._windows.values():
            windows.pop(key, None)
        self._flags.pop(key, None)


class _Backend:
    """What the limits need from a storage: a moving-window hit, its reset time, a give-back, and flags."""

    def __init__(self, storage: Storage) -> None:
        self.strategy = MovingWindowRateLimiter(storage)

    async def hit(self, item: RateLimitItem, identity: str) -> float | None:
        """None when accepted; else when (epoch seconds) the window frees a slot."""
        if await self.strategy.hit(item, identity):
            return None
        return float((await self.strategy.get_window_stats(item, identity)).reset_time)

    async def give_back(self, item: RateLimitItem, identity: str) -> None:
        raise NotImplementedError

    async def set_flag(self, key: str, seconds: int) -> None:
        raise NotImplementedError

    async def has_flag(self, key: str) -> bool:
        raise NotImplementedError


class _Memory(_Backend):
    def __init__(self) -> None:
        self.windows = MemoryWindows()
        super().__init__(self.windows)

    async def give_back(self, item: RateLimitItem, identity: str) -> None:
        self.windows.give_back(item.key_for(identity), item.get_expiry())

    async def set_flag(self, key: str, seconds: int) -> None:
        self.windows.set_flag(key, seconds)

    async def has_flag(self, key: str) -> bool:
        return self.windows.has_flag(key)


class _Redis(_Backend):
    """limits' Redis storage (redis-py's asyncio client) and a client of its own on the same connection pool for
    what limits has no call for. Connections belong to the event loop that opened them: one of these per loop."""

    def __init__(self, url: str, prefix: str) -> None:
        # No retries, short timeouts: an unreachable Redis is noticed within REDIS_TIMEOUT_SECONDS, then the
        # memory fallback takes over (RateLimits._run).
        self.pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_CONNECTIONS,
            timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self.prefix = prefix
        self.client: Redis = Redis(connection_pool=self.pool)
        storage = RedisStorage(
            f"async+{url}",
            implementation="redispy",
            key_prefix=prefix,
            connection_pool=self.pool,  # type: ignore[arg-type]  # passed on to redis-py's client
        )
        super().__init__(storage)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def give_back(self, item: RateLimitItem, identity: str) -> None:
        # limits keeps a window as a list, newest first: dropping the newest entry takes one call back.
        # (redis-py types its commands for the sync and async clients at once: the cast picks the async one.)
        await cast("Awaitable[object]", self.client.lpop(self._key(item.key_for(identity))))

    async def set_flag(self, key: str, seconds: int) -> None:
        await self.client.set(self._key(key), b"1", ex=seconds)

    async def has_flag(self, key: str) -> bool:
        return bool(await self.client.exists(self._key(key)))

    async def close(self) -> None:
        await self.client.aclose()
        await self.pool.disconnect()


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, RedisError | OSError | asyncio.TimeoutError)


class RateLimits:
    """The app's limits (``app.state.rate_limits``): ``hit`` counts a call or raises RateLimited with the seconds
    until the window frees a slot (the route's family renders it as 429 with Retry-After)."""

    def __init__(self, settings: Settings) -> None:
        self.rules = Rules.from_settings(settings)
        self.redis_url = settings.redis_url
        self.prefix = settings.redis_key_prefix
        self._settings = settings
        self.memory = _Memory()
        self._redis: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Redis] = weakref.WeakKeyDictionary()
        self._redis_down_until = 0.0
        self._outage = False

    @cached_property
    def _identity_key(self) -> bytes:
        # Identifiers (key digests, e-mail addresses, client addresses) are stored as keyed digests: Redis never
        # holds an address, and keys have a fixed length whatever was sent. Read at the first hit, not at startup.
        return derive_key(self._settings.server_secret, "rate-limits")

    def identity(self, value: str) -> str:
        return hmac.new(self._identity_key, value.encode(), sha256).hexdigest()[:32]

    def redis(self) -> _Redis | None:
        """This event loop's Redis backend, or None without Redis (or while it is left alone after a failure)."""
        if self.redis_url is None or time.monotonic() < self._redis_down_until:
            return None
        loop = asyncio.get_running_loop()
        backend = self._redis.get(loop)
        if backend is None:
            backend = self._redis[loop] = _Redis(self.redis_url, self.prefix)
        return backend

    async def _run(self, op: Callable[[_Backend], Awaitable[T]]) -> T:
        backend = self.redis()
        if backend is not None:
            try:
                result = await op(backend)
            except Exception as exc:
                if not _unavailable(exc):
                    raise
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                if not self._outage:
                    self._outage = True
                    # The error type only: a Redis URL in an error's text may carry a password.
                    log.warning(
                        "Redis unreachable (%s): rate limits are counted per process until it answers again",
                        type(exc).__name__,
                    )
            else:
                if self._outage:
                    self._outage = False
                    log.info("Redis answers again: rate limits are shared again")
                return result
        return await op(self.memory)

    async def hit(self, rule: Rule | None, value: str) -> None:
        """Count one call of ``value`` (a credential's digest, an address) under ``rule``; RateLimited when its
        window is full. ``None`` (a limit turned off) accepts everything."""
        if rule is None:
            return
        identity = self.identity(value)
        reset_at = await self._run(lambda backend: backend.hit(rule.item, identity))
        if reset_at is not None:
            raise RateLimited(rule.message, retry_after=max(1, math.ceil(reset_at - time.time())))

    async def hit_all(self, *checks: tuple[Rule | None, str]) -> None:
        """Count the call under every rule, or under none: a refusal gives back what the rules before it took."""
        taken: list[tuple[Rule | None, str]] = []
        try:
            for check in checks:
                await self.hit(*check)
                taken.append(check)
        except RateLimited:
            for earlier in taken:
                await self.give_back(*earlier)
            raise

    async def give_back(self, rule: Rule | None, value: str) -> None:
        """Take one counted call of ``value`` back (it was counted in advance and did not count after all)."""
        if rule is None:
            return
        identity = self.identity(value)
        await self._run(lambda backend: backend.give_back(rule.item, identity))

    async def remember(self, name: str, value: str, seconds: int) -> None:
        """Set a flag for ``value`` under ``name`` for ``seconds``."""
        key = f"{name}/{self.identity(value)}"
        await self._run(lambda backend: backend.set_flag(key, seconds))

    async def remembered(self, name: str, value: str) -> bool:
        key = f"{name}/{self.identity(value)}"
        return await self._run(lambda backend: backend.has_flag(key))

    async def aclose(self) -> None:
        """Close this loop's Redis connections (the app's shutdown)."""
        try:
            backend = self._redis.pop(asyncio.get_running_loop(), None)
        except RuntimeError:
            return
        if backend is not None:
            await backend.close()


# ``async``: a plain ``def`` dependency would cost a thread hop per request (see api/deps.py).
async def get_rate_limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


RateLimitsDep = Annotated[RateLimits, Depends(get_rate_limits)]
