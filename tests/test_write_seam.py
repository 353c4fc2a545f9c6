"""The write seam (Database): every write is committed before its answer, and on SQLite one thread writes at a time.

A commit that fails must turn into an error answer: before the seam, admin writes, the questionnaire callback and
/survey/end committed after the response was sent, and acknowledged rows were lost when the connection dropped."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from invitelink.db import Database
from invitelink.models import Industry, Participation, Survey, Workspace
from tests.conftest import Admin, MakeSurvey


@contextmanager
def commits_fail(database: Database) -> Iterator[None]:
    """Every COMMIT of the app's write sessions fails as a dropped connection would."""

    def fail(_session: Session) -> None:
        raise OperationalError("COMMIT", {}, ConnectionResetError("server closed the connection unexpectedly"))

    event.listen(database.sessions, "before_commit", fail)
    try:
        yield
    finally:
        event.remove(database.sessions, "before_commit", fail)


def count(database: Database, model: type[Any]) -> int:
    with database.read_sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_an_admin_create_whose_commit_fails_is_not_acknowledged(app: FastAPI, client: TestClient, admin: Any) -> None:
    database: Database = app.state.database
    before = count(database, Survey)
    with commits_fail(database):
        response = client.post(
            "/admin/v1/surveys",
            json={"title": "Lost?", "questionnaire_url": "https://q.example.org/s"},
            headers=admin.headers,
        )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert "try again" in response.json()["detail"]
    assert count(database, Survey) == before
    # And when commits work again, the same call is acknowledged and stored.
    again = client.post(
        "/admin/v1/surveys",
        json={"title": "Kept", "questionnaire_url": "https://q.example.org/s"},
        headers=admin.headers,
    )
    assert again.status_code == 201 and count(database, Survey) == before + 1


def test_callback_and_end_redirect_whose_commit_fails_are_not_acknowledged(
    app: FastAPI, client: TestClient, admin: Admin, make_survey: MakeSurvey
) -> None:
    database: Database = app.state.database
    survey = make_survey(admin, status="active")
    serials = client.post(f"/admin/v1/surveys/{survey['id']}/serial-codes", json={"count": 2}, headers=admin.headers)
    assert serials.status_code == 201, serials.text
    first, second = (item["code"] for item in serials.json())
    with commits_fail(database):
        callback = client.post(
            "/api/v1/participations/events",
            json={"token": first, "event": "completed"},
            headers={"Authorization": f"Bearer {survey['callback_secret']}"},
        )
        end = client.get(f"/survey/end?token={second}&status=complete", follow_redirects=False)
    assert callback.status_code == 503 and callback.json()["ok"] is False
    assert end.status_code == 503 and end.headers["content-type"].startswith("text/html")
    assert count(database, Participation) == 0


def test_an_admin_request_holds_the_sqlite_writer_alone(db_url: str) -> None:
    """While a unit of work is open, the group committer runs no other job; the job runs once it is committed."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has many writers: a unit of work there is a transaction of its own")
    database = Database(db_url, pool_size=2)
    database.write_blocking(lambda session: session.add(Workspace(name="w")))

    def add(session: Session, name: str) -> str:
        session.add(Industry(workspace_id=1, name=name))
        session.flush()
        return name

    async def scenario() -> tuple[bool, str]:
        async with database.unit_of_work() as session:
            add(session, "from the unit of work")
            job = asyncio.ensure_future(database.write(add, "from a job"))
            await asyncio.sleep(0.3)
            job_ran_meanwhile = job.done()
        return job_ran_meanwhile, await asyncio.wait_for(job, 10)

    try:
        job_ran_meanwhile, result = asyncio.run(scenario())
        assert not job_ran_meanwhile
        assert result == "from a job"
        with database.read_sessions() as session:
            assert sorted(session.scalars(select(Industry.name))) == ["from a job", "from the unit of work"]
    finally:
        database.dispose()


def test_a_request_cancelled_while_waiting_for_the_writer_gives_it_back(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has many writers: a unit of work there waits for no lease")
    database = Database(db_url, pool_size=2)
    database.write_blocking(lambda session: session.add(Workspace(name="w")))
    gate = threading.Event()

    def hold(_session: Session) -> None:
        gate.wait(10)

    def add(session: Session, name: str) -> str:
        session.add(Industry(workspace_id=1, name=name))
        session.flush()
        return name

    async def waits_for_the_writer() -> None:
        async with database.unit_of_work() as session:
            add(session, "never")

    async def scenario() -> str:
        holder = asyncio.ensure_future(database.write(hold))
        await asyncio.sleep(0.1)
        waiting = asyncio.ensure_future(waits_for_the_writer())
        await asyncio.sleep(0.1)
        waiting.cancel()  # the client went away while its request waited for the writer
        gate.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Were the writer still lent to the cancelled request, this would wait for ever.
        return await asyncio.wait_for(database.write(add, "after"), 10)

    try:
        started = time.monotonic()
        assert asyncio.run(scenario()) == "after"
        assert time.monotonic() - started < 10
        with database.read_sessions() as session:
            assert list(session.scalars(select(Industry.name))) == ["after"]
    finally:
        database.dispose()
