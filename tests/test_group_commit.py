"""Group commit: jobs of one batch are isolated from each other's errors, and answered only once committed."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from invitelink.db import Database
from invitelink.group_commit import BatchReader, GroupCommitter, ProcessLock
from invitelink.migrate import upgrade_to_head
from invitelink.models import Industry, Workspace
from invitelink.services.errors import InvalidInput


def test_a_failing_job_undoes_only_itself(db_url: str) -> None:
    database = Database(db_url, pool_size=2)
    committer = GroupCommitter(database.sessions)
    with database.sessions() as session, session.begin():
        session.add(Workspace(name="w"))
    gate = threading.Event()

    def blocker(session: Session) -> str:
        gate.wait(5)  # holds the writer so the next jobs queue up into one batch
        return "first"

    def add(name: str, fail: bool = False) -> Callable[[Session], str]:
        def job(session: Session) -> str:
            session.add(Industry(workspace_id=1, name=name))
            session.flush()
            if fail:
                raise InvalidInput(f"{name} refused")
            return name

        return job

    try:
        first = committer.submit(blocker)
        futures = [committer.submit(add(f"ok-{i}")) for i in range(5)]
        failing = committer.submit(add("bad", fail=True))
        futures += [committer.submit(add(f"late-{i}")) for i in range(5)]
        gate.set()
        assert first.result(10) == "first"
        assert [f.result(10) for f in futures] == [f"ok-{i}" for i in range(5)] + [f"late-{i}" for i in range(5)]
        error = failing.exception(10)
        assert isinstance(error, InvalidInput)
        with database.read_sessions() as session:
            names = set(session.scalars(select(Industry.name)))
        assert names == {f"ok-{i}" for i in range(5)} | {f"late-{i}" for i in range(5)}
        assert committer.jobs == 12
        assert committer.batches < 12  # the queued jobs really were committed together
    finally:
        committer.close()
        database.dispose()


def test_results_arrive_after_commit(db_url: str) -> None:
    database = Database(db_url, pool_size=2)
    committer = GroupCommitter(database.sessions)
    try:
        with database.sessions() as session, session.begin():
            session.add(Workspace(name="w"))

        def job(session: Session) -> int:
            session.add(Industry(workspace_id=1, name="x"))
            session.flush()
            return 1

        assert committer.submit(job).result(10) == 1
        # Visible to a new reader at once: the future resolved after the commit.
        with database.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(Industry)) == 1
    finally:
        committer.close()
        database.dispose()


def test_a_deadlock_between_two_batches_costs_a_rerun_not_an_error(db_url: str) -> None:
    """Two commit threads, two batches taking the same two unique keys in opposite order: PostgreSQL breaks the
    deadlock by failing one batch; its rerun finds the other's committed rows, and both callers get answers."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer: its committer runs one thread, so batches cannot deadlock")
    database = Database(db_url, pool_size=2)
    committer = GroupCommitter(database.sessions, threads=2)
    with database.sessions() as session, session.begin():
        session.add(Workspace(name="w"))
    both_hold_one = threading.Barrier(2, timeout=10)
    first_started = threading.Event()
    insert = text("INSERT INTO industries (workspace_id, name) VALUES (1, :name) ON CONFLICT DO NOTHING")

    def take(order: tuple[str, str], started: threading.Event | None = None) -> Callable[[Session], list[str]]:
        attempts = 0

        def job(session: Session) -> list[str]:
            nonlocal attempts
            attempts += 1
            session.execute(insert, {"name": order[0]})
            if started is not None:
                started.set()
            if attempts == 1:
                both_hold_one.wait()  # each batch now holds one key and asks for the other's
            session.execute(insert, {"name": order[1]})
            return sorted(session.scalars(select(Industry.name)))

        return job

    try:
        one = committer.submit(take(("a", "b"), first_started))
        assert first_started.wait(10)  # the first thread is busy, so the second thread takes the next job
        two = committer.submit(take(("b", "a")))
        assert one.result(30) == ["a", "b"]
        assert two.result(30) == ["a", "b"]
        assert committer.reruns >= 1
        with database.read_sessions() as session:
            assert sorted(session.scalars(select(Industry.name))) == ["a", "b"]
    finally:
        committer.close()
        database.dispose()


