"""Outcomes a supplier is paid on: a survey may trust only the questionnaire's callback for completions (a browser's
``complete`` is then a report, unsigned and uncounted), the callback corrects what only a browser reported, postbacks
say who set the outcome, and a PID the supplier never registered cannot slip past country limits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import Database
from invitelink.migrate import alembic_config
from invitelink.models import Participation
from invitelink.services.supplier_redirects import verify_redirect
from invitelink.worker.webhooks import WebhookSender
from tests.conftest import ENGINES, PG_URL, Admin, MakeSurvey, create_pg_database, drop_pg_database
from tests.fixtures_webhooks import Receiver
from tests.test_sosci import Sosci
from tests.test_supply import PANEL, Supply, token_of

CALLBACK = "/api/v1/participations/events"
FORGED = 6


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Private targets allowed: the postback receiver is on loopback."""
    return settings.model_copy(update={"webhook_allow_private": True})


def set_mode(supply: Supply, mode: str) -> None:
    response = supply.client.patch(
        f"/admin/v1/surveys/{supply.survey['id']}", json={"outcome_verification": mode}, headers=supply.admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome_verification"] == mode


def enter(supply: Supply, pid: str) -> str:
    """The PID's token, after entering through the supplier's signed link."""
    location = supply.enter(supply.link(), pid).headers["location"]
    assert location.startswith("https://q.example.org/"), location
    return token_of(location)


def end(client: TestClient, token: str, status: str) -> httpx.Response:
    response: httpx.Response = client.get(f"/survey/end?token={token}&status={status}", follow_redirects=False)
    return response


def callback(supply: Supply, token: str, event: str) -> str:
    response = supply.client.post(
        CALLBACK,
        json={"token": token, "event": event},
        headers={"Authorization": f"Bearer {supply.survey['callback_secret']}"},
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def stats(supply: Supply) -> dict[str, Any]:
    data: dict[str, Any] = supply.data("survey_stats", {"supplier_id": supply.sid})
    return data


def events(supply: Supply) -> list[dict[str, Any]]:
    response = supply.client.get(f"/admin/v1/surveys/{supply.survey['id']}/events", headers=supply.admin.headers)
    assert response.status_code == 200, response.text
    return [item["payload"] for item in response.json()["items"]]


def stored(database: Database, pid: str) -> Participation:
    with database.read_sessions() as session:
        found = session.scalar(select(Participation).where(Participation.pid == pid))
        assert found is not None
        session.expunge(found)
        return found


def with_postbacks(supply: Supply, receiver: Receiver) -> None:
    patched = supply.client.patch(
        f"/admin/v1/suppliers/{supply.supplier['id']}",
        json={"postback_url": receiver.url("/postback")},
        headers=supply.admin.headers,
    )
    assert patched.status_code == 200, patched.text


def postbacks(app: FastAPI, settings: Settings, supply: Supply, receiver: Receiver) -> list[dict[str, Any]]:
    """Send what the outbox holds to the receiver (a real HTTP server), check each signature, return the bodies."""

    async def drain() -> None:
        sender = WebhookSender(settings, app.state.database)
        try:
            while await sender.run_once():
                pass
        finally:
            await sender.close()

    asyncio.run(drain())
    bodies = []
    for received in receiver.at("/postback"):
        expected = hmac.new(supply.hmac_secret.encode(), received.body.encode(), hashlib.sha256).hexdigest()
        assert received.headers["x-invitelink-signature"] == f"sha256={expected}"
        payload = json.loads(received.body)
        bodies.append({**payload["data"], "type": payload["type"]})
    return bodies


@pytest.fixture
def supply(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Supply:
    return Supply(client, admin, make_survey, {"USA": 100})


# The setting ----------------------------------------------------------------------------------------------------


def test_the_setting_is_part_of_the_survey(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    default = make_survey(admin)
    assert default["outcome_verification"] == "browser"
    strict = make_survey(admin, outcome_verification="callback")
    assert strict["outcome_verification"] == "callback"
    url = f"/admin/v1/surveys/{strict['id']}"
    assert client.get(url, headers=admin.headers).json()["outcome_verification"] == "callback"
    for wrong in ("server", None, 1):
        refused = client.patch(url, json={"outcome_verification": wrong}, headers=admin.headers)
        assert refused.status_code == 422, refused.text
    assert client.patch(url, json={"outcome_verification": "browser"}, headers=admin.headers).status_code == 200
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["SurveyIn"]["properties"]["outcome_verification"]["description"]
    assert "outcome_verification" in schema["SurveyOut"]["required"]


# Forged completes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "counted"), [("browser", FORGED), ("callback", 0)])
def test_forged_browser_completes_are_paid_only_where_the_browser_is_trusted(
    supply: Supply, app: FastAPI, mode: str, counted: int
) -> None:
    set_mode(supply, mode)
    signed = 0
    for i in range(FORGED):
        pid = f"forger-{i}"
        # Enter, then go straight to the end redirect typed by hand: no questionnaire, no callback.
        target = end(supply.client, enter(supply, pid), "complete").headers["location"]
        assert target.startswith(f"{PANEL}?status=C&uid={pid}&hmac=")
        signed += verify_redirect(target, supply.hmac_secret)
        if mode == "callback":
            # The success redirect, unsigned and marked: the supplier can tell it is not a confirmed complete.
            assert parse_qs(urlsplit(target).query, keep_blank_values=True)["hmac"] == [""]
            assert target.endswith("&verified=0")
            participation = stored(app.state.database, pid)
            assert (participation.status, participation.reported_status) == ("started", "completed")
            assert participation.outcome_source is None and participation.verified_at is None
    figures = stats(supply)
    assert (signed, figures["completes"], figures["revenue"]) == (counted, counted, 6 * counted)
    assert figures["surveyStarts"] == FORGED and figures["isVerified"] is False
    rows = supply.data(
        "survey_stats_by_id", {"supplier_id": supply.sid, "project_id": supply.survey["public_id"], "per_page": 10}
    )["data"]
    assert [row["status"] for row in rows] == ["complete" if counted else "started"] * FORGED
    # Coming back through the link gives the same answer as the end did, not a fresh start.
    again = supply.enter(supply.link(), "forger-0").headers["location"]
    assert again.startswith(f"{PANEL}?status=C&uid=forger-0&hmac=")
    assert verify_redirect(again, supply.hmac_secret) is (mode == "browser")


def test_the_callback_confirms_a_reported_completion(
    supply: Supply, app: FastAPI, settings: Settings, receiver: Receiver
) -> None:
    set_mode(supply, "callback")
    with_postbacks(supply, receiver)
    token = enter(supply, "P1")
    assert not verify_redirect(end(supply.client, token, "complete").headers["location"], supply.hmac_secret)
    assert end(supply.client, token, "complete").headers["location"].endswith("verified=0")  # a repeat: the same
    assert postbacks(app, settings, supply, receiver) == []  # nothing final yet
    assert callback(supply, token, "completed") == "completed"
    participation = stored(app.state.database, "P1")
    assert (participation.status, participation.outcome_source) == ("completed", "callback")
    assert participation.verified_at is not None and participation.ended_at == participation.reported_at
    [postback] = postbacks(app, settings, supply, receiver)
    assert postback["type"] == "participation.completed" and postback["status"] == "completed"
    assert (postback["verified"], postback["source"], postback["pid"]) == (True, "callback", "P1")
    assert "reversed_from" not in postback
    assert [e["type"] for e in events(supply)] == [
        "participation.clicked",
        "participation.started",  # the browser's report: it started, at least
        "participation.completed",
    ]
    figures = stats(supply)
    assert (figures["completes"], figures["revenue"], figures["isVerified"]) == (1, 6, True)
    # The end redirect is now the signed success; the browser's later word changes nothing.
    assert verify_redirect(end(supply.client, token, "terminate").headers["location"], supply.hmac_secret)
    assert callback(supply, token, "terminated") == "completed"  # the first final outcome of the callback wins
    assert len(events(supply)) == 3


def test_a_reported_completion_the_callback_rejects(supply: Supply, app: FastAPI) -> None:
    set_mode(supply, "callback")
    token = enter(supply, "P2")
    end(supply.client, token, "complete")
    assert callback(supply, token, "terminated") == "terminated"
    participation = stored(app.state.database, "P2")
    assert (participation.status, participation.outcome_source) == ("terminated", "callback")
    last = events(supply)[-1]
    assert last["type"] == "participation.terminated" and "reversed_from" not in last["data"]
    figures = stats(supply)
    assert (figures["completes"], figures["fails"], figures["revenue"]) == (0, 1, 0)


def test_other_outcomes_from_the_browser_stay_trusted_in_callback_mode(supply: Supply, app: FastAPI) -> None:
    set_mode(supply, "callback")
    for pid, status, redirect in (("T", "terminate", "T"), ("Q", "quotafull", "Q"), ("S", "security", "S")):
        target = end(supply.client, enter(supply, pid), status).headers["location"]
        assert target.startswith(f"{PANEL}?&status={redirect}&uid={pid}&hmac=")
        assert verify_redirect(target, supply.hmac_secret)
        assert stored(app.state.database, pid).outcome_source == "browser"
    figures = stats(supply)
    assert (figures["fails"], figures["overQuota"], figures["qualityTerms"]) == (1, 1, 1)


def test_personal_links_in_callback_mode(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    sosci = Sosci(client, admin, make_survey, outcome_verification="callback")
    token = sosci.call("create_link", uid="p1").json()["token"]
    thanks = client.get("/survey/end", params={"token": token, "status": "complete"})
    assert thanks.status_code == 200 and "Thank you!" in thanks.text  # the participant sees no difference
    results = f"/admin/v1/surveys/{sosci.survey['id']}/results"
    [item] = client.get(results, headers=admin.headers).json()["items"]
    assert (item["status"], item["completed_at"]) == ("started", None)
    assert client.get(f"/admin/v1/surveys/{sosci.survey['id']}/funnel", headers=admin.headers).json()["completed"] == 0
    secret = {"Authorization": f"Bearer {sosci.survey['callback_secret']}"}
    confirmed = client.post(CALLBACK, json={"token": token, "event": "completed"}, headers=secret)
    assert confirmed.json() == {"ok": True, "status": "completed"}
    [item] = client.get(results, headers=admin.headers).json()["items"]
    assert item["status"] == "completed" and item["completed_at"] is not None


# Reversal -------------------------------------------------------------------------------------------------------


def test_in_the_default_mode_a_browser_outcome_stays_final(
    supply: Supply, app: FastAPI, settings: Settings, receiver: Receiver
) -> None:
    """Surveys that trust the browser keep the status model's promise: a final status never changes, and a
    contradicting callback is recorded nowhere. Reversal is for surveys that verify by callback."""
    with_postbacks(supply, receiver)  # the default mode: the browser's complete is recorded and signed
    token = enter(supply, "R1")
    assert verify_redirect(end(supply.client, token, "complete").headers["location"], supply.hmac_secret)
    assert stats(supply)["completes"] == 1
    assert callback(supply, token, "terminated") == "completed"
    participation = stored(app.state.database, "R1")
    assert (participation.status, participation.outcome_source) == ("completed", "browser")
    [first] = postbacks(app, settings, supply, receiver)
    assert (first["type"], first["verified"], first["source"]) == ("participation.completed", False, "browser")
    assert [e["type"] for e in events(supply)][-1] == "participation.completed"
    figures = stats(supply)
    assert (figures["completes"], figures["fails"]) == (1, 0)
    # The callback confirming the same outcome makes it verified, and is no new event either.
    assert callback(supply, token, "completed") == "completed"
    assert stored(app.state.database, "R1").outcome_source == "callback"
    assert len(postbacks(app, settings, supply, receiver)) == 1


def test_a_browser_terminate_reversed_to_complete_in_callback_mode(supply: Supply, app: FastAPI) -> None:
    set_mode(supply, "callback")
    token = enter(supply, "R2")
    end(supply.client, token, "terminate")
    assert callback(supply, token, "completed") == "completed"
    participation = stored(app.state.database, "R2")
    assert participation.verified_at is not None and participation.outcome_source == "callback"
    last = events(supply)[-1]
    assert last["type"] == "participation.completed"
    assert (last["data"]["reversed_from"], last["data"]["verified"]) == ("terminated", True)
    assert (stats(supply)["completes"], stats(supply)["fails"]) == (1, 0)


def test_a_confirmation_is_not_a_reversal(supply: Supply, app: FastAPI) -> None:
    token = enter(supply, "C1")
    end(supply.client, token, "complete")
    assert stats(supply)["isVerified"] is False
    assert callback(supply, token, "completed") == "completed"
    assert stored(app.state.database, "C1").outcome_source == "callback"
    assert [e["type"] for e in events(supply)] == ["participation.clicked", "participation.completed"]
    assert stats(supply)["isVerified"] is True


def test_admission_outcomes_are_not_reversed(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    supply = Supply(client, admin, make_survey, {"USA": 0})
    supply.data("add_participant", {"supplier_id": supply.sid, "pid": "full", "country": "USA"})
    refused = supply.enter(supply.link(), "full").headers["location"]
    assert refused.startswith(f"{PANEL}?&status=Q&uid=full&hmac=")
    [row] = supply.data("survey_stats_by_id", {"supplier_id": supply.sid, "project_id": supply.survey["public_id"]})[
        "data"
    ]
    # The questionnaire never saw this token; a callback naming it cannot turn the refusal into a complete.
    assert callback(supply, row["token"], "completed") == "quotafull"
    [refusal] = [e for e in events(supply) if e["type"] == "participation.quotafull"]
    assert (refusal["data"]["source"], refusal["data"]["verified"]) == ("admission", True)


# PIDs the supplier never registered -----------------------------------------------------------------------------


def test_an_invented_pid_does_not_skip_a_full_country(
    client: TestClient, admin: Admin, make_survey: MakeSurvey
) -> None:
    supply = Supply(client, admin, make_survey, {"USA": 2, "UK": 300})
    link = supply.link()
    for pid in ("u1", "u2", "u3"):
        supply.data("add_participant", {"supplier_id": supply.sid, "pid": pid, "country": "USA"})
    enter(supply, "u1")
    enter(supply, "u2")
    assert supply.enter(link, "u3").headers["location"].startswith(f"{PANEL}?&status=Q&uid=u3&hmac=")
    # u3 types another PID into the same link: no country known, and USA is full, so no place.
    invented = supply.enter(link, "u3-again").headers["location"]
    assert invented.startswith(f"{PANEL}?&status=Q&uid=u3-again&hmac=")
    assert verify_redirect(invented, supply.hmac_secret)
    figures = stats(supply)
    assert (figures["clicks"], figures["preSurveyOverQuota"]) == (4, 2)


def test_unregistered_pids_share_the_limits_total(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    supply = Supply(client, admin, make_survey, {"USA": 2, "UK": 1})
    link = supply.link()
    admitted = [
        pid
        for pid in ("a", "b", "c", "d", "e")
        if supply.enter(link, pid).headers["location"].startswith("https://q.example.org/")
    ]
    assert admitted == ["a", "b", "c"]  # 2 + 1 places, whatever the entrants' countries
    # A place freed (an entrant screened out) is a place again.
    callback(supply, token_of(supply.enter(link, "a").headers["location"]), "terminated")
    assert supply.enter(link, "f").headers["location"].startswith("https://q.example.org/")


def test_without_limits_unregistered_pids_enter(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    supply = Supply(client, admin, make_survey, {})
    for i in range(5):
        enter(supply, f"free-{i}")


def test_unregistered_entrants_against_a_limit_at_once(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings
) -> None:
    """Two processes, twenty unregistered entrants at the same moment, a limit of five: exactly five get in."""
    supply = Supply(client, admin, make_survey, {"USA": 5})
    path = supply.link("production").removeprefix("http://testserver")
    apps = [create_app(settings), create_app(settings)]

    async def burst() -> list[httpx.Response]:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://testserver") for a in apps]
        try:
            return await asyncio.gather(*(clients[i % 2].get(path.replace("[%%pid%%]", f"n{i}")) for i in range(20)))
        finally:
            for c in clients:
                await c.aclose()

    try:
        locations = [r.headers["location"] for r in asyncio.run(burst())]
    finally:
        for a in apps:
            a.state.database.dispose()
    assert sum(loc.startswith("https://q.example.org/") for loc in locations) == 5
    assert sum(loc.startswith(f"{PANEL}?&status=Q&") for loc in locations) == 15


# The migration -----------------------------------------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'before.db'}"
        return
    assert PG_URL
    name = f"invitelink_vo_{uuid.uuid4().hex[:8]}"
    yield create_pg_database(PG_URL, name)
    drop_pg_database(PG_URL, name)


def test_existing_rows_keep_their_meaning(empty_url: str) -> None:
    """Surveys stored before the setting trust the browser, as they did; a completion the callback had confirmed
    is known to come from it, and every other stored outcome is the browser's, so a callback arriving after the
    upgrade can still confirm it (on these surveys a callback never reverses)."""
    config = alembic_config(empty_url)
    command.upgrade(config, "0006")
    engine = create_engine(empty_url)
    now = "2026-11-29 10:00:00"
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO workspaces (id, name, status, created_at) VALUES (1, 'W', 'active', :now)"),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO surveys (id, workspace_id, project, public_id, title, status, questionnaire_url, "
                    "callback_secret_digest, cpi_currency, pii, description, countries, created_at, updated_at) "
                    "VALUES (1, 1, 'old-study', 'PROJ-00000001', 'Old', 'active', 'https://q.example.org/', "
                    "'digest', 'USD', false, '', '[]', :now, :now)"
                ),
                {"now": now},
            )
            for pid, status, verified in (("v", "completed", now), ("b", "completed", None), ("t", "terminated", None)):
                conn.execute(
                    text(
                        "INSERT INTO participations (survey_id, environment, status, click_count, created_at, "
                        "updated_at, pid, verified_at) "
                        "VALUES (1, 'production', :status, 1, :now, :now, :pid, :verified)"
                    ),
                    {"status": status, "now": now, "pid": pid, "verified": verified},
                )
        command.upgrade(config, "0007")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT outcome_verification FROM surveys")).scalar_one() == "browser"
            sources = dict(conn.execute(text("SELECT pid, outcome_source FROM participations")).tuples().all())
            assert sources == {"v": "callback", "b": "browser", "t": "browser"}
        command.downgrade(config, "0006")
        command.upgrade(config, "0007")
    finally:
        engine.dispose()
