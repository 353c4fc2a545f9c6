"""Lifecycle events and what admins see of them: the event log and timelines, deliveries, the funnel, results with
the contact's identity and as CSV, the suppression list, requeue of failures, and bounces (RFC 3464 DSNs)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from invitelink.config import Settings
from invitelink.db import Database
from invitelink.worker.runner import Worker
from tests.conftest import Admin, MakeAdmin, MakeSurvey
from tests.smtp_server import SmtpSink
from tests.test_worker import smtp_settings

BOUNCE_SECRET = "bounce-pipe-secret"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def settings(settings: Settings, sink: SmtpSink) -> Settings:
    return smtp_settings(settings, sink).model_copy(update={"bounce_secret": BOUNCE_SECRET})


class Study:
    """An active survey with a trigger token, and helpers to drive it as its users do."""

    def __init__(self, app: FastAPI, client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
        self.app, self.client, self.admin = app, client, admin
        self.survey = make_survey(admin, status="active")
        self.sid = self.survey["id"]
        token = client.post(f"/admin/v1/surveys/{self.sid}/trigger-tokens", json={"name": "CRM"}, headers=admin.headers)
        assert token.status_code == 201, token.text
        self.trigger_auth = {"Authorization": f"Bearer {token.json()['secret']}"}

    def invite(self, *emails: str, metadata: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"emails": list(emails)}
        if metadata is not None:
            body["metadata"] = metadata
        response = self.client.post("/api/invitation-trigger", json=body, headers=self.trigger_auth)
        assert response.status_code == 200, response.text

    def send(self) -> int:
        database: Database = self.app.state.database
        settings: Settings = self.app.state.settings

        async def once() -> int:
            worker = Worker(settings, database)
            try:
                return await worker.run_once()
            finally:
                await worker.close()

        return asyncio.run(once())

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(f"/admin/v1/surveys/{self.sid}{path}", headers=self.admin.headers, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def callback(self, token: str, event: str) -> None:
        response = self.client.post(
            "/api/v1/participations/events",
            json={"token": token, "event": event, "response": {"q1": 4}},
            headers={"Authorization": f"Bearer {self.survey['callback_secret']}"},
        )
        assert response.status_code == 200, response.text

    def event_types(self, **params: Any) -> list[str]:
        return [e["type"] for e in self.get("/events", params=params)["items"]]


@pytest.fixture
def study(app: FastAPI, client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Study:
    return Study(app, client, admin, make_survey)


def link_token(message: EmailMessage) -> str:
    body = cast(EmailMessage, message.get_body(("plain",))).get_content()
    url = next(word for word in body.split() if "?d=" in word)
    token: str = parse_qs(urlsplit(url).query)["d"][0]
    return token


def test_one_recipient_leaves_one_event_per_change(study: Study, sink: SmtpSink) -> None:
    study.invite("pat@example.com", metadata={"source_id": "evt_1"})
    assert study.send() == 1
    token = link_token(sink.messages[0])
    opened = study.client.get(f"/{study.survey['project']}/?d={token}", follow_redirects=False)
    assert opened.status_code == 302
    study.client.get(f"/{study.survey['project']}/?d={token}", follow_redirects=False)  # a second click: no event
    study.callback(token, "started")
    study.callback(token, "completed")
    study.callback(token, "completed")  # a repeat: no event
    study.callback(token, "terminated")  # a contradiction of a final status: no event
    assert study.event_types() == [
        "delivery.sent",
        "participation.clicked",
        "participation.started",
        "participation.completed",
    ]
    log = study.get("/events")["items"]
    completed = log[-1]["payload"]
    assert completed["type"] == "participation.completed" and completed["timestamp"].endswith("Z")
    data = completed["data"]
    assert data["survey_id"] == study.sid and data["token"] == token and data["status"] == "completed"
    assert data["contact"]["email"] == "pat@example.com" and data["metadata"] == {"source_id": "evt_1"}
    sent = log[0]["payload"]["data"]
    assert sent["status"] == "sent" and sent["message_id"] == sink.messages[0]["Message-ID"]
    # The contact's timeline is the same four events; the type filter narrows the log.
    contact_id = data["contact"]["id"]
    assert [e["type"] for e in study.get(f"/contacts/{contact_id}/events")["items"]] == study.event_types()
    assert study.event_types(type="participation.started") == ["participation.started"]


def test_deliveries_funnel_and_results_with_identity(study: Study, sink: SmtpSink) -> None:
    study.invite("a@example.com", "b@example.com", "c@example.com")
    sink.handler.refuse["c@example.com"] = "550 5.1.1 no such user"
    assert study.send() == 3
    tokens = {m["To"]: link_token(m) for m in sink.messages}
    token_a = next(t for to, t in tokens.items() if "a@example.com" in to)
    study.client.get(f"/{study.survey['project']}/?d={token_a}", follow_redirects=False)
    study.callback(token_a, "completed")

    failed = study.get("/deliveries", params={"status": "failed"})["items"]
    assert [d["email"] for d in failed] == ["c@example.com"]
    assert failed[0]["attempts"] == 1 and "550" in failed[0]["last_error"]
    everything = study.get("/deliveries", params={"limit": 2})
    assert len(everything["items"]) == 2 and everything["next_cursor"]
    rest = study.get("/deliveries", params={"limit": 2, "cursor": everything["next_cursor"]})
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None

    funnel = study.get("/funnel")
    assert funnel == {
        "queued": 0, "sent": 2, "failed": 1, "bounced": 0, "skipped": 0,
        "clicked": 1, "started": 1, "completed": 1, "terminated": 0, "quotafull": 0, "security": 0,
    }  # fmt: skip

    results = study.get("/results")["items"]
    assert [(r["token"], r["status"], r["contact"]["email"]) for r in results] == [
        (token_a, "completed", "a@example.com")
    ]

    exported = study.client.get(
        f"/admin/v1/surveys/{study.sid}/results", headers={**study.admin.headers, "Accept": "text/csv"}
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 1
    assert {"token", "status", "completed_at", "email", "uid"} <= set(rows[0])
    assert rows[0]["token"] == token_a and rows[0]["email"] == "a@example.com" and rows[0]["completed_at"]
    assert rows[0]["response"] == '{"q1":4}'

    # Requeue: the failed delivery goes back to the queue and, the server now accepting, is sent.
    del sink.handler.refuse["c@example.com"]
    requeue = study.client.post(f"/admin/v1/surveys/{study.sid}/deliveries/requeue", headers=study.admin.headers)
    assert requeue.status_code == 200 and requeue.json() == {"requeued": 1}
    assert study.send() == 1
    assert study.get("/funnel")["failed"] == 0 and study.get("/funnel")["sent"] == 3


def test_results_csv_streams_every_row_in_batches(study: Study) -> None:
    from invitelink.services import results

    serials = study.client.post(
        f"/admin/v1/surveys/{study.sid}/serial-codes", json={"count": 30}, headers=study.admin.headers
    )
    assert serials.status_code == 201
    for item in serials.json():
        study.callback(item["code"], "completed")
    original = results.CSV_BATCH
    results.CSV_BATCH = 7  # several batches, and a last one that is not full
    try:
        exported = study.client.get(
            f"/admin/v1/surveys/{study.sid}/results", headers={**study.admin.headers, "Accept": "text/csv"}
        )
    finally:
        results.CSV_BATCH = original
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["token"] for r in rows) == sorted(item["code"] for item in serials.json())
    assert all(r["email"] == "" for r in rows)  # serial codes carry no identity


def test_suppression_list_and_tenancy(client: TestClient, admin: Admin, make_admin: MakeAdmin) -> None:
    added = client.post("/admin/v1/suppressions", json={"address": " Pat@Example.com "}, headers=admin.headers)
    assert added.status_code == 201 and added.json()["address"] == "pat@example.com"
    again = client.post("/admin/v1/suppressions", json={"address": "pat@example.com"}, headers=admin.headers)
    assert again.status_code == 200 and again.json()["id"] == added.json()["id"]
    bad = client.post("/admin/v1/suppressions", json={"address": "not-an-address"}, headers=admin.headers)
    assert bad.status_code == 400 and "email" in bad.json()["detail"]
    listed = client.get("/admin/v1/suppressions", headers=admin.headers).json()["items"]
    assert [s["address"] for s in listed] == ["pat@example.com"]
    other = make_admin()
    assert client.get("/admin/v1/suppressions", headers=other.headers).json()["items"] == []
    sid = added.json()["id"]
    assert client.delete(f"/admin/v1/suppressions/{sid}", headers=other.headers).status_code == 404
    assert client.delete(f"/admin/v1/suppressions/{sid}", headers=admin.headers).status_code == 204
    assert client.get("/admin/v1/suppressions", headers=admin.headers).json()["items"] == []


def test_admin_views_of_another_workspace_are_404(study: Study, client: TestClient, make_admin: MakeAdmin) -> None:
    other = make_admin()
    for path in ("/deliveries", "/funnel", "/events", "/results"):
        response = client.get(f"/admin/v1/surveys/{study.sid}{path}", headers=other.headers)
        assert response.status_code == 404, path
    requeue = client.post(f"/admin/v1/surveys/{study.sid}/deliveries/requeue", headers=other.headers)
    assert requeue.status_code == 404


# Bounces ---------------------------------------------------------------------------------------------------


def postfix_dsn(message_id: str, recipient: str, status: str = "5.1.1") -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: lab@example.org
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="8C0A0C2A.1701"

--8C0A0C2A.1701
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.
I'm sorry to have to inform you that your message could not be delivered.

--8C0A0C2A.1701
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
X-Postfix-Queue-ID: 8C0A0C2A
Arrival-Date: Mon, 30 Nov 2026 10:00:00 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown

--8C0A0C2A.1701
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Lab <lab@example.org>
To: {recipient}
Subject: Invitation
Message-ID: {message_id}

--8C0A0C2A.1701--
""".encode()