def test_several_commit_threads_answer_every_job_once(db_url: str) -> None:
    database = Database(db_url, pool_size=4)
    committer = GroupCommitter(database.sessions, threads=1 if db_url.startswith("sqlite") else 4)
    with database.sessions() as session, session.begin():
        session.add(Workspace(name="w"))

    def add(name: str) -> Callable[[Session], str]:
        def job(session: Session) -> str:
            session.add(Industry(workspace_id=1, name=name))
            session.flush()
            return name

        return job

    try:
        futures = [committer.submit(add(f"n-{i}")) for i in range(300)]
        assert [f.result(30) for f in futures] == [f"n-{i}" for i in range(300)]
        assert committer.jobs == 300
        with database.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(Industry)) == 300
    finally:
        committer.close()
        database.dispose()


def test_a_job_cancelled_while_it_waits_is_dropped_and_the_writer_lives_on(db_url: str) -> None:
    """A request that goes away while its write waits cancels the job's future. Setting a cancelled future's result
    raises: before, that ended the writer thread, and every later write of the process waited forever."""
    database = Database(db_url, pool_size=2)
    committer = GroupCommitter(database.sessions)
    with database.sessions() as session, session.begin():
        session.add(Workspace(name="w"))
    gate = threading.Event()
    ran: list[str] = []

    def blocker(session: Session) -> str:
        gate.wait(5)
        return "first"

    def add(name: str) -> Callable[[Session], str]:
        def job(session: Session) -> str:
            ran.append(name)
            session.add(Industry(workspace_id=1, name=name))
            return name

        return job

    try:
        first = committer.submit(blocker)
        cancelled = committer.submit(add("cancelled"))
        kept = committer.submit(add("kept"))
        assert cancelled.cancel()
        gate.set()
        assert first.result(10) == "first" and kept.result(10) == "kept"
        assert committer.submit(add("later")).result(10) == "later"
        assert ran == ["kept", "later"]
        with database.read_sessions() as session:
            assert set(session.scalars(select(Industry.name))) == {"kept", "later"}
    finally:
        gate.set()
        committer.close()
        database.dispose()


def test_the_batch_reader_keeps_each_reads_error_its_own(db_url: str) -> None:
    """Reads queued together run in one transaction; a failing statement (which on PostgreSQL spoils the whole
    transaction) and a domain error each fail only their own read."""
    database = Database(db_url, pool_size=2)
    with database.sessions() as session, session.begin():
        session.add(Workspace(name="w"))
    gate = threading.Event()

    def blocker(_session: Session) -> str:
        gate.wait(5)
        return "first"

    def count(session: Session) -> int:
        return int(session.scalar(select(func.count()).select_from(Workspace)) or 0)

    def bad_sql(session: Session) -> None:
        session.execute(text("SELECT * FROM no_such_table"))

    def refused(_session: Session) -> None:
        raise InvalidInput("refused")

    reader = database.reader
    try:
        first = reader.submit(blocker)
        counts = [reader.submit(count)]
        failing = reader.submit(bad_sql)
        counts.append(reader.submit(count))
        domain = reader.submit(refused)
        counts.append(reader.submit(count))
        gate.set()
        assert first.result(10) == "first"
        assert [f.result(10) for f in counts] == [1, 1, 1]
        assert failing.exception(10) is not None and not isinstance(failing.exception(10), InvalidInput)
        assert isinstance(domain.exception(10), InvalidInput)
        assert reader.jobs == 6 and reader.batches < 6
        with pytest.raises(TypeError):
            reader.lease()
    finally:
        gate.set()
        database.dispose()


