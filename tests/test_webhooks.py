"""Webhooks and supplier postbacks end to end: a real HTTP receiver on loopback, signatures checked with the
``standardwebhooks`` library, retries with one webhook-id, rotation, SSRF refusals, disabling, the admin API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from itertools import pairwise
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standardwebhooks import WebhookVerificationError

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import Database, transaction
from invitelink.models import EVENT_TYPES, WebhookEndpoint, WebhookMessage, utcnow
from invitelink.services import events
from invitelink.worker.runner import Worker
from invitelink.worker.webhooks import RETRY_AFTER_FIRST, WebhookSender, claim
from tests.conftest import Admin, MakeAdmin, MakeSurvey
from tests.fixtures_webhooks import Receiver
from tests.fixtures_worker import Run
from tests.invites import join
from tests.smtp_server import SmtpSink
from tests.test_supply import Supply

ENDPOINTS = "/admin/v1/webhook-endpoints"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings, with private targets allowed: the receiver is on loopback."""
    return settings.model_copy(update={"webhook_allow_private": True})


@pytest.fixture
def database(app: FastAPI) -> Database:
    db: Database = app.state.database
    return db


@pytest.fixture
def sender(settings: Settings, database: Database, arun: Run[Any]) -> Iterator[WebhookSender]:
    s = WebhookSender(settings, database)
    yield s
    arun(s.close())


