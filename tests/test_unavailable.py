"""A database that cannot serve (never migrated, or not reachable) gives 503 with Retry-After in each family's own
error format, never a 500, and the log line names neither the link nor the key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.services import unsubscribe

KEY = "k3y-that-must-not-be-logged"
TOKEN = "QS33T6XMVS4KLA9S"


@pytest.fixture(params=["unmigrated-sqlite", "unreachable-postgresql"])
def broken(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = (
        f"sqlite:///{tmp_path / 'empty.db'}"
        if request.param == "unmigrated-sqlite"
        else "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1: refused at once
    )
    settings = Settings(
        database_url=url,
        public_url="http://testserver",
        secret_key="s",
        var_dir=tmp_path / "var",
        worker="off",
        _env_file=None,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _unavailable(response: httpx.Response, content_type: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"].startswith(content_type)


def test_sosci_api_answers_its_error_body(broken: TestClient) -> None:
    response = broken.get(f"/my-study/?act={KEY}&uid=shop-1")
    _unavailable(response, "application/json")
    body = response.json()
    assert body["result"] == "error" and body["url"] is None and "try again" in body["error"]
    posted = broken.post("/my-study/", json={"act": KEY, "email": "a@example.com"})
    _unavailable(posted, "application/json")


def test_participant_links_get_a_page_that_leaks_nothing(broken: TestClient) -> None:
    for query in (f"d={TOKEN}", "s=CD246802"):
        response = broken.get(f"/my-study/?{query}", follow_redirects=False)
        _unavailable(response, "text/html")
        assert TOKEN not in response.text and "CD246802" not in response.text
        assert "try again" in response.text.lower()


def test_trigger_supply_callback_admin_and_unsubscribe(broken: TestClient) -> None:
    trigger = broken.post(
        "/api/invitation-trigger", json={"email": "a@example.com"}, headers={"Authorization": "Bearer sit_x"}
    )
    _unavailable(trigger, "application/json")
    assert trigger.json()["ok"] is False and "not ready" in trigger.json()["error"]

    supply = broken.post("/sandbox/v1/allocated_survey", json={}, headers={"Authorization": "Bearer R4I_TEST_x"})
    _unavailable(supply, "application/json")
    assert supply.json()["apiStatus"] == "error" and supply.json()["result"] is None and supply.json()["msg"]

    callback = broken.post(
        "/api/v1/participations/events",
        json={"token": TOKEN, "event": "started"},
        headers={"Authorization": "Bearer x"},
    )
    _unavailable(callback, "application/json")
    assert callback.json()["ok"] is False

    admin = broken.post("/admin/v1/auth/token", data={"username": "a@example.com", "password": "secret-password"})
    _unavailable(admin, "application/json")
    assert "try again" in admin.json()["detail"]

    # A validly signed link, so the request gets as far as the database.
    link = unsubscribe.token_for(cast(FastAPI, broken.app).state.settings.server_secret, 7)
    for method in ("GET", "POST"):
        _unavailable(broken.request(method, f"/unsubscribe?u={link}"), "text/html")

    assert broken.get("/readyz").status_code == 503


def test_the_log_line_names_neither_link_nor_key(broken: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        broken.get(f"/my-study/?act={KEY}&uid=shop-1")
        broken.get(f"/my-study/?d={TOKEN}")
    # The test client's own httpx logger prints the URLs it requests; the server's records are the rest.
    server = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "database unavailable" in server
    assert KEY not in server and TOKEN not in server
