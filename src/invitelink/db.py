"""Engines and sessions; SQLite gets the pragmas and transaction modes that make it a sound embedded store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from invitelink.group_commit import GroupCommitter

T = TypeVar("T")
# Group-commit threads on PostgreSQL, each with its own connection: more than one keeps the hot paths going while
# a batch waits on a row lock or on the network. (SQLite has one writer, so one thread.)
PG_COMMIT_THREADS = 2


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
    """The app's engines: one for writes and, on SQLite, a second for reads (the same one elsewhere)."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.read_engine = make_engine(url, pool_size=pool_size, read_only=True) if is_sqlite(url) else self.engine
        self.sessions = make_sessionmaker(self.engine)
        self.read_sessions = make_sessionmaker(self.read_engine)
        self.sqlite = is_sqlite(url)
        self.committer = GroupCommitter(self.sessions, threads=1 if self.sqlite else PG_COMMIT_THREADS)

    async def write(self, fn: Callable[[Session], T], *, short: bool = False) -> T:
        """Run ``fn(session)`` in a committed transaction; its exception, if any, is re-raised here.

        SQLite: always through the group committer (one writer, one commit per batch). PostgreSQL: ``short`` jobs
        (a few indexed statements: the hot paths) through a group committer too, with a few threads, so each
        commit and its WAL flush serve a batch; any other job in a transaction of its own in the thread pool, so a
        long job (a trigger batch of a thousand recipients) never holds up the hot paths.
        """
        if self.sqlite or short:
            return await asyncio.wrap_future(self.committer.submit(fn))

        def run() -> T:
            with transaction(self.sessions) as session:
                return fn(session)

        return await run_in_threadpool(run)

    def dispose(self) -> None:
        self.committer.close()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session
