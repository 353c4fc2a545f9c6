"""The trigger API (Survey.is-style): its documented curl bodies, every documented error, cooldown across instances,
templates through a real SMTP server, metadata in the results."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import Database
from invitelink.models import Contact, Delivery, Mailing, Token, TriggerToken, Workspace, utcnow
from invitelink.security import random_code
from invitelink.services import contacts, links
from invitelink.worker.runner import Worker
from tests.conftest import Admin, MakeAdmin, MakeSurvey
from tests.smtp_server import SmtpSink

URL = "/api/invitation-trigger"
SEED_SINGLE = {
    "email": "person@example.com",
    "name": "Pat",
    "reminder_days": 3,
    "metadata": {"source_id": "evt_12345", "customer_tier": "starter"},
}
SEED_MULTIPLE = {
    "emails": [{"email": "alex@example.com", "name": "Alex"}, {"email": "sam@example.com", "name": "Sam"}],
    "send_at": "2026-05-18 14:00:00 UTC",
    "metadata": {"campaign": "post-demo"},
}
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


class Trigger:
    """A survey with one trigger token, and helpers to call the endpoint with it."""

    def __init__(self, client: TestClient, admin: Admin, survey: dict[str, Any], **token_fields: Any) -> None:
        self.client, self.admin, self.survey = client, admin, survey
        self.base = f"/admin/v1/surveys/{survey['id']}/trigger-tokens"
        created = client.post(self.base, json={"name": "CRM", **token_fields}, headers=admin.headers)
        assert created.status_code == 201, created.text
        self.token = created.json()
        self.secret: str = self.token["secret"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self.auth)
        response: httpx.Response = self.client.post(URL, json=body, **kwargs)
        return response


@pytest.fixture
def trigger(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Trigger:
    return Trigger(client, admin, make_survey(admin, status="active"))


def assert_error(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"ok", "error"} and body["ok"] is False
    assert fragment in body["error"], body["error"]


def count(db: Session, model: Any) -> int:
    db.rollback()  # a new read transaction: see what was committed since
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_seed_single_recipient(trigger: Trigger, db: Session) -> None:
    before = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    response = trigger.post(SEED_SINGLE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"ok", "message", "batch"} and body["ok"] is True
    assert body["message"] == "Invitation queued."
    assert set(body["batch"]) == {"uuid", "scheduled_at", "status"} and body["batch"]["status"] == "queued"
    assert TIME.match(body["batch"]["scheduled_at"])
    assert abs(datetime.strptime(body["batch"]["scheduled_at"], "%Y-%m-%d %H:%M:%S") - before) < timedelta(seconds=5)

    mailing = db.scalar(select(Mailing).where(Mailing.uuid == body["batch"]["uuid"]))
    assert mailing is not None and mailing.kind == "trigger" and mailing.reminder_days == 3
    assert mailing.meta == SEED_SINGLE["metadata"]
    contact = db.scalar(select(Contact).where(Contact.email == "person@example.com"))
    assert contact is not None and contact.name == "Pat"
    delivery = db.scalar(select(Delivery).where(Delivery.mailing_id == mailing.id))
    assert delivery is not None and delivery.status == "queued" and delivery.contact_id == contact.id
    token = db.get(Token, delivery.token_id)
    assert token is not None and token.mailing_id == mailing.id and token.kind == "personal"


def test_seed_multiple_recipients_scheduled(trigger: Trigger, db: Session) -> None:
    response = trigger.post(SEED_MULTIPLE)
    assert response.status_code == 200, response.text
    assert response.json()["batch"]["scheduled_at"] == "2026-05-18 14:00:00"
    mailing = db.scalar(select(Mailing).where(Mailing.uuid == response.json()["batch"]["uuid"]))
    assert mailing is not None and mailing.meta == {"campaign": "post-demo"}
    rows = db.execute(
        select(Contact.email, Contact.name, Delivery.due_at)
        .join(Delivery, Delivery.contact_id == Contact.id)
        .where(Delivery.mailing_id == mailing.id)
        .order_by(Contact.email)
    ).all()
    assert [(r.email, r.name) for r in rows] == [("alex@example.com", "Alex"), ("sam@example.com", "Sam")]
    assert {r.due_at.replace(tzinfo=None) for r in rows} == {datetime(2026, 5, 18, 14, 0)}


@pytest.mark.parametrize(
    ("send_at", "expected"),
    [
        ("2027-01-02T03:04:05Z", "2027-01-02 03:04:05"),
        ("2027-01-02 03:04:05", "2027-01-02 03:04:05"),
        ("2027-01-02T05:04:05+02:00", "2027-01-02 03:04:05"),
    ],
)
def test_send_at_formats_are_read_as_utc(trigger: Trigger, send_at: str, expected: str) -> None:
    response = trigger.post({"email": "a@example.com", "send_at": send_at})
    assert response.status_code == 200, response.text
    assert response.json()["batch"]["scheduled_at"] == expected


def test_send_in_seconds_and_now(trigger: Trigger) -> None:
    later = trigger.post({"email": "a@example.com", "send_in_seconds": 3600}).json()["batch"]["scheduled_at"]
    now = trigger.post({"email": "b@example.com", "send_at": "now"}).json()["batch"]["scheduled_at"]
    delta = datetime.fromisoformat(later) - datetime.fromisoformat(now)
    assert timedelta(seconds=3590) < delta < timedelta(seconds=3610)


def test_the_secret_is_accepted_from_query_and_body(trigger: Trigger) -> None:
    assert trigger.client.post(f"{URL}?token={trigger.secret}", json={"email": "q@example.com"}).status_code == 200
    assert trigger.client.post(URL, json={"email": "b@example.com", "secret": trigger.secret}).status_code == 200
    form = trigger.client.post(URL, data={"email": "f@example.com", "token": trigger.secret, "name": "Form"})
    assert form.status_code == 200, form.text


def test_token_errors_are_400(trigger: Trigger, db: Session) -> None:
    assert_error(trigger.client.post(URL, json={"email": "a@example.com"}), 400, "missing trigger token")
    wrong = {"Authorization": "Bearer sit_not-a-real-secret"}
    assert_error(trigger.post({"email": "a@example.com"}, headers=wrong), 400, "unknown trigger token")
    assert count(db, Mailing) == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "email is required"),
        ({"email": "not-an-address"}, "invalid recipient"),
        ({"emails": ["ok@example.com", {"email": "broken@"}]}, "invalid recipient emails[1]"),
        ({"emails": [{"name": "No address"}]}, "email is required"),
        ({"emails": []}, "non-empty list"),
        ({"email": "a@example.com", "emails": ["b@example.com"]}, "not both"),
        ({"email": "a@example.com", "send_in_seconds": 60, "send_at": "now"}, "only one timing field"),
        ({"email": "a@example.com", "send_at": "next tuesday"}, "send_at must be now or a UTC date/time"),
        ({"email": "a@example.com", "send_in_seconds": -5}, "send_in_seconds must be between"),
        ({"email": "a@example.com", "send_in_seconds": "soon"}, "whole number"),
        ({"email": "a@example.com", "send_at": "2999-01-01 00:00:00"}, "365 days"),
        ({"email": "a@example.com", "metadata": ["not", "an", "object"]}, "metadata must be a JSON object"),
        ({"email": "a@example.com", "metadata": {"blob": "x" * 5000}}, "metadata is larger than 4096 bytes"),
        ({"email": "a@example.com", "subject": "s" * 301}, "subject is longer than 300"),
        ({"email": "a@example.com", "message": "m" * 20_001}, "message is longer than 20000"),
        ({"email": "a@example.com", "reminder_days": "three"}, "reminder_days must be a whole number"),
        ({"emails": [f"p{i}@example.com" for i in range(1001)]}, "at most 1000 recipients"),
    ],
)
def test_invalid_requests_are_400_and_store_nothing(
    trigger: Trigger, db: Session, body: dict[str, Any], fragment: str
) -> None:
    assert_error(trigger.post(body), 400, fragment)
    assert (count(db, Mailing), count(db, Contact), count(db, Delivery)) == (0, 0, 0)
    # A refused call does not use up the token's cooldown.
    assert db.scalar(select(TriggerToken.last_used_at)) is None


def test_malformed_json_is_400(trigger: Trigger) -> None:
    response = trigger.client.post(
        URL, content=b"{not json", headers={**trigger.auth, "Content-Type": "application/json"}
    )
    assert_error(response, 400, "not valid JSON")
    assert_error(trigger.post(["a@example.com"]), 400, "must be an object")


def test_closed_survey_and_disabled_workspace_are_400(trigger: Trigger, db: Session) -> None:
    sid = trigger.survey["id"]
    closed = trigger.client.patch(f"/admin/v1/surveys/{sid}", json={"status": "closed"}, headers=trigger.admin.headers)
    assert closed.status_code == 200, closed.text
    assert_error(trigger.post({"email": "a@example.com"}), 400, "survey is closed")
    trigger.client.patch(f"/admin/v1/surveys/{sid}", json={"status": "active"}, headers=trigger.admin.headers)
    app_db: Database = cast(FastAPI, trigger.client.app).state.database
    with app_db.sessions.begin() as session:
        session.execute(update(Workspace).values(status="disabled"))
    assert_error(trigger.post({"email": "a@example.com"}), 400, "workspace is disabled")
    assert count(db, Mailing) == 0


def test_draft_survey_accepts_and_holds_the_batch(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings
) -> None:
    trigger = Trigger(client, admin, make_survey(admin))  # surveys start as drafts
    assert trigger.post({"email": "early@example.com"}).status_code == 200
    database = cast(FastAPI, client.app).state.database
    worker = Worker(settings, database)
    assert asyncio.run(worker.run_once()) == 0  # due, but the survey is not active yet
    assert not list((settings.var_dir / "outbox").glob("*.eml"))


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405_with_allow(trigger: Trigger, method: str) -> None:
    response = trigger.client.request(method, URL, headers=trigger.auth)
    assert_error(response, 405, "use POST")
    assert response.headers["allow"] == "POST"


def test_cooldown_is_429_with_retry_after_and_then_passes(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, db: Session
) -> None:
    trigger = Trigger(client, admin, make_survey(admin, status="active"), cooldown_seconds=30)
    assert trigger.post({"email": "a@example.com"}).status_code == 200
    refused = trigger.post({"email": "b@example.com"})
    assert_error(refused, 429, "cooldown")
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert count(db, Mailing) == 1
    app_db: Database = cast(FastAPI, client.app).state.database
    with app_db.sessions.begin() as session:  # as if the cooldown had run out
        session.execute(update(TriggerToken).values(last_used_at=utcnow() - timedelta(seconds=31)))
    assert trigger.post({"email": "b@example.com"}).status_code == 200


def test_flood_protection_counts_batches_and_recipients(
    settings: Settings, admin: Admin, make_survey: MakeSurvey, client: TestClient
) -> None:
    strict = settings.model_copy(update={"trigger_flood_batches_per_minute": 2, "trigger_flood_recipients_per_hour": 5})
    with TestClient(create_app(strict)) as guarded:
        trigger = Trigger(guarded, admin, make_survey(admin, status="active"))
        assert trigger.post({"emails": ["a@example.com", "b@example.com"]}).status_code == 200
        too_many = trigger.post({"emails": ["c@example.com", "d@example.com", "e@example.com", "f@example.com"]})
        assert_error(too_many, 429, "recipients per hour")
        assert int(too_many.headers["retry-after"]) > 3000
        assert trigger.post({"email": "c@example.com"}).status_code == 200
        flood = trigger.post({"email": "d@example.com"})
        assert_error(flood, 429, "batches per minute")
        assert 1 <= int(flood.headers["retry-after"]) <= 60


def test_cooldown_holds_across_two_app_instances(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings, db: Session
) -> None:
    trigger = Trigger(client, admin, make_survey(admin, status="active"), cooldown_seconds=60)
    apps = [create_app(settings), create_app(settings)]

    async def race() -> list[httpx.Response]:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://testserver") for a in apps]
        try:
            return await asyncio.gather(
                *(
                    clients[i % 2].post(URL, json={"email": f"r{i}@example.com"}, headers=trigger.auth)
                    for i in range(20)
                )
            )
        finally:
            for c in clients:
                await c.aclose()

    codes = sorted(r.status_code for r in asyncio.run(race()))
    assert codes == [200] + [429] * 19
    assert count(db, Mailing) == 1 and count(db, Delivery) == 1
    for a in apps:
        a.state.database.dispose()


def test_a_thousand_recipients_in_one_call(trigger: Trigger, db: Session) -> None:
    emails = [{"email": f"person{i:04d}@example.com", "name": f"Person {i}"} for i in range(1000)]
    response = trigger.post({"emails": emails, "metadata": {"campaign": "big"}})
    assert response.status_code == 200, response.text
    assert count(db, Delivery) == 1000 and count(db, Contact) == 1000
    assert db.scalar(select(func.count(func.distinct(Delivery.token_id)))) == 1000
    # A second batch to the same people reuses their contacts and gives each a new personal link.
    assert trigger.post({"emails": emails[:10]}).status_code == 200
    assert count(db, Contact) == 1000 and count(db, Token) == 1010


def batch_rows(db: Session, uuid: str) -> list[Any]:
    """(email, name, contact id, token id, token's contact id, status) of each delivery of the batch, by address."""
    db.rollback()
    return list(
        db.execute(
            select(Contact.email, Contact.name, Contact.id, Delivery.token_id, Token.contact_id, Delivery.status)
            .join(Delivery, Delivery.contact_id == Contact.id)
            .join(Mailing, Mailing.id == Delivery.mailing_id)
            .join(Token, Token.id == Delivery.token_id)
            .where(Mailing.uuid == uuid)
            .order_by(Contact.email)
        ).all()
    )


def test_a_repeated_address_is_one_recipient_with_its_last_name(trigger: Trigger, db: Session) -> None:
    emails = [
        "Dup@Example.com",
        {"email": "other@example.com", "name": "O"},
        {"email": " dup@example.com", "name": "D"},
    ]
    response = trigger.post({"emails": emails})
    assert response.status_code == 200, response.text
    rows = batch_rows(db, response.json()["batch"]["uuid"])
    assert [(r.email, r.name) for r in rows] == [("dup@example.com", "D"), ("other@example.com", "O")]
    assert count(db, Contact) == 2 and count(db, Token) == 2


def test_a_batch_of_known_and_new_addresses(trigger: Trigger, db: Session) -> None:
    first = trigger.post(
        {"emails": [{"email": "ann@example.com", "name": "Ann"}, {"email": "bob@example.com", "name": "Bob"}]}
    )
    assert first.status_code == 200, first.text
    added = trigger.client.post(
        f"/admin/v1/surveys/{trigger.survey['id']}/contacts",
        json={"email": "cy@example.com", "name": "Cy"},
        headers=trigger.admin.headers,
    )
    assert added.status_code == 201, added.text
    before = {r.email: r.contact_id for r in batch_rows(db, first.json()["batch"]["uuid"])}
    before["cy@example.com"] = added.json()["id"]
    emails = [
        {"email": "ann@example.com", "name": "Anna"},
        "bob@example.com",
        {"email": "cy@example.com", "name": "Cy"},
    ]
    second = trigger.post({"emails": [*emails, "new@example.com"]})
    assert second.status_code == 200, second.text
    rows = batch_rows(db, second.json()["batch"]["uuid"])
    # Known addresses keep their contact; a name given replaces the stored one, a missing name keeps it.
    assert [(r.email, r.name) for r in rows] == [
        ("ann@example.com", "Anna"),
        ("bob@example.com", "Bob"),
        ("cy@example.com", "Cy"),
        ("new@example.com", ""),
    ]
    assert all(before[r.email] == r.id for r in rows if r.email in before)
    # Each recipient holds a new token of this batch, its own, and one queued invitation.
    assert all(r.contact_id == r.id and r.status == "queued" for r in rows)
    assert len({r.token_id for r in rows}) == 4
    assert count(db, Contact) == 4 and count(db, Token) == 6 and count(db, Delivery) == 6


def test_a_suppressed_address_is_queued_and_skipped_when_due(
    trigger: Trigger, db: Session, settings: Settings, client: TestClient
) -> None:
    suppressed = client.post(
        "/admin/v1/suppressions", json={"address": "gone@example.com"}, headers=trigger.admin.headers
    )
    assert suppressed.status_code == 201, suppressed.text
    response = trigger.post({"emails": ["gone@example.com", "here@example.com"]})
    assert response.status_code == 200, response.text
    with SmtpSink() as sink:
        smtp = settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_starttls": False, "smtp_from": "l@x.org"}
        )
        worker = Worker(smtp, cast(FastAPI, client.app).state.database)
        asyncio.run(worker.run_once())
        assert [m["To"] for m in sink.messages] == ["here@example.com"]
    rows = batch_rows(db, response.json()["batch"]["uuid"])
    assert [(r.email, r.status) for r in rows] == [("gone@example.com", "skipped"), ("here@example.com", "sent")]


