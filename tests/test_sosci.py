"""The SoSci-style mailing API with SoSci's documented inputs, compared body for body; participant links; callbacks."""

from __future__ import annotations

import asyncio
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, cast
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.models import Contact, Delivery, Participation, Token
from tests.conftest import Admin, MakeAdmin, MakeSurvey


class Sosci:
    """One survey with a mailing and an API URL per function."""

    def __init__(self, client: TestClient, admin: Admin, make_survey: MakeSurvey, **survey: Any) -> None:
        self.client = client
        self.admin = admin
        self.survey = make_survey(admin, status="active", **survey)
        base = f"/admin/v1/surveys/{self.survey['id']}"
        self.mailing = client.post(
            f"{base}/mailings",
            json={"name": "Wave 1", "subject": "Hi", "body": "{{survey_link}}"},
            headers=admin.headers,
        ).json()
        self.urls: dict[str, str] = {}
        for function in ("create_link", "send_mail", "serial_status", "address_status"):
            body = {"function": function}
            if function in ("create_link", "send_mail"):
                body["mailing_id"] = self.mailing["id"]
            created = client.post(f"{base}/api-accesses", json=body, headers=admin.headers)
            assert created.status_code == 201, created.text
            self.urls[function] = created.json()["api_url"]

    def call(self, function: str, method: str = "GET", **params: Any) -> httpx.Response:
        url = self.urls[function].removeprefix("http://testserver")
        response: httpx.Response
        if method == "GET":
            # httpx's params= would replace the ?act= already in the URL: append instead.
            response = self.client.get(f"{url}&{urlencode(params)}" if params else url)
        elif method == "JSON":
            response = self.client.post(url, json=params)
        else:
            response = self.client.post(url, data=params)
        return response