def exim_dsn(message_id: str, recipient: str) -> bytes:
    return f"""From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: lab@example.org
Subject: Mail delivery failed: returning message to sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=1701349200-eximdsn-1804289383

--1701349200-eximdsn-1804289383
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    host mail.example.com [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    550 5.1.1 User unknown

--1701349200-eximdsn-1804289383
Content-type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Action: failed
Final-Recipient: rfc822;{recipient}
Status: 5.0.0
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--1701349200-eximdsn-1804289383
Content-type: message/rfc822

Return-path: <lab@example.org>
From: Lab <lab@example.org>
To: {recipient}
Subject: Invitation
Message-ID: {message_id}
Content-Type: text/plain

Hello, here is your link.

--1701349200-eximdsn-1804289383--
""".encode()


def gmail_style_bounce(message_id: str, recipient: str) -> bytes:
    """Not a multipart/report: the status code and the original headers are only in the text."""
    return f"""From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: lab@example.org
Subject: Delivery Status Notification (Failure)
X-Failed-Recipients: {recipient}
MIME-Version: 1.0
Content-Type: text/plain; charset="UTF-8"

Address not found

Your message wasn't delivered to {recipient} because the address couldn't be found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.

----- Original message -----

From: Lab <lab@example.org>
To: {recipient}
Subject: Invitation
Message-ID: {message_id}
""".encode()


