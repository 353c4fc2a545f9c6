"""Secrets: random generation, digests for lookup, argon2id for human passwords, HMAC signing."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TOKEN_ALPHABET = string.ascii_uppercase + string.digits
# Serial codes are read and typed by people: no 0/O, 1/I/L.
SERIAL_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# A hash to verify against when the user does not exist, so login time does not reveal which e-mails exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def random_code(length: int, alphabet: str = TOKEN_ALPHABET) -> str:
    """A uniformly random code from the OS's cryptographic random source.

    One draw of a number below ``len(alphabet) ** length``, written in that base: the same distribution as a
    ``secrets.choice`` per character, at one system call instead of one per character (this is on the hot path
    of create_link).
    """
    base = len(alphabet)
    number = secrets.randbelow(base**length)
    chars = []
    for _ in range(length):
        number, index = divmod(number, base)
        chars.append(alphabet[index])
    return "".join(chars)


def new_secret(prefix: str, nbytes: int = 24) -> str:
    """A high-entropy API secret with a readable prefix (``sit_…``, ``R4I_LIVE_…``)."""
    return prefix + secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """SHA-256 hex digest: API secrets are high-entropy, so a fast hash is the right lookup key."""
    return hashlib.sha256(secret.encode()).hexdigest()


class PasswordWorkBusy(Exception):
    """Every argon2 slot of the process stayed taken for the whole wait: answered 503 with Retry-After."""

    retry_after = 2
    message = "the server is busy checking passwords; try again in a moment"


class _PasswordWork:
    def __init__(self, slots: int, wait_seconds: float) -> None:
        self.semaphore = threading.BoundedSemaphore(slots)
        self.wait_seconds = wait_seconds


# Each argon2id run holds 64 MiB (the library's memory cost) while it runs: unbounded, 40 logins at once took one
# process's peak from 180 MiB to 1.3 GiB (bench/login_memory.py). create_app sets this from the settings; the CLI
# keeps the default.
_work = _PasswordWork(slots=4, wait_seconds=2.0)


def limit_password_work(slots: int, wait_seconds: float) -> None:
    """At most ``slots`` hashes and verifications at once in this process; a caller waits up to ``wait_seconds``
    for a slot, then gets PasswordWorkBusy. Calls already running keep the slots they hold."""
    global _work
    _work = _PasswordWork(slots, wait_seconds)


@contextmanager
def password_slot() -> Iterator[None]:
    """Hold one argon2 slot of the process (PasswordWorkBusy if none comes free within the wait)."""
    work = _work  # the one a slot is taken from is the one it is given back to, even if replaced meanwhile
    if not work.semaphore.acquire(timeout=work.wait_seconds):
        raise PasswordWorkBusy(PasswordWorkBusy.message)
    try:
        yield
    finally:
        work.semaphore.release()


def hash_password(password: str) -> str:
    with password_slot():
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-work check: an unknown user still costs one argon2 verification. Blocks for a slot (see
    ``limit_password_work``); run it in a thread."""
    with password_slot():
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def sign(key: bytes, message: str) -> str:
    """Hex HMAC-SHA256 of ``message``."""
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@lru_cache(maxsize=64)
def derive_key(server_secret: bytes, purpose: str) -> bytes:
    """A sub-key of the server secret for one purpose, so one leaked sub-key exposes nothing else. Kept once made:
    the worker derives two per message (Message-ID, unsubscribe link), and the secret is in memory anyway."""
    return hmac.new(server_secret, purpose.encode(), hashlib.sha256).digest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
