"""Test fixtures: every database test runs on SQLite, and on PostgreSQL when INVITELINK_TEST_DATABASE_URL is set."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import make_engine, make_sessionmaker, transaction
from invitelink.migrate import upgrade_to_head
from invitelink.models import Base
from invitelink.services import accounts

# Fixtures shared by several test modules, which ask for them by name (an import would shadow every parameter).
pytest_plugins = ["tests.fixtures_worker", "tests.fixtures_webhooks"]

PG_URL = os.environ.get("INVITELINK_TEST_DATABASE_URL")
ENGINES = ["sqlite", *(["postgresql"] if PG_URL else [])]
PASSWORD = "correct horse battery"


def create_pg_database(base_url: str, name: str) -> str:
    """A new empty database next to ``base_url``'s; returns its URL."""
    url = make_url(base_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(base_url: str, name: str) -> None:
    admin = create_engine(make_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    assert PG_URL is not None
    name = f"invitelink_test_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(PG_URL, name)
    upgrade_to_head(url)
    yield url
    drop_pg_database(PG_URL, name)


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each engine under test."""
    if request.param == "sqlite":
        path = tmp_path / "invitelink.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_database")
    yield url
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        public_url="http://testserver",
        secret_key="test-server-secret",
        var_dir=tmp_path / "var",
        worker="off",
        _env_file=None,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def db(app: FastAPI) -> Iterator[Session]:
    """A session on the app's database, for checking what was stored (and arranging, with commit)."""
    with app.state.database.read_sessions() as session:
        yield session


@dataclass
class Admin:
    email: str
    workspace_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class MakeAdmin(Protocol):
    """The ``make_admin`` fixture: an owner of a new workspace, logged in."""

    def __call__(self, email: str | None = None, workspace: str = "Lab") -> Admin: ...


class MakeSurvey(Protocol):
    """The ``make_survey`` fixture: a survey created through the admin API; returns its JSON body."""

    def __call__(self, admin: Admin, **fields: Any) -> dict[str, Any]: ...


@pytest.fixture
def make_admin(app: FastAPI, client: TestClient) -> MakeAdmin:
    """An owner of a new workspace, logged in through the real token endpoint."""

    def make(email: str | None = None, workspace: str = "Lab") -> Admin:
        email = email or f"owner-{uuid.uuid4().hex[:8]}@example.org"
        with transaction(app.state.database.sessions) as session:
            ws, _user = accounts.create_admin(session, email, PASSWORD, workspace)
        response = client.post(
            "/admin/v1/auth/token",
            data={"username": email, "password": PASSWORD, "scope": f"workspace:{ws.id}"},
        )
        assert response.status_code == 200, response.text
        return Admin(email, ws.id, response.json()["access_token"])

    return make


@pytest.fixture
def admin(make_admin: MakeAdmin) -> Admin:
    return make_admin()


@pytest.fixture
def make_survey(client: TestClient) -> MakeSurvey:
    def make(admin: Admin, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "title": "Customer survey",
            "questionnaire_url": "https://q.example.org/s?token={token}",
        }
        body.update(fields)
        response = client.post("/admin/v1/surveys", json=body, headers=admin.headers)
        assert response.status_code == 201, response.text
        survey: dict[str, Any] = response.json()
        return survey

    return make


def engine_for(url: str) -> Engine:
    return make_engine(url, pool_size=2)


__all__ = ["PASSWORD", "Admin", "create_pg_database", "drop_pg_database", "engine_for", "make_sessionmaker"]