def test_a_clashing_person_code_or_token_code_is_drawn_again(
    trigger: Trigger, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert trigger.post({"email": "first@example.com"}).status_code == 200
    db.rollback()
    taken = db.execute(select(Contact.serial, Token.code).join(Token, Token.contact_id == Contact.id)).one()

    draws = {"serial": 0, "code": 0}

    def clashing(kind: str, value: str, draw: Any) -> Any:
        """``draw``, except that its first call returns ``value`` (already stored)."""

        def drawn(*args: Any) -> str:
            draws[kind] += 1
            return value if draws[kind] == 1 else str(draw(*args))

        return drawn

    monkeypatch.setattr(contacts, "new_serial", clashing("serial", taken.serial, contacts.new_serial))
    monkeypatch.setattr(links, "random_code", clashing("code", taken.code, random_code))
    response = trigger.post({"emails": ["second@example.com", "third@example.com"]})
    assert response.status_code == 200, response.text
    assert draws == {"serial": 3, "code": 3}  # two recipients, one drawn again
    rows = batch_rows(db, response.json()["batch"]["uuid"])
    assert [r.email for r in rows] == ["second@example.com", "third@example.com"]
    assert count(db, Contact) == 3 and count(db, Token) == 3
    assert db.scalar(select(func.count(func.distinct(Contact.serial)))) == 3
    assert db.scalar(select(func.count(func.distinct(Token.code)))) == 3


def test_overlapping_batches_at_once_share_one_contact_per_address(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings, db: Session
) -> None:
    survey = make_survey(admin, status="active")
    triggers = [Trigger(client, admin, survey), Trigger(client, admin, survey)]  # two tokens: no shared cooldown
    apps = [create_app(settings), create_app(settings)]
    # Opposite orders: rows inserted in the order given would take the overlap's index locks crosswise.
    batches = [[f"p{i:03d}@example.com" for i in range(0, 200)], [f"p{i:03d}@example.com" for i in range(299, 99, -1)]]

    async def race() -> list[httpx.Response]:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://testserver") for a in apps]
        try:
            return await asyncio.gather(
                *(clients[i].post(URL, json={"emails": batches[i]}, headers=triggers[i].auth) for i in range(2))
            )
        finally:
            for c in clients:
                await c.aclose()

    responses = asyncio.run(race())
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert count(db, Contact) == 300
    for response, addresses in zip(responses, batches, strict=True):
        rows = batch_rows(db, response.json()["batch"]["uuid"])
        assert [r.email for r in rows] == sorted(addresses) and all(r.contact_id == r.id for r in rows)
    for a in apps:
        a.state.database.dispose()


def test_issuing_a_mailing_s_tokens_again_returns_the_tokens_held(trigger: Trigger, db: Session, app: FastAPI) -> None:
    response = trigger.post({"emails": ["a@example.com", "b@example.com"]})
    assert response.status_code == 200, response.text
    rows = batch_rows(db, response.json()["batch"]["uuid"])
    mailing_id = db.scalar(select(Mailing.id).where(Mailing.uuid == response.json()["batch"]["uuid"]))
    assert mailing_id is not None
    database: Database = app.state.database

    def issue_again(session: Session) -> dict[int, int]:
        ids = [r.id for r in rows]
        return links.issue_mailing_tokens(session.connection(), trigger.survey["id"], mailing_id, ids, utcnow())

    assert database.write_blocking(issue_again) == {r.id: r.token_id for r in rows}
    assert count(db, Token) == 2


def test_templates_fill_four_placeholders_and_nothing_else(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings
) -> None:
    survey = make_survey(admin, status="active", title="Checkout feedback")
    trigger = Trigger(
        client,
        admin,
        survey,
        default_subject="{{workspace_name}} asks: {{survey_title}}",
        default_message="Hi {{recipient_name}}! {{survey_link}} {{ other }} {survey_title} {{__class__}}",
    )
    assert trigger.post({"email": "pat@example.com", "name": "Pat"}).status_code == 200
    assert (
        trigger.post({"email": "own@example.com", "subject": "Custom {{recipient_name}}", "message": "Go"}).status_code
        == 200
    )
    with SmtpSink() as sink:
        smtp = settings.model_copy(
            update={
                "smtp_host": "127.0.0.1",
                "smtp_port": sink.port,
                "smtp_starttls": False,
                "smtp_from": "l@example.org",
            }
        )
        worker = Worker(smtp, cast(FastAPI, client.app).state.database)
        assert asyncio.run(worker.run_once()) == 2
        messages = {m["To"]: m for m in sink.messages}
    pat = messages["Pat <pat@example.com>"]
    assert pat["Subject"] == "Lab asks: Checkout feedback"
    text = cast(EmailMessage, pat.get_body(("plain",))).get_content()
    link = re.search(rf"http://testserver/{survey['project']}/\?d=([A-Z0-9]{{16}})", text)
    assert link is not None
    assert text.startswith(f"Hi Pat! {link.group(0)} {{{{ other }}}} {{survey_title}} {{{{__class__}}}}")
    own = messages["own@example.com"]
    assert own["Subject"] == "Custom"  # no name given: the placeholder is empty
    assert cast(EmailMessage, own.get_body(("plain",))).get_content().startswith("Go")


def test_metadata_shows_in_results_once_completed(trigger: Trigger, db: Session) -> None:
    assert trigger.post(SEED_SINGLE).status_code == 200
    code = db.scalar(select(Token.code).where(Token.mailing_id.is_not(None)))
    assert code is not None
    survey = trigger.survey
    opened = trigger.client.get(f"/{survey['project']}/?d={code}", follow_redirects=False)
    assert opened.status_code == 302
    results = f"/admin/v1/surveys/{survey['id']}/results"
    item = trigger.client.get(results, headers=trigger.admin.headers).json()["items"][0]
    assert item["token"] == code and item["metadata"] is None  # hidden until completed
    callback = {"Authorization": f"Bearer {survey['callback_secret']}"}
    event = {"token": code, "event": "completed", "response": {"q1": 5}}
    assert trigger.client.post("/api/v1/participations/events", json=event, headers=callback).status_code == 200
    item = trigger.client.get(results, headers=trigger.admin.headers).json()["items"][0]
    assert item["status"] == "completed"
    assert item["metadata"] == SEED_SINGLE["metadata"] and item["response"] == {"q1": 5}


def test_database_not_ready_is_503(settings: Settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    with TestClient(create_app(empty)) as fresh:
        response = fresh.post(URL, json={"email": "a@example.com"}, headers={"Authorization": "Bearer sit_x"})
    assert_error(response, 503, "not ready")


def test_admin_tokens_show_the_secret_once_and_delete_rotates(trigger: Trigger, db: Session) -> None:
    assert trigger.secret.startswith("sit_") and trigger.token["url"] == "http://testserver/api/invitation-trigger"
    stored = db.scalar(select(TriggerToken))
    assert stored is not None and trigger.secret not in (stored.secret_digest, stored.prefix)
    listed = trigger.client.get(trigger.base, headers=trigger.admin.headers).json()["items"]
    assert len(listed) == 1 and "secret" not in listed[0] and listed[0]["prefix"] == trigger.secret[:10]
    patched = trigger.client.patch(
        f"{trigger.base}/{trigger.token['id']}",
        json={"cooldown_seconds": 5, "default_reminder_days": 2},
        headers=trigger.admin.headers,
    )
    assert patched.status_code == 200 and patched.json()["cooldown_seconds"] == 5
    assert trigger.post({"email": "a@example.com"}).status_code == 200
    db.rollback()  # a new read transaction: see what was committed since
    assert db.scalar(select(Mailing.reminder_days)) == 2
    used = trigger.client.get(f"{trigger.base}/{trigger.token['id']}", headers=trigger.admin.headers).json()
    assert used["last_used_at"] is not None
    second = Trigger(trigger.client, trigger.admin, trigger.survey)
    deleted = trigger.client.delete(f"{trigger.base}/{trigger.token['id']}", headers=trigger.admin.headers)
    assert deleted.status_code == 204
    assert_error(trigger.post({"email": "b@example.com"}), 400, "unknown trigger token")
    assert second.post({"email": "b@example.com"}).status_code == 200
    db.rollback()  # a new read transaction: see what was committed since
    assert db.scalar(select(func.count()).select_from(Mailing).where(Mailing.trigger_token_id.is_(None))) == 1


def test_trigger_tokens_stay_in_their_workspace(trigger: Trigger, make_admin: MakeAdmin) -> None:
    other = make_admin()
    assert trigger.client.get(trigger.base, headers=other.headers).status_code == 404
    assert trigger.client.delete(f"{trigger.base}/{trigger.token['id']}", headers=other.headers).status_code == 404
    created = trigger.client.post(trigger.base, json={"name": "stolen"}, headers=other.headers)
    assert created.status_code == 404
