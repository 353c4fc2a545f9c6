"""Group commit: jobs of one batch are isolated from each other's errors, and answered only once committed."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invitelink.db import Database
from invitelink.group_commit import GroupCommitter
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

    def add(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
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