def test_sqlite_writers_of_several_processes_take_turns_on_a_file_lock(tmp_path: Path) -> None:
    """Each batch holds an exclusive flock beside the database, so another process's writer waits in the kernel
    (woken the moment it is free) rather than in SQLite's busy handler, which polls in sleeps of up to 100 ms."""
    fcntl = pytest.importorskip("fcntl")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade_to_head(url)
    first, second = Database(url, pool_size=2), Database(url, pool_size=2)
    gate, inside = threading.Event(), threading.Event()

    def hold(session: Session) -> str:
        session.add(Workspace(name="first"))
        inside.set()
        gate.wait(5)
        return "first"

    try:
        held = first.committer.submit(hold)
        assert inside.wait(5)
        lock_path = tmp_path / "shared.db.writer-lock"
        fd = os.open(lock_path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # held for the length of the batch
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

            def add_second(session: Session) -> str:
                session.add(Workspace(name="second"))
                return "second"

            waiting = second.committer.submit(add_second)
            assert not waiting.done()
            gate.set()
            assert held.result(10) == "first" and waiting.result(10) == "second"
            # And released after it (a batch's answers are set just before its lock is let go: allow a moment).
            deadline = time.monotonic() + 5
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the writer lock stayed held after the batches"
                    time.sleep(0.01)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        with first.read_sessions() as session:
            assert sorted(session.scalars(select(Workspace.name))) == ["first", "second"]
    finally:
        gate.set()
        first.dispose()
        second.dispose()


def test_a_writer_lock_that_cannot_be_opened_or_taken_fails_no_thread(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock file that cannot be opened leaves the lock off with a warning; a lock that fails when taken fails
    that batch alone. Before, either ended the committer thread, and every later write waited for ever."""
    missing = ProcessLock(tmp_path / "no" / "such" / "dir" / "db.writer-lock")
    assert "no writer lock" in caplog.text
    database = Database(db_url, pool_size=2)

    class FailsOnce:
        failed = False

        def __enter__(self) -> None:
            if not FailsOnce.failed:
                FailsOnce.failed = True
                raise OSError("lock failed")

        def __exit__(self, *_exc: object) -> None:
            return None

    try:
        for lock in (missing, FailsOnce()):
            committer = GroupCommitter(database.sessions, process_lock=lock)  # type: ignore[arg-type]
            try:
                first = committer.submit(lambda s: int(s.scalar(select(func.count()).select_from(Workspace)) or 0))
                if isinstance(lock, FailsOnce):
                    assert isinstance(first.exception(10), OSError)
                else:
                    assert first.result(10) == 0
                later = committer.submit(lambda s: int(s.scalar(select(func.count()).select_from(Workspace)) or 0))
                assert later.result(10) == 0
            finally:
                committer.close()
    finally:
        database.dispose()


def test_each_read_of_a_batch_sees_what_was_committed_before_it(db_url: str) -> None:
    """On PostgreSQL every statement of the batch reader's transaction sees what was committed before it began; an
    object an earlier read of the same batch loaded must not hide it (the identity map is emptied between reads)."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite: the batch shares one snapshot, so both reads see the same state by design")
    database = Database(db_url, pool_size=2)
    with database.sessions() as session, session.begin():
        session.add(Workspace(name="old"))
    reader = BatchReader(database.read_sessions, threads=1)
    gate, inside = threading.Event(), threading.Event()

    def blocker(_session: Session) -> None:
        inside.set()
        gate.wait(5)

    kept: list[Workspace] = []  # as a reference cycle (ORM relationships) keeps a loaded object alive

    def load_then_rename(session: Session) -> str:
        kept.append(cast(Workspace, session.get(Workspace, 1)))
        name = kept[0].name
        with database.sessions() as other, other.begin():
            cast(Workspace, other.get(Workspace, 1)).name = "new"
        return name

    def read_name(session: Session) -> str:
        return cast(Workspace, session.get(Workspace, 1)).name

    try:
        first = reader.submit(blocker)
        assert inside.wait(5)  # the reader's one thread is busy: the next two reads queue up into one batch
        before, after = reader.submit(load_then_rename), reader.submit(read_name)
        gate.set()
        first.result(10)
        assert (before.result(10), after.result(10)) == ("old", "new")
        assert reader.jobs == 3 and reader.batches == 2  # the two reads shared a batch
    finally:
        gate.set()
        reader.close()
        database.dispose()
