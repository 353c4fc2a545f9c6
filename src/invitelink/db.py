"""Engines and sessions; SQLite gets the pragmas and transaction modes that make it a sound embedded store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from invitelink.group_commit import BatchReader, GroupCommitter, Lease, ProcessLock

# Registers the session listener that keeps workspaces' inventory versions in step with every write.
from invitelink.services import inventory  # noqa: F401

T = TypeVar("T")
P = ParamSpec("P")
# Group-commit threads on PostgreSQL, each with its own connection: more than one keeps the hot paths going while
# a batch waits on a row lock or on the network. (SQLite has one writer, so one thread.)
PG_COMMIT_THREADS = 2
# Threads of the batch reader (read_hot): two, so one long read never holds up every other.
HOT_READ_THREADS = 2


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, pool_size: int = 10, read_only: bool = False) -> Engine:
    """An engine for ``url``.

    ``hide_parameters``: a driver error's text carries the statement's parameters (token codes, key digests,
    addresses) unless hidden, and such errors get logged.

    SQLite: WAL with a busy timeout. Write engines begin every transaction IMMEDIATE, so two writers queue on
    the busy timeout instead of one failing when it upgrades a read lock mid-transaction; read-only engines
    begin DEFERRED, so readers never wait for the writer.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN badly; we issue BEGIN ourselves (see make_engine).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class Database:
    """The app's engines and its one write seam.

    Every transaction that writes begins and commits here, whoever asks: a family's use case
    (``write``/``write_hot``), an admin request (``unit_of_work``), the worker and the CLI (``write_blocking`` from a
    thread). So on SQLite one thread of the process writes at a time (the group committer's), and whatever must be
    stored with a change (its lifecycle event, an outbox row) is written in the change's own transaction. Every
    method returns only after the commit: nothing is answered that is not stored.

    Reads go through ``read`` on a second engine on SQLite (the same one elsewhere), so readers never wait for the
    writer.
    """

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.read_engine = make_engine(url, pool_size=pool_size, read_only=True) if is_sqlite(url) else self.engine
        self.sessions = make_sessionmaker(self.engine)
        self.read_sessions = make_sessionmaker(self.read_engine)
        self.sqlite = is_sqlite(url)
        self.reader = BatchReader(self.read_sessions, threads=HOT_READ_THREADS)
        file = make_url(url).database if self.sqlite else None
        self.process_lock = ProcessLock(Path(f"{file}.writer-lock")) if file and file != ":memory:" else None
        self.committer = GroupCommitter(
            self.sessions, threads=1 if self.sqlite else PG_COMMIT_THREADS, process_lock=self.process_lock
        )

    async def write(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(session, *args, **kwargs)`` in a committed transaction; its exception, if any, is re-raised here.

        SQLite: through the group committer (one writer, one commit per batch). PostgreSQL: in a transaction of
        its own in the thread pool, so a long job (a trigger batch of a thousand recipients) never holds up the hot
        paths.
        """
        if self.sqlite:
            return await asyncio.wrap_future(self.committer.submit(_bind(fn, *args, **kwargs)))
        return await run_in_threadpool(self._transaction, _bind(fn, *args, **kwargs))

    async def write_hot(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``write`` for the hot paths (a few indexed statements): through a group committer on PostgreSQL too, with a
        few threads, so each commit and its WAL flush serve a batch."""
        return await asyncio.wrap_future(self.committer.submit(_bind(fn, *args, **kwargs)))

    def write_blocking(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``write`` for code that runs in a thread of its own (the CLI, the worker's threads): waits for the commit."""
        if self.sqlite:
            return self.committer.submit(_bind(fn, *args, **kwargs)).result()
        return self._transaction(_bind(fn, *args, **kwargs))

    async def read(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(session, *args, **kwargs)`` on a read session in the thread pool; nothing it does is committed."""
        return await run_in_threadpool(self._read, _bind(fn, *args, **kwargs))

    async def read_hot(self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``read`` for the hot paths (a few indexed statements): through the batch reader, which runs the reads
        waiting in one go, so a short read costs no thread-pool hop of its own (group_commit.BatchReader)."""
        return await asyncio.wrap_future(self.reader.submit(_bind(fn, *args, **kwargs)))

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[Session]:
        """A session in a transaction for the length of the block (an admin request: dependencies and endpoint),
        committed when the block ends and rolled back when it raises; the block ends only after the commit.

        On SQLite the session is the writer's, lent by the group committer, which writes nothing else meanwhile."""
        lease: Lease | None = None
        if self.sqlite:
            lease = await _take_lease(self.committer.lease())
            session = lease.session
        else:
            session = self.sessions()
        try:
            session.begin()
            try:
                yield session
            except BaseException:
                await run_in_threadpool(session.rollback)
                raise
            await run_in_threadpool(session.commit)
        finally:
            await run_in_threadpool(session.close)
            if lease is not None:
                lease.release()

    def _transaction(self, job: Callable[[Session], T]) -> T:
        with transaction(self.sessions) as session:
            return job(session)

    def _read(self, job: Callable[[Session], T]) -> T:
        with self.read_sessions() as session:
            return job(session)

    def dispose(self) -> None:
        self.committer.close()
        self.reader.close()
        if self.process_lock is not None:
            self.process_lock.close()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


async def _take_lease(future: Future[Lease]) -> Lease:
    """Wait for the writer's lease; if the waiting request is cancelled, a lease granted anyway is given back."""
    try:
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        if not future.cancel():
            future.add_done_callback(_give_back)
        raise


def _give_back(done: Future[Lease]) -> None:
    if not done.cancelled() and done.exception() is None:
        lease = done.result()
        lease.session.close()
        lease.release()


def _bind(fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> Callable[[Session], T]:
    """``fn`` with its arguments, waiting for the session the seam opens."""

    def job(session: Session) -> T:
        return fn(session, *args, **kwargs)

    return job


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session
