"""The admin action that sends a serial mailing to all contacts of a survey, or to one subgroup."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from typing import cast

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.config import Settings
from invitelink.models import Contact, Delivery
from invitelink.worker.runner import Worker
from tests.conftest import Admin, MakeAdmin, MakeSurvey
from tests.smtp_server import SmtpSink

CONTACTS = [
    {"email": "ann@example.org", "name": "Ann", "subgroup": "a"},
    {"email": "bob@example.org", "name": "Bob", "subgroup": "b"},
    {"mobile": "+12025550123", "subgroup": "a"},
    {"uid": "no-address", "subgroup": "a"},
]


def test_send_to_all_and_to_a_subgroup_is_idempotent(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, db: Session, settings: Settings
) -> None:
    survey = make_survey(admin, status="active")
    base = f"/admin/v1/surveys/{survey['id']}"
    imported = client.post(f"{base}/contacts/import", json=CONTACTS, headers=admin.headers)
    assert imported.status_code == 200, imported.text
    mailing = client.post(
        f"{base}/mailings", json={"name": "Wave 1", "subject": "Hi {{recipient_name}}"}, headers=admin.headers
    ).json()
    send = f"{base}/mailings/{mailing['id']}/send"

    first = client.post(send, json={"subgroup": "a"}, headers=admin.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"queued": 2, "already_queued": 0, "unreachable": 1}
    everyone = client.post(send, json={}, headers=admin.headers).json()
    assert everyone == {"queued": 1, "already_queued": 2, "unreachable": 1}
    assert client.post(send, json={}, headers=admin.headers).json()["queued"] == 0

    rows = db.execute(select(Contact.email, Contact.mobile, Delivery.channel).join(Delivery)).all()
    channels = {(r.email or r.mobile): r.channel for r in rows}
    assert channels == {"ann@example.org": "email", "bob@example.org": "email", "+12025550123": "sms"}

    with SmtpSink() as sink:
        smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_starttls": False})
        worker = Worker(smtp, cast(FastAPI, client.app).state.database)
        assert asyncio.run(worker.run_once()) == 3
        assert sorted(m["To"] for m in sink.messages) == ["Ann <ann@example.org>", "Bob <bob@example.org>"]
        body = cast(EmailMessage, sink.messages[0].get_body(("plain",))).get_content()
        assert f"http://testserver/{survey['project']}/?d=" in body
    (sms,) = (settings.var_dir / "outbox").glob("*.sms.json")
    message = json.loads(sms.read_text())
    assert message["to"] == "+12025550123" and f"/{survey['project']}/?d=" in message["body"]


def test_send_errors(client: TestClient, admin: Admin, make_survey: MakeSurvey, make_admin: MakeAdmin) -> None:
    survey = make_survey(admin)
    base = f"/admin/v1/surveys/{survey['id']}"
    mailing = client.post(f"{base}/mailings", json={"name": "W"}, headers=admin.headers).json()
    assert client.post(f"{base}/mailings/999999/send", json={}, headers=admin.headers).status_code == 404
    other = make_admin()
    assert client.post(f"{base}/mailings/{mailing['id']}/send", json={}, headers=other.headers).status_code == 404
    bad = client.post(f"{base}/mailings/{mailing['id']}/send", json={"subgroup": "x" * 65}, headers=admin.headers)
    assert bad.status_code == 422 and "subgroup" in bad.text