def create_endpoint(client: TestClient, admin: Admin, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post(ENDPOINTS, json={"url": url, **fields}, headers=admin.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def emit(database: Database, workspace_id: int, event_type: str = "contact.unsubscribed") -> None:
    """Record one event of the workspace the way the services do, in a transaction of its own."""
    with transaction(database.sessions) as session:
        events.record(
            session,
            event_type,
            workspace_id=workspace_id,
            survey_id=None,
            contact_id=None,
            data={"survey_id": None, "token": None, "contact": None, "status": "suppressed", "address": "a@b.org"},
        )


def make_due(database: Database) -> None:
    """Move every queued message's next attempt to now: the retry schedule, without waiting for it."""
    with transaction(database.sessions) as session:
        session.execute(update(WebhookMessage).where(WebhookMessage.status == "queued").values(due_at=utcnow()))


def message_rows(database: Database) -> list[WebhookMessage]:
    with database.read_sessions() as session:
        return list(session.scalars(select(WebhookMessage).order_by(WebhookMessage.id)))


# The whole path: a trigger recipient's mail, click, start and completion ------------------------------------


def test_lifecycle_of_a_trigger_recipient_reaches_the_endpoint_signed(
    client: TestClient,
    admin: Admin,
    make_admin: MakeAdmin,
    make_survey: MakeSurvey,
    settings: Settings,
    database: Database,
    receiver: Receiver,
    sender: WebhookSender,
    arun: Run[Any],
) -> None:
    everything = create_endpoint(client, admin, receiver.url("/all"), description="CRM")
    completions = create_endpoint(client, admin, receiver.url("/done"), event_types=["participation.completed"])
    assert everything["event_types"] is None and everything["enabled"] is True
    assert everything["secret"].startswith("whsec_") and everything["disabled_at"] is None
    assert set(everything) >= {"id", "url", "event_types", "description", "secret", "created_at", "disabled_at"}
    other = make_admin()
    create_endpoint(client, other, receiver.url("/other"))

    survey = make_survey(admin, status="active")
    token = client.post(
        f"/admin/v1/surveys/{survey['id']}/trigger-tokens", json={"name": "CRM"}, headers=admin.headers
    ).json()
    queued = client.post(
        "/api/invitation-trigger",
        json={"email": "pat@example.org", "name": "Pat", "metadata": {"order": "A-17"}},
        headers={"Authorization": f"Bearer {token['secret']}"},
    )
    assert queued.status_code == 200, queued.text
    with SmtpSink() as sink:
        smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_starttls": False})
        worker = Worker(smtp, database)
        assert arun(worker.run_once()) == 1
        arun(worker.close())
    text = cast(EmailMessage, sink.messages[0].get_body(("plain",))).get_content()
    link = re.search(r"http://testserver(/\S+\?d=([A-Z0-9]+))", text)
    assert link is not None
    path, code = link.groups()
    assert client.get(path, follow_redirects=False).status_code == 302
    callback = {"Authorization": f"Bearer {survey['callback_secret']}"}
    for event in ("started", "completed"):
        answer = client.post("/api/v1/participations/events", json={"token": code, "event": event}, headers=callback)
        assert answer.status_code == 200, answer.text

    assert arun(sender.run_once()) == 5  # four to /all, one to /done, none to the other workspace
    received = {r.verify(everything["secret"])["type"]: r for r in receiver.at("/all")}
    assert set(received) == {
        "delivery.sent",
        "participation.clicked",
        "participation.started",
        "participation.completed",
    }
    for event_type, request in received.items():
        payload = request.verify(everything["secret"])
        assert payload["type"] == event_type and payload["timestamp"].endswith("Z")
        data = payload["data"]
        assert data["survey_id"] == survey["id"] and data["token"] == code
        assert data["contact"]["email"] == "pat@example.org"
        assert data["metadata"] == {"order": "A-17"}
        assert request.headers["content-type"] == "application/json"
        assert re.fullmatch(r"msg_\d+", request.headers["webhook-id"])
        with pytest.raises(WebhookVerificationError):
            request.verify(completions["secret"])  # another endpoint's secret does not verify
    assert received["participation.completed"].verify(everything["secret"])["data"]["status"] == "completed"
    assert received["delivery.sent"].verify(everything["secret"])["data"]["status"] == "sent"
    [done] = receiver.at("/done")
    assert done.verify(completions["secret"])["type"] == "participation.completed"
    assert receiver.at("/other") == []

    attempts = client.get(f"{ENDPOINTS}/{everything['id']}/attempts", headers=admin.headers)
    assert attempts.status_code == 200, attempts.text
    items = attempts.json()["items"]
    assert sorted(i["event_type"] for i in items) == sorted(received)
    assert {(i["attempt"], i["status_code"], i["error"]) for i in items} == {(1, 200, None)}
    assert all(i["duration_ms"] >= 0 and i["webhook_id"] == f"msg_{i['message_id']}" for i in items)
    delivered = client.get(f"{ENDPOINTS}/{everything['id']}/messages?status=delivered", headers=admin.headers)
    assert len(delivered.json()["items"]) == 4
    assert client.get(f"{ENDPOINTS}/{everything['id']}/messages?status=queued", headers=admin.headers).json() == {
        "items": [],
        "next_cursor": None,
    }


# Retries ------------------------------------------------------------------------------------------------------


def test_a_failing_receiver_gets_the_same_webhook_id_until_it_answers(
    client: TestClient,
    admin: Admin,
    database: Database,
    receiver: Receiver,
    sender: WebhookSender,
    arun: Run[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = create_endpoint(client, admin, receiver.url("/flaky"))
    receiver.script["/flaky"] = [500, 503]
    emit(database, admin.workspace_id)
    caplog.set_level(logging.INFO, logger="invitelink")

    assert arun(sender.run_once()) == 1
    [message] = message_rows(database)
    [first] = client.get(f"{ENDPOINTS}/{endpoint['id']}/attempts", headers=admin.headers).json()["items"]
    assert message.status == "queued" and message.last_status_code == 500
    started = message.due_at - RETRY_AFTER_FIRST[0]
    assert abs((started - utcnow()).total_seconds()) < 5  # due 5 s after the first attempt
    assert arun(sender.run_once()) == 0  # not due yet
    health = client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=admin.headers).json()
    assert health["failing_since"] is not None and health["enabled"] is True

    make_due(database)
    assert arun(sender.run_once()) == 1
    [message] = message_rows(database)
    assert message.status == "queued" and message.last_status_code == 503
    assert abs((message.due_at - started).total_seconds() - 30) < 2  # 30 s after the first attempt

    make_due(database)
    assert arun(sender.run_once()) == 1
    [message] = message_rows(database)
    assert message.status == "delivered" and message.attempts == 3 and message.delivered_at is not None

    ids = {r.headers["webhook-id"] for r in receiver.at("/flaky")}
    assert ids == {f"msg_{message.id}"}
    assert len(receiver.at("/flaky")) == 3
    for request in receiver.at("/flaky"):
        assert request.verify(endpoint["secret"])["type"] == "contact.unsubscribed"
    log = client.get(f"{ENDPOINTS}/{endpoint['id']}/attempts", headers=admin.headers).json()["items"]
    assert [(a["attempt"], a["status_code"]) for a in log] == [(3, 200), (2, 503), (1, 500)]  # newest first
    assert log[2]["id"] == first["id"] and log[2]["error"] == "HTTP 500: upstream unavailable"
    assert client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=admin.headers).json()["failing_since"] is None
    # One log line per failure, with the endpoint and the status; never the payload or the secret.
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(f"endpoint {endpoint['id']}" in line for line in failures)
    assert "HTTP 500" in failures[0] and "HTTP 503" in failures[1]
    everything_logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "suppressed" not in everything_logged and endpoint["secret"] not in everything_logged
    assert "a@b.org" not in everything_logged


def test_retry_schedule_and_giving_up_after_three_days(
    client: TestClient, admin: Admin, database: Database, receiver: Receiver, sender: WebhookSender, arun: Run[Any]
) -> None:
    offsets = [int(o.total_seconds()) for o in RETRY_AFTER_FIRST]
    assert offsets[:6] == [5, 30, 120, 600, 1800, 7200]
    assert all(b - a == 6 * 3600 for a, b in pairwise(offsets[5:-1]))
    assert offsets[-1] == 3 * 86400 and offsets[-1] - offsets[-2] <= 6 * 3600

    create_endpoint(client, admin, receiver.url("/down"))
    receiver.script["/down"] = [500] * 3
    emit(database, admin.workspace_id)
    arun(sender.run_once())
    # The last retry, three days after the first attempt, fails too: the message is given up.
    with transaction(database.sessions) as session:
        session.execute(update(WebhookMessage).values(attempts=len(RETRY_AFTER_FIRST), due_at=utcnow()))
    arun(sender.run_once())
    [message] = message_rows(database)
    assert message.status == "failed" and message.last_error is not None
    assert message.last_error.startswith(f"gave up after {len(RETRY_AFTER_FIRST) + 1} attempts: HTTP 500")
    assert arun(sender.run_once()) == 0


# Sharing the slots -------------------------------------------------------------------------------------------


def test_one_target_holds_at_most_half_of_the_slots(
    client: TestClient, admin: Admin, database: Database, receiver: Receiver, sender: WebhookSender, arun: Run[Any]
) -> None:
    create_endpoint(client, admin, receiver.url("/busy"))
    create_endpoint(client, admin, receiver.url("/quiet"), event_types=["delivery.sent"])
    for _ in range(8):
        emit(database, admin.workspace_id)
    for _ in range(2):
        emit(database, admin.workspace_id, "delivery.sent")
    assert arun(sender.run_once()) == 7  # five of the busy endpoint's ten, both of the quiet one's
    assert (len(receiver.at("/busy")), len(receiver.at("/quiet"))) == (5, 2)
    assert arun(sender.run_once()) == 5
    assert {m.status for m in message_rows(database)} == {"delivered"}


def test_concurrent_claims_never_share_a_message(
    client: TestClient, admin: Admin, settings: Settings, database: Database, receiver: Receiver
) -> None:
    create_endpoint(client, admin, receiver.url("/shared"))
    for _ in range(40):
        emit(database, admin.workspace_id)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    def claimer(name: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while True:
            with transaction(database.sessions) as session:
                jobs = claim(session, name, 7, timedelta(minutes=5), settings.server_secret, {}, 100)
            if not jobs:
                break
            mine += [j.message_id for j in jobs]
        claimed[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [m for ids in claimed.values() for m in ids]
    assert len(everything) == len(set(everything)) == 40


# Disabling after the failure window ----------------------------------------------------------------------------


def test_an_endpoint_failing_for_three_days_is_disabled_until_re_enabled(
    client: TestClient, admin: Admin, database: Database, receiver: Receiver, sender: WebhookSender, arun: Run[Any]
) -> None:
    endpoint = create_endpoint(client, admin, receiver.url("/broken"))
    receiver.script["/broken"] = [500] * 10
    emit(database, admin.workspace_id)
    emit(database, admin.workspace_id)
    assert arun(sender.run_once()) == 2
    # It has been failing for three days (its first failure moved back; nothing succeeded since).
    with transaction(database.sessions) as session:
        session.execute(update(WebhookEndpoint).values(failing_since=utcnow() - timedelta(days=3, minutes=1)))
    make_due(database)
    with transaction(database.sessions) as session:  # one of the two is due now, the other waits
        session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message_rows(database)[1].id)
            .values(due_at=utcnow() + timedelta(hours=1))
        )
    assert arun(sender.run_once()) == 1

    shown = client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=admin.headers).json()
    assert shown["enabled"] is False and shown["disabled_at"] is not None
    assert re.fullmatch(r"failing since \d{4}-\d\d-\d\d \d\d:\d\d UTC: last answer HTTP 500", shown["disabled_reason"])
    listed = client.get(ENDPOINTS, headers=admin.headers).json()["items"]
    assert [e["enabled"] for e in listed] == [False]
    # Its waiting messages stop, and new events queue nothing for it.
    assert {m.status for m in message_rows(database)} == {"failed"}
    assert all("endpoint disabled" in (m.last_error or "") for m in message_rows(database))
    emit(database, admin.workspace_id)
    assert len(message_rows(database)) == 2
    assert arun(sender.run_once()) == 0
    failed = client.get(f"{ENDPOINTS}/{endpoint['id']}/messages?status=failed", headers=admin.headers).json()
    assert len(failed["items"]) == 2

    receiver.script["/broken"] = []  # fixed
    enabled = client.patch(f"{ENDPOINTS}/{endpoint['id']}", json={"enabled": True}, headers=admin.headers)
    assert enabled.status_code == 200, enabled.text
    body = enabled.json()
    assert body["enabled"] is True and body["disabled_at"] is body["disabled_reason"] is body["failing_since"] is None
    emit(database, admin.workspace_id)
    assert arun(sender.run_once()) == 1
    assert message_rows(database)[-1].status == "delivered"


def test_an_admin_can_disable_an_endpoint(
    client: TestClient, admin: Admin, database: Database, receiver: Receiver, sender: WebhookSender, arun: Run[Any]
) -> None:
    endpoint = create_endpoint(client, admin, receiver.url("/paused"))
    emit(database, admin.workspace_id)
    paused = client.patch(f"{ENDPOINTS}/{endpoint['id']}", json={"enabled": False}, headers=admin.headers).json()
    assert paused["enabled"] is False and paused["disabled_reason"] == "disabled by an admin"
    assert arun(sender.run_once()) == 0
    assert receiver.requests == []


# Rotation ----------------------------------------------------------------------------------------------------


def test_rotation_signs_with_both_secrets_during_the_grace_period(
    client: TestClient, admin: Admin, database: Database, receiver: Receiver, sender: WebhookSender, arun: Run[Any]
) -> None:
    endpoint = create_endpoint(client, admin, receiver.url("/rotating"))
    old = endpoint["secret"]
    rotated = client.post(f"{ENDPOINTS}/{endpoint['id']}/secret", headers=admin.headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    expires = rotated.json()["previous_secret_expires_at"]
    assert expires is not None
    # The secret is shown at creation and rotation only.
    assert "secret" not in client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=admin.headers).json()
    assert "secret" not in client.get(ENDPOINTS, headers=admin.headers).json()["items"][0]

    emit(database, admin.workspace_id)
    arun(sender.run_once())
    [during] = receiver.at("/rotating")
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verify(old)["type"] == "contact.unsubscribed"  # a receiver that has not switched yet
    assert during.verify(new)["type"] == "contact.unsubscribed"

    # After the grace period only the new secret signs.
    with transaction(database.sessions) as session:
        session.execute(update(WebhookEndpoint).values(previous_secret_until=utcnow() - timedelta(seconds=1)))
    emit(database, admin.workspace_id)
    arun(sender.run_once())
    after = receiver.at("/rotating")[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verify(new)["type"] == "contact.unsubscribed"
    with pytest.raises(WebhookVerificationError):
        after.verify(old)
    assert (
        client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=admin.headers).json()["previous_secret_expires_at"] is None
    )


# SSRF -------------------------------------------------------------------------------------------------------


def test_private_targets_are_refused_at_registration(
    settings: Settings, admin: Admin, receiver: Receiver, client: TestClient
) -> None:
    strict = settings.model_copy(update={"webhook_allow_private": False})
    with TestClient(create_app(strict)) as guarded:
        for url, reason in (
            (receiver.url("/"), "127.0.0.1 is loopback"),
            (f"http://localhost:{receiver.port}/", "localhost resolves to 127.0.0.1, which is loopback"),
            ("http://[::1]/hook", "::1 is loopback"),
            ("http://10.1.2.3/hook", "is private"),
            ("http://169.254.169.254/latest/meta-data", "is link-local"),
            ("http://[::ffff:192.168.0.1]/", "is private"),
            ("http://0.0.0.0/", "is unspecified"),
            ("http://224.0.0.1/", "is multicast"),
            ("http://2130706433/", "resolves to 127.0.0.1"),
        ):
            refused = guarded.post(ENDPOINTS, json={"url": url}, headers=admin.headers)
            assert refused.status_code == 400, (url, refused.text)
            assert reason in refused.json()["detail"] and refused.json()["field"] == "url", refused.json()
        for url in ("ftp://example.org/", "javascript:alert(1)", "example.org/hook", "http:///nohost"):
            refused = guarded.post(ENDPOINTS, json={"url": url}, headers=admin.headers)
            assert refused.status_code == 400, (url, refused.text)
            assert refused.json()["detail"].startswith("url")
        assert guarded.get(ENDPOINTS, headers=admin.headers).json()["items"] == []
        # A URL change is checked the same way.
        endpoint = create_endpoint(client, admin, receiver.url("/ok"))
        moved = guarded.patch(f"{ENDPOINTS}/{endpoint['id']}", json={"url": "http://127.0.0.2/"}, headers=admin.headers)
        assert moved.status_code == 400 and "loopback" in moved.json()["detail"]
        # So is a supplier's postback URL written as an address.
        supplier = guarded.post(
            "/admin/v1/suppliers",
            json={"name": "P", "email": "p@example.org", "postback_url": "http://127.0.0.1/pb"},
            headers=admin.headers,
        )
        assert supplier.status_code == 400 and "loopback" in supplier.json()["detail"]


def test_private_targets_are_refused_at_sending_time(
    client: TestClient, admin: Admin, settings: Settings, database: Database, receiver: Receiver, arun: Run[Any]
) -> None:
    # Registered while private targets were allowed (or a name that resolved elsewhere then); sent with them off.
    endpoint = create_endpoint(client, admin, f"http://localhost:{receiver.port}/inside")
    emit(database, admin.workspace_id)
    strict = WebhookSender(settings.model_copy(update={"webhook_allow_private": False}), database)
    assert arun(strict.run_once()) == 1
    arun(strict.close())
    assert receiver.requests == []
    [message] = message_rows(database)
    assert message.status == "queued" and message.last_status_code is None
    assert message.last_error == (
        "url: localhost resolves to 127.0.0.1, which is loopback; only public addresses receive webhooks"
    )
    [attempt] = client.get(f"{ENDPOINTS}/{endpoint['id']}/attempts", headers=admin.headers).json()["items"]
    assert attempt["status_code"] is None and "loopback" in attempt["error"]


# Supplier postbacks -------------------------------------------------------------------------------------------


def test_supplier_postback_is_signed_with_the_suppliers_secret(
    client: TestClient,
    admin: Admin,
    make_survey: MakeSurvey,
    database: Database,
    receiver: Receiver,
    sender: WebhookSender,
    arun: Run[Any],
) -> None:
    supply = Supply(client, admin, make_survey, {"USA": 10})
    patched = client.patch(
        f"/admin/v1/suppliers/{supply.supplier['id']}",
        json={"postback_url": receiver.url("/postback")},
        headers=admin.headers,
    )
    assert patched.status_code == 200 and patched.json()["postback_url"] == receiver.url("/postback")
    entered = supply.enter(supply.link(), "PANEL-9")
    code = entered.headers["location"].rsplit("=", 1)[1]
    assert client.get(f"/survey/end?token={code}&status=complete", follow_redirects=False).status_code == 302

    assert arun(sender.run_once()) == 1  # the final outcome only (no endpoint is registered)
    [postback] = receiver.at("/postback")
    expected = hmac.new(supply.hmac_secret.encode(), postback.body.encode(), hashlib.sha256).hexdigest()
    assert postback.headers["x-invitelink-signature"] == f"sha256={expected}"
    assert re.fullmatch(r"msg_\d+", postback.headers["webhook-id"]) and postback.headers["webhook-timestamp"]
    payload = json.loads(postback.body)
    assert payload["type"] == "participation.completed"
    assert payload["data"]["pid"] == "PANEL-9" and payload["data"]["supplier_id"] == supply.sid
    assert payload["data"]["environment"] == "sandbox" and payload["data"]["status"] == "completed"
    assert "webhook-signature" not in postback.headers
    assert message_rows(database)[0].status == "delivered"


# The admin API ---------------------------------------------------------------------------------------------


def test_another_workspaces_endpoint_is_404_everywhere(
    client: TestClient, admin: Admin, make_admin: MakeAdmin, receiver: Receiver
) -> None:
    endpoint = create_endpoint(client, admin, receiver.url("/mine"))
    mallory = make_admin()
    base = f"{ENDPOINTS}/{endpoint['id']}"
    h = mallory.headers
    attempts = {
        "get": client.get(base, headers=h),
        "patch": client.patch(base, json={"description": "pwned"}, headers=h),
        "delete": client.delete(base, headers=h),
        "rotate": client.post(f"{base}/secret", headers=h),
        "attempts": client.get(f"{base}/attempts", headers=h),
        "messages": client.get(f"{base}/messages", headers=h),
    }
    assert {name: r.status_code for name, r in attempts.items()} == {name: 404 for name in attempts}
    assert attempts["get"].json() == {"detail": "webhook endpoint not found"}
    assert client.get(ENDPOINTS, headers=h).json() == {"items": [], "next_cursor": None}
    assert client.get(base, headers=admin.headers).json()["description"] == ""


def test_crud_validation_and_roles(client: TestClient, admin: Admin, receiver: Receiver) -> None:
    unknown = client.post(
        ENDPOINTS, json={"url": receiver.url("/"), "event_types": ["delivery.sent", "nope"]}, headers=admin.headers
    )
    assert unknown.status_code == 400
    assert unknown.json()["detail"].startswith("event_types: unknown event type 'nope'; known types: delivery.sent")
    empty = client.post(ENDPOINTS, json={"url": receiver.url("/"), "event_types": []}, headers=admin.headers)
    assert empty.status_code == 400 and "omit it" in empty.json()["detail"]
    for body in ({"url": receiver.url("/"), "extra": 1}, {}, {"url": receiver.url("/"), "event_types": "all"}):
        invalid = client.post(ENDPOINTS, json=body, headers=admin.headers)
        assert invalid.status_code == 422 and set(invalid.json()) == {"detail"}, invalid.text
    assert client.post(ENDPOINTS, content=b"{", headers=admin.headers).status_code == 422
    assert client.post(ENDPOINTS, json={"url": "http://x/\x00"}, headers=admin.headers).status_code == 422

    created = create_endpoint(
        client, admin, receiver.url("/a"), event_types=["delivery.sent", "delivery.sent"], description="first"
    )
    assert created["event_types"] == ["delivery.sent"]
    base = f"{ENDPOINTS}/{created['id']}"
    patched = client.patch(
        base, json={"url": receiver.url("/b"), "description": "second", "event_types": None}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["url"] == receiver.url("/b") and patched.json()["event_types"] is None
    assert client.patch(base, json={"description": "third"}, headers=admin.headers).json()["event_types"] is None
    assert client.patch(base, json={"event_types": ["bogus"]}, headers=admin.headers).status_code == 400
    assert client.get(f"{base}/messages?status=bogus", headers=admin.headers).status_code == 422
    assert client.get(f"{base}/attempts?cursor=garbage", headers=admin.headers).status_code == 400
    assert client.get(f"{ENDPOINTS}/999999", headers=admin.headers).status_code == 404
    assert client.get(f"{ENDPOINTS}/99999999999999999999", headers=admin.headers).status_code == 404  # no such id
    assert client.patch(f"{ENDPOINTS}/999999", json={}, headers=admin.headers).status_code == 404

    # Paging: items + next_cursor, like every admin list.
    for i in range(2):
        create_endpoint(client, admin, receiver.url(f"/p{i}"))
    first = client.get(f"{ENDPOINTS}?limit=2", headers=admin.headers).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(f"{ENDPOINTS}?limit=2&cursor={first['next_cursor']}", headers=admin.headers).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None

    # Viewers read; only admins change.
    viewer = join(client, admin.headers, "viewer@example.org", "viewer")
    assert client.get(base, headers=viewer).status_code == 200
    assert client.post(ENDPOINTS, json={"url": receiver.url("/")}, headers=viewer).status_code == 403
    assert client.patch(base, json={"description": "x"}, headers=viewer).status_code == 403
    assert client.post(f"{base}/secret", headers=viewer).status_code == 403
    assert client.delete(base, headers=viewer).status_code == 403
    assert client.post(ENDPOINTS, json={"url": receiver.url("/")}).status_code == 401

    assert client.delete(base, headers=admin.headers).status_code == 204
    assert client.get(base, headers=admin.headers).status_code == 404


def test_deleting_an_endpoint_drops_its_messages(
    client: TestClient, admin: Admin, database: Database, receiver: Receiver, sender: WebhookSender, arun: Run[Any]
) -> None:
    endpoint = create_endpoint(client, admin, receiver.url("/gone"))
    emit(database, admin.workspace_id)
    assert client.delete(f"{ENDPOINTS}/{endpoint['id']}", headers=admin.headers).status_code == 204
    assert message_rows(database) == []
    assert arun(sender.run_once()) == 0


def test_openapi_documents_every_webhook_operation(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "webhooks" in {t["name"] for t in schema["tags"]}
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        if path.startswith(ENDPOINTS)
        for method, op in item.items()
    ]
    assert len(operations) == 8
    for path, method, op in operations:
        assert op["tags"] == ["webhooks"], (path, method)
        assert op.get("summary") and op.get("description"), (path, method)
    assert set(EVENT_TYPES) <= set(
        schema["components"]["schemas"]["EndpointIn"]["properties"]["event_types"]["description"]
        .replace("`", "")
        .replace(",", "")
        .split()
    )


# The worker runs the sender beside the mail loop ---------------------------------------------------------------


def test_the_worker_runs_the_webhook_sender_beside_mail(
    client: TestClient, admin: Admin, settings: Settings, database: Database, receiver: Receiver, arun: Run[Any]
) -> None:
    endpoint = create_endpoint(client, admin, receiver.url("/live"))
    emit(database, admin.workspace_id)
    worker = Worker(settings, database, poll_seconds=0.05)
    worker.webhooks.poll_seconds = 0.05

    async def run_until_received() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        for _ in range(200):
            if receiver.at("/live") and message_rows(database)[0].status == "delivered":
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    arun(run_until_received())
    [request] = receiver.at("/live")
    assert request.verify(endpoint["secret"])["type"] == "contact.unsubscribed"
    assert message_rows(database)[0].status == "delivered"


def test_a_retried_endpoint_create_makes_one_and_replays_no_secret(client: TestClient, admin: Admin) -> None:
    body = {"url": "http://127.0.0.1:9/hooks", "event_types": ["participation.completed"]}
    keyed = {**admin.headers, "Idempotency-Key": "hook-1"}
    first = client.post(ENDPOINTS, json=body, headers=keyed)
    assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")
    again = client.post(ENDPOINTS, json=body, headers=keyed)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == {**first.json(), "secret": None}
    assert len(client.get(ENDPOINTS, headers=admin.headers).json()["items"]) == 1
    changed = client.post(ENDPOINTS, json={**body, "event_types": []}, headers=keyed)
    assert changed.status_code == 422 and "another request" in changed.json()["detail"]
