"""Group commit: a writer thread runs the write jobs of many requests in one transaction.

SQLite allows one writer at a time. With a thread per request, concurrent writers wait in SQLite's busy handler,
which sleeps in growing steps: throughput drops and the latency tail grows to seconds. Instead, requests hand
their write job to this thread, which takes every job waiting, runs them in one transaction (rerun with a
SAVEPOINT per job when one fails, so one job's error rolls back only that job), commits once for the batch, and
then answers each request. A request is answered only after its work is committed.

On PostgreSQL the hot paths use it too (Database.write_hot), with a few threads: one commit, and one WAL flush, per
batch instead of per request, and no thread-pool hop and pool checkout per request.

A request that needs the writer for longer than one job (an admin request: its dependencies and endpoint use one
session) takes a lease: the thread hands it a session in a transaction of its own and waits, running nothing
else, until the request has committed or rolled back. So on SQLite one thread of the process writes at a time.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None

log = logging.getLogger("invitelink.group_commit")
T = TypeVar("T")
MAX_BATCH = 128

Job = tuple[Callable[[Session], Any], "Future[Any]"]


class Lease:
    """The writer's session, lent to one caller until it calls ``release()`` (after its commit or rollback)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait(self) -> None:
        while not self._released.wait(LEASE_WARN_SECONDS):
            log.warning("a write lease has been held for over %d s; every other write waits", LEASE_WARN_SECONDS)


LeaseRequest = tuple[None, "Future[Lease]"]
LEASE_WARN_SECONDS = 10


def _take(job: Job) -> bool:
    """Claim a job for running; False if its caller cancelled it while it waited (the request went away before
    anything was done: it is dropped). A claimed job can no longer be cancelled, so its result can always be set:
    setting the result of a cancelled future raises, which would end the thread and leave every later job waiting
    forever."""
    return job[1].set_running_or_notify_cancel()