def post_bounce(client: TestClient, body: bytes, secret: str | None = BOUNCE_SECRET) -> Any:
    headers = {"Content-Type": "message/rfc822"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return client.post("/api/v1/bounces", content=body, headers=headers)


@pytest.mark.parametrize("shape", [postfix_dsn, exim_dsn, gmail_style_bounce])
def test_a_dsn_marks_the_delivery_bounced_and_suppresses_the_address(study: Study, sink: SmtpSink, shape: Any) -> None:
    study.invite("gone@example.com", "here@example.com")
    assert study.send() == 2
    message = next(m for m in sink.messages if "gone@" in m["To"])
    response = post_bounce(study.client, shape(message["Message-ID"], "gone@example.com"))
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "bounced" and response.json()["permanent"] is True
    assert response.json()["suppressed"] is True
    bounced = study.get("/deliveries", params={"status": "bounced"})["items"]
    assert [d["email"] for d in bounced] == ["gone@example.com"] and "5." in bounced[0]["last_error"]
    suppressed = study.client.get("/admin/v1/suppressions", headers=study.admin.headers).json()["items"]
    assert [s["address"] for s in suppressed] == ["gone@example.com"]
    assert study.event_types(type="delivery.bounced") == ["delivery.bounced"]
    # The same notification again changes nothing and records nothing.
    assert post_bounce(study.client, shape(message["Message-ID"], "gone@example.com")).status_code == 202
    assert study.event_types(type="delivery.bounced") == ["delivery.bounced"]
    assert study.get("/funnel")["bounced"] == 1 and study.get("/funnel")["sent"] == 1


def test_bounce_errors(study: Study, sink: SmtpSink) -> None:
    study.invite("x@example.com")
    study.send()
    message_id = sink.messages[0]["Message-ID"]
    assert post_bounce(study.client, postfix_dsn(message_id, "x@example.com"), secret=None).status_code == 401
    assert post_bounce(study.client, postfix_dsn(message_id, "x@example.com"), secret="wrong").status_code == 401
    not_dsn = post_bounce(study.client, b"Subject: hello\n\njust a mail")
    assert not_dsn.status_code == 400 and not_dsn.json()["ok"] is False
    unknown = post_bounce(study.client, postfix_dsn("<il.99999.0.nothing@elsewhere>", "x@example.com"))
    assert unknown.status_code == 404 and "Message-ID" in unknown.json()["error"]
    delayed = postfix_dsn(message_id, "x@example.com", "4.4.1").replace(b"Action: failed", b"Action: delayed")
    ignored = post_bounce(study.client, delayed)
    assert ignored.status_code == 202 and ignored.json()["status"] == "ignored"
    # A temporary failure that the MTA gave up on marks the delivery bounced, but does not suppress the address.
    transient = post_bounce(study.client, postfix_dsn(message_id, "x@example.com", "4.2.2"))
    assert transient.status_code == 202 and transient.json()["permanent"] is False
    assert transient.json()["suppressed"] is False
    assert study.get("/deliveries", params={"status": "bounced"})["items"][0]["email"] == "x@example.com"


def test_bounces_answer_401_when_no_secret_is_configured(app: FastAPI, client: TestClient) -> None:
    cast(Any, app.state).settings = app.state.settings.model_copy(update={"bounce_secret": None})
    assert post_bounce(client, postfix_dsn("<a@b>", "x@example.com")).status_code == 401