@pytest.fixture
def sosci(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Sosci:
    return Sosci(client, admin, make_survey, project="shop-study", questionnaire_url="https://q.example.org/s?lang=en")


def test_api_url_is_the_sosci_form_and_shown_once(sosci: Sosci, client: TestClient) -> None:
    assert re.fullmatch(r"http://testserver/shop-study/\?act=[A-Za-z0-9_-]{32}", sosci.urls["create_link"])
    listed = client.get(f"/admin/v1/surveys/{sosci.survey['id']}/api-accesses", headers=sosci.admin.headers).json()
    assert len(listed["items"]) == 4
    assert all(
        "api_url" not in a and sosci.urls[a["function"]].split("act=")[1].startswith(a["key_prefix"])
        for a in listed["items"]
    )


def test_create_link_body_matches_the_seed_and_is_idempotent(sosci: Sosci) -> None:
    response = sosci.call("create_link", uid="respondent01")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["result", "token", "url", "error"]
    assert body["result"] == "ok"
    assert body["error"] is None
    assert re.fullmatch(r"[A-Z0-9]{16}", body["token"])
    assert body["url"] == f"http://testserver/shop-study/?d={body['token']}"
    # Retried, by GET, POST form or POST JSON: the same contact and the same link.
    for method in ("GET", "POST", "JSON"):
        assert sosci.call("create_link", method, uid="respondent01").json() == body
    assert sosci.call("create_link", uid="respondent02").json()["token"] != body["token"]


def test_contacts_are_matched_after_normalisation(sosci: Sosci, db: Session) -> None:
    first = sosci.call("create_link", email="Person@Example.com").json()
    assert sosci.call("create_link", email="  person@example.COM ").json()["token"] == first["token"]
    by_mobile = sosci.call("create_link", mobile="+49 170 1234567").json()
    assert sosci.call("create_link", mobile="0049-170-1234567").json()["token"] == by_mobile["token"]
    assert db.scalar(select(func.count()).select_from(Contact)) == 2
    assert set(db.scalars(select(Contact.email))) == {"person@example.com", None}


def test_create_link_errors_match_the_seed(sosci: Sosci, db: Session) -> None:
    missing = sosci.call("create_link")
    assert missing.status_code == 400
    assert missing.json() == {"result": "error", "error": "Request must specify email, mobile, or uid", "url": None}
    for field, value in (("email", "not-an-address"), ("mobile", "12345"), ("uid", "Zoë")):
        response = sosci.call("create_link", **{field: value})
        assert response.status_code == 400, (field, response.text)
        body = response.json()
        assert body["result"] == "error"
        assert body["url"] is None
        assert body["error"].startswith(field)
    assert db.scalar(select(func.count()).select_from(Contact)) == 0


def test_unknown_revoked_and_foreign_keys_are_404(sosci: Sosci, client: TestClient, make_survey: MakeSurvey) -> None:
    unknown = client.get("/shop-study/", params={"act": "nope", "uid": "x"})
    assert unknown.status_code == 404
    assert unknown.json() == {"result": "error", "error": "invalid API key", "url": None}
    other = Sosci(client, sosci.admin, make_survey, project="other-study")
    key = other.urls["create_link"].split("act=")[1]
    assert client.get("/shop-study/", params={"act": key, "uid": "x"}).status_code == 404
    access_id = client.get(f"/admin/v1/surveys/{sosci.survey['id']}/api-accesses", headers=sosci.admin.headers).json()[
        "items"
    ][0]["id"]
    revoked = client.delete(
        f"/admin/v1/surveys/{sosci.survey['id']}/api-accesses/{access_id}", headers=sosci.admin.headers
    )
    assert revoked.status_code == 204
    assert sosci.call("create_link", uid="x").status_code == 404


def test_send_mail_queues_once_and_address_status_reports_it(sosci: Sosci, db: Session, settings: Settings) -> None:
    sent = sosci.call("send_mail", "JSON", email="a@example.com")
    assert sent.status_code == 200
    assert sent.json()["result"] == "ok"
    assert sosci.call("send_mail", "JSON", email="a@example.com").json() == sent.json()
    assert db.scalar(select(func.count()).select_from(Delivery)) == 1
    mid = sosci.mailing["id"]
    status = sosci.call("address_status", email="a@example.com")
    assert status.status_code == 200
    body = status.json()
    assert list(body) == ["result", "serial", "email", "mobile", "uid", "mailings", "error"]
    assert body == {
        "result": "ok",
        "serial": None,
        "email": "a@example.com",
        "mobile": None,
        "uid": None,
        "mailings": {
            f"M{mid}": {
                "id": mid,
                "status": "queued",
                "statusMail": "queued",
                "statusSMS": "none",
                "sendTime": body["mailings"][f"M{mid}"]["sendTime"],
            }
        },
        "error": None,
    }
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", body["mailings"][f"M{mid}"]["sendTime"])

    from invitelink.worker.runner import Worker

    async def send() -> None:
        worker = Worker(settings)
        await worker.run_once()
        await worker.close()

    asyncio.run(send())
    after = sosci.call("address_status", email="a@example.com").json()["mailings"][f"M{mid}"]
    assert (after["status"], after["statusMail"], after["statusSMS"]) == ("sent", "delivered", "none")
    outbox = list((settings.var_dir / "outbox").glob("*.eml"))
    assert len(outbox) == 1
    mail = BytesParser(policy=policy.default).parsebytes(outbox[0].read_bytes())
    assert sent.json()["url"] in cast(EmailMessage, mail.get_body(("plain",))).get_content()


def test_send_mail_to_a_mobile_only_contact_queues_an_sms(sosci: Sosci) -> None:
    assert sosci.call("send_mail", mobile="+12025550123").status_code == 200
    mailing = sosci.call("address_status", mobile="+12025550123").json()["mailings"][f"M{sosci.mailing['id']}"]
    assert (mailing["statusMail"], mailing["statusSMS"]) == ("none", "queued")


def test_address_status_errors_and_matching_all_given(sosci: Sosci) -> None:
    sosci.call("create_link", email="a@example.com", uid="u1")
    linked_only = sosci.call("address_status", email="a@example.com").json()
    assert linked_only["mailings"] == {}  # a link alone is no mailing attempt
    serial = None
    mismatch = sosci.call("address_status", email="a@example.com", uid="someone-else")
    assert mismatch.status_code == 404
    assert mismatch.json() == {
        "result": "error",
        "error": "not found",
        "serial": serial,
        "email": "a@example.com",
        "mobile": None,
        "uid": "someone-else",
    }
    assert sosci.call("address_status", email="a@example.com", uid="u1").status_code == 200
    malformed = sosci.call("address_status", email="not-an-address")
    assert malformed.status_code == 400
    assert malformed.json()["error"].startswith("email")
    assert malformed.json()["email"] == "not-an-address"
    nothing = sosci.call("address_status")
    assert nothing.status_code == 400
    assert nothing.json()["result"] == "error"


def test_serial_status_with_the_seed_example(sosci: Sosci, client: TestClient) -> None:
    missing = sosci.call("serial_status", serial="CD246802")
    assert missing.status_code == 404
    assert missing.json() == {"result": "error", "error": "not found", "code": "CD246802"}
    base = f"/admin/v1/surveys/{sosci.survey['id']}/serial-codes"
    code = client.post(base, json={"count": 1, "notice": "Lot 7"}, headers=sosci.admin.headers).json()[0]["code"]
    fresh = sosci.call("serial_status", serial=code)
    assert fresh.status_code == 200
    assert fresh.json() == {
        "result": "ok",
        "code": code,
        "started": False,
        "completed": False,
        "notice": "Lot 7",
        "error": None,
    }
    link = client.get(f"/shop-study/?s={code}", follow_redirects=False)
    assert link.status_code == 302
    assert link.headers["location"] == f"https://q.example.org/s?lang=en&token={code}"
    callback = {"Authorization": f"Bearer {sosci.survey['callback_secret']}"}
    client.post("/api/v1/participations/events", json={"token": code, "event": "started"}, headers=callback)
    assert sosci.call("serial_status", serial=code).json()["started"] is True
    client.post("/api/v1/participations/events", json={"token": code, "event": "completed"}, headers=callback)
    done = sosci.call("serial_status", serial=code).json()
    assert (done["started"], done["completed"]) == (True, True)


def test_personal_link_counts_clicks_and_redirects(sosci: Sosci, client: TestClient, db: Session) -> None:
    link = sosci.call("create_link", uid="p1").json()
    path = link["url"].removeprefix("http://testserver")
    for _ in range(3):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 302
        assert response.headers["location"] == f"https://q.example.org/s?lang=en&token={link['token']}"
    participation = db.scalar(select(Participation))
    assert participation is not None
    assert participation.click_count == 3
    assert participation.first_click_at is not None
    assert participation.status == "clicked"
    # Without the slash it still works.
    assert client.get(f"/shop-study?d={link['token']}", follow_redirects=True).history[0].status_code == 308


def test_token_placeholder_in_questionnaire_url(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    s = Sosci(client, admin, make_survey, project="ph-study", questionnaire_url="https://q.example.org/{token}/go")
    token = s.call("create_link", uid="p").json()["token"]
    response = client.get(f"/ph-study/?d={token}", follow_redirects=False)
    assert response.headers["location"] == f"https://q.example.org/{token}/go"


def test_unknown_and_closed_links_are_pages_that_leak_nothing(sosci: Sosci, client: TestClient) -> None:
    link = sosci.call("create_link", uid="p1").json()
    unknown = client.get("/shop-study/?d=AAAAAAAAAAAAAAAA")
    assert unknown.status_code == 404
    assert "text/html" in unknown.headers["content-type"]
    assert client.get(f"/other-project/?d={link['token']}").status_code == 404
    client.patch(f"/admin/v1/surveys/{sosci.survey['id']}", json={"status": "closed"}, headers=sosci.admin.headers)
    closed = client.get(f"/shop-study/?d={link['token']}", follow_redirects=False)
    assert closed.status_code == 410
    for response in (unknown, closed):
        assert link["token"] not in response.text
        assert "q.example.org" not in response.text
        assert response.headers["cache-control"] == "no-store"


def test_callback_is_authenticated_idempotent_and_monotonic(
    sosci: Sosci, client: TestClient, make_survey: MakeSurvey
) -> None:
    token = sosci.call("create_link", uid="p1").json()["token"]
    url = "/api/v1/participations/events"
    auth = {"Authorization": f"Bearer {sosci.survey['callback_secret']}"}

    def event(name: str, headers: dict[str, str] = auth, **extra: Any) -> httpx.Response:
        response: httpx.Response = client.post(url, json={"token": token, "event": name, **extra}, headers=headers)
        return response

    assert event("started", headers={"Authorization": "Bearer scb_wrong"}).status_code == 401
    assert event("started", headers={}).status_code == 401
    assert client.post(url, json={"token": "NOPE", "event": "started"}, headers=auth).status_code == 404
    other = Sosci(client, sosci.admin, make_survey, project="second-study")
    foreign = client.post(
        url,
        json={"token": token, "event": "started"},
        headers={"Authorization": f"Bearer {other.survey['callback_secret']}"},
    )
    assert foreign.status_code == 404
    assert foreign.json() == {"ok": False, "error": "unknown token"}
    assert event("finished").status_code == 400
    assert event("started").json() == {"ok": True, "status": "started"}
    assert event("started").json() == {"ok": True, "status": "started"}
    assert event("completed", response={"q1": 4, "q2": "yes"}).json() == {"ok": True, "status": "completed"}
    assert event("started").json() == {"ok": True, "status": "completed"}  # never back
    assert event("terminated").json() == {"ok": True, "status": "completed"}
    results = client.get(f"/admin/v1/surveys/{sosci.survey['id']}/results", headers=sosci.admin.headers).json()
    item = results["items"][0]
    assert (item["token"], item["status"], item["response"]) == (token, "completed", {"q1": 4, "q2": "yes"})
    assert item["started_at"] is not None
    assert item["completed_at"] is not None


def test_end_redirect_records_the_outcome(sosci: Sosci, client: TestClient) -> None:
    token = sosci.call("create_link", uid="p1").json()["token"]
    page = client.get("/survey/end", params={"token": token, "status": "quotafull"})
    assert page.status_code == 200
    assert token not in page.text
    assert client.get("/survey/end", params={"token": token, "status": "complete"}).status_code == 200
    results = client.get(f"/admin/v1/surveys/{sosci.survey['id']}/results", headers=sosci.admin.headers).json()
    assert results["items"][0]["status"] == "quotafull"
    assert client.get("/survey/end", params={"token": "NOPE", "status": "complete"}).status_code == 404
    assert client.get("/survey/end", params={"token": token, "status": "done"}).status_code == 400


def test_contacts_stay_in_their_workspace(client: TestClient, make_admin: MakeAdmin, make_survey: MakeSurvey) -> None:
    alice, bob = make_admin(), make_admin()
    a = Sosci(client, alice, make_survey, project="alice-study")
    b = Sosci(client, bob, make_survey, project="bob-study")
    a.call("send_mail", email="shared@example.com")
    assert b.call("address_status", email="shared@example.com").status_code == 404
    # Bob's own contact with the same address is a different contact, with its own link.
    assert (
        b.call("create_link", email="shared@example.com").json()["token"]
        != a.call("create_link", email="shared@example.com").json()["token"]
    )
    contacts_b = client.get(f"/admin/v1/surveys/{b.survey['id']}/contacts", headers=bob.headers).json()["items"]
    assert len(contacts_b) == 1
    assert client.get(f"/admin/v1/surveys/{a.survey['id']}/contacts", headers=bob.headers).status_code == 404


def test_fifty_simultaneous_identical_calls_on_two_instances_give_one_token(
    sosci: Sosci, settings: Settings, db: Session
) -> None:
    apps = [create_app(settings), create_app(settings)]
    path = sosci.urls["create_link"].removeprefix("http://testserver")

    async def burst() -> list[httpx.Response]:
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") for app in apps
        ]
        try:
            return await asyncio.gather(*(clients[i % 2].get(f"{path}&uid=same-person") for i in range(50)))
        finally:
            for c in clients:
                await c.aclose()

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 50
    assert len({r.json()["token"] for r in responses}) == 1
    assert db.scalar(select(func.count()).select_from(Contact)) == 1
    assert db.scalar(select(func.count()).select_from(Token)) == 1
    for app in apps:
        app.state.database.dispose()