class ProcessLock:
    """One writer across processes on one SQLite file: an exclusive ``flock`` on a file beside the database, held
    by the committer thread for each batch.

    Several processes (``serve --workers 2``, a separate ``invitelink worker``, the CLI) each have their own
    committer. Without this they queue in SQLite's busy handler, which polls in growing sleeps (up to 100 ms each):
    a waiting writer wakes long after the lock was freed, or is overtaken again and again; with two app processes
    that made create_link's p99 3 s. A process waiting on the flock is woken by the kernel the moment it is
    released. A batch is bounded work; a lease (an admin request, which may wait on its client) does not take the
    flock, so a slow client can hold up its own process's writes but no other process's beyond SQLite's busy
    timeout, as before.

    The file is opened when the lock is made; a file that cannot be opened (another user's, created by a command
    run as root) leaves the lock off with a warning, and SQLite's busy handler alone still keeps writes correct, as
    it does where ``fcntl`` does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._fd: int | None = None
        if fcntl is None:
            return
        try:
            # Read-only is enough for flock; 0o644 lets the service's other users' processes open it too.
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("no writer lock %s (%s): writers of several processes will wait in SQLite instead", path, exc)

    def __enter__(self) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class GroupCommitter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        max_batch: int = MAX_BATCH,
        threads: int = 1,
        process_lock: ProcessLock | None = None,
    ) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self.threads = threads
        # Held around each batch, not a lease (ProcessLock says why); by this committer's threads only.
        self._process_lock: AbstractContextManager[None] = process_lock if process_lock is not None else nullcontext()
        self._queue: queue.SimpleQueue[Job | LeaseRequest | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.batches = 0
        self.jobs = 0
        self.reruns = 0

    def submit(self, fn: Callable[[Session], T]) -> Future[T]:
        """Queue ``fn(session)``; the future resolves once its batch is committed (or with its own error)."""
        future: Future[T] = Future()
        self._ensure_thread()
        self._queue.put((fn, future))
        return future

    def lease(self) -> Future[Lease]:
        """The writer's session for as long as the caller holds it; the future resolves once it is the caller's
        turn. The caller begins, commits or rolls back, closes the session and then calls ``release()``."""
        future: Future[Lease] = Future()
        self._ensure_thread()
        self._queue.put((None, future))
        return future

    def _ensure_thread(self) -> None:
        if not self._workers:
            with self._lock:
                if not self._workers:
                    for n in range(self.threads):
                        worker = threading.Thread(target=self._loop, name=f"invitelink-group-commit-{n}", daemon=True)
                        worker.start()
                        self._workers.append(worker)

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for _worker in workers:
            self._queue.put(None)
        for worker in workers:
            worker.join(timeout=30)

    def _loop(self) -> None:
        pending: Job | LeaseRequest | None = None
        while True:
            first = pending if pending is not None else self._queue.get()
            pending = None
            if first is None:
                return
            if first[0] is None:
                self._lend(first[1])
                continue
            batch: list[Job] = [first] if _take(first) else []
            stop = False
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                if job[0] is None:
                    pending = job  # a lease waits for this batch, then runs alone
                    break
                if _take(job):
                    batch.append(job)
            if batch:
                try:
                    with self._process_lock:
                        self._run(batch)
                except Exception as exc:
                    # Whatever goes wrong outside the jobs (the lock, closing a session) fails this batch, never
                    # the thread: a dead thread would leave every later job of the process waiting for ever.
                    log.exception("a batch of %d jobs failed outside its jobs", len(batch))
                    for _fn, future in batch:
                        if not future.done():
                            future.set_exception(exc)
            if stop:
                return

    def _lend(self, future: Future[Lease]) -> None:
        lease = Lease(self.sessions())
        if not future.set_running_or_notify_cancel():
            lease.session.close()
            return
        future.set_result(lease)
        lease.wait()

    def _run(self, batch: list[Job]) -> None:
        # Fast path: the whole batch in one transaction without savepoints (a savepoint costs about a third of
        # a create_link job). If any job raises, that attempt is rolled back and the batch runs again with a
        # savepoint per job, so one job's error never undoes another's work. Jobs are plain functions of the
        # database state and nobody has seen their results yet, so running them again is safe.
        try:
            with self.sessions() as session, session.begin():
                results = [fn(session) for fn, _future in batch]
        except Exception:
            # On PostgreSQL this includes a deadlock with another instance's (or thread's) batch: the rollback
            # has released this batch's locks, so the other one commits and the rerun finds its rows.
            with self._lock:
                self.reruns += 1
            self._run_isolated(batch)
            return
        self._finish(batch, [(future, result, None) for (_fn, future), result in zip(batch, results, strict=True)])

    def _run_isolated(self, batch: list[Job]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self.sessions() as session, session.begin():
                for fn, future in batch:
                    try:
                        with session.begin_nested():
                            outcomes.append((future, fn(session), None))
                    except Exception as exc:
                        outcomes.append((future, None, exc))
        except Exception as exc:
            # The commit itself failed (disk full, I/O error): nothing of this batch is stored.
            log.exception("group commit of %d jobs failed", len(batch))
            for _fn, future in batch:
                future.set_exception(exc)
            return
        self._finish(batch, outcomes)

    def _finish(self, batch: list[Job], outcomes: list[tuple[Future[Any], Any, BaseException | None]]) -> None:
        with self._lock:
            self.batches += 1
            self.jobs += len(batch)
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)


class BatchReader(GroupCommitter):
    """The read side of the same idea (Database.read_hot): a few threads each take every read job waiting and run
    them one after another in one read transaction, then answer each. A thread-pool hop per read costs a short
    read more than the read itself: the pool thread waits for the GIL held by the event loop, and the loop for
    it. The batch's transaction begins after each of its jobs was submitted, so a read sees every write that was
    acknowledged before it was asked for (on SQLite the batch shares one snapshot; on PostgreSQL, READ COMMITTED,
    each statement sees what was committed before it began). One job's error is its own: after a database error
    the rest of the batch runs in a new transaction (PostgreSQL refuses every statement of a failed one)."""

    def lease(self) -> Future[Lease]:
        raise TypeError("a BatchReader lends no sessions")

    def _run(self, batch: list[Job]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        session = self.sessions()
        try:
            for fn, future in batch:
                try:
                    outcomes.append((future, fn(session), None))
                except DBAPIError as exc:
                    outcomes.append((future, None, exc))
                    session.rollback()
                except Exception as exc:
                    outcomes.append((future, None, exc))
                # Each read starts with an empty identity map: on PostgreSQL every statement sees what was
                # committed before it began, and an object an earlier read of the batch loaded would otherwise
                # keep its older state (a page built from it would then be kept under a newer version).
                session.expunge_all()
        finally:
            session.rollback()
            session.close()
        self._finish(batch, outcomes)
