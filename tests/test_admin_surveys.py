"""Surveys: create, validate, status transitions, pagination, secrets shown once."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.models import Survey
from invitelink.security import digest
from tests.conftest import Admin, MakeSurvey


def test_create_survey_returns_secret_once_and_stores_its_digest(client: TestClient, admin: Admin, db: Session) -> None:
    response = client.post(
        "/admin/v1/surveys",
        json={
            "title": "Kundenzufriedenheit Ü",
            "questionnaire_url": "https://q.example.org/s",
            "cpi": {"value": "6.50", "currency": "EUR"},
            "ir": 40,
            "loi": 12,
            "segment": "B2B",
            "countries": ["USA", "UK"],
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "draft"
    assert body["project"].startswith("kundenzufriedenheit-u-")
    assert body["public_id"].startswith("PROJ-") and len(body["public_id"]) == 13
    assert body["cpi"] == {"value": "6.50", "currency": "EUR"}
    secret = body["callback_secret"]
    assert secret.startswith("scb_")
    stored = db.scalar(select(Survey).where(Survey.id == body["id"]))
    assert stored is not None and stored.callback_secret_digest == digest(secret)
    again = client.get(f"/admin/v1/surveys/{body['id']}", headers=admin.headers).json()
    assert "callback_secret" not in again
    rotated = client.post(f"/admin/v1/surveys/{body['id']}/callback-secret", headers=admin.headers).json()
    assert rotated["callback_secret"] != secret


def test_status_transitions(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    url = f"/admin/v1/surveys/{survey['id']}"

    def move(status: str) -> int:
        status_code: int = client.patch(url, json={"status": status}, headers=admin.headers).status_code
        return status_code

    assert move("closed") == 409  # draft cannot close directly
    assert move("active") == 200
    assert move("draft") == 409  # no way back to draft
    assert move("closed") == 200
    assert move("active") == 200  # reopen
    assert client.get(url, headers=admin.headers).json()["status"] == "active"


def test_project_slug_rules(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    make_survey(admin, project="shop-feedback")
    base = {"title": "t", "questionnaire_url": "https://q.example.org"}
    taken = client.post("/admin/v1/surveys", json={**base, "project": "shop-feedback"}, headers=admin.headers)
    assert taken.status_code == 409 and taken.json()["field"] == "project"
    reserved = client.post("/admin/v1/surveys", json={**base, "project": "admin"}, headers=admin.headers)
    assert reserved.status_code == 400 and "reserved" in reserved.json()["detail"]
    bad = client.post("/admin/v1/surveys", json={**base, "project": "Has Space"}, headers=admin.headers)
    assert bad.status_code == 400 and bad.json()["field"] == "project"
    assert len(client.get("/admin/v1/surveys", headers=admin.headers).json()["items"]) == 1


def test_bad_input_is_4xx_with_a_message(client: TestClient, admin: Admin) -> None:
    cases = [
        {"title": "t", "questionnaire_url": "https://q.example.org", "colour": "red"},  # unknown field
        {"title": "t" * 201, "questionnaire_url": "https://q.example.org"},  # oversize string
        {"title": 5, "questionnaire_url": "https://q.example.org"},  # wrong type
        {"title": "t", "questionnaire_url": "not a url"},
        {"title": "t", "questionnaire_url": "https://q.example.org", "ir": 101},
        {"title": "t", "questionnaire_url": "https://q.example.org", "status": "archived"},
    ]
    for body in cases:
        response = client.post("/admin/v1/surveys", json=body, headers=admin.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"], body
    garbage = client.post(
        "/admin/v1/surveys",
        content=b"{not json",
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert garbage.status_code == 422
    assert client.get("/admin/v1/surveys", headers=admin.headers).json()["items"] == []


def test_cursor_pagination_walks_every_survey_once(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    created = [make_survey(admin, title=f"S{i}")["id"] for i in range(5)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/admin/v1/surveys", params=params, headers=admin.headers).json()
        seen += [s["id"] for s in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created
    assert pages == 3
    bad = client.get("/admin/v1/surveys", params={"cursor": "%%%"}, headers=admin.headers)
    assert bad.status_code == 400 and bad.json()["field"] == "cursor"
    assert client.get("/admin/v1/surveys", params={"limit": 1000}, headers=admin.headers).status_code == 422


def test_delete_survey_needs_admin_and_removes_it(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    client.post(f"/admin/v1/surveys/{survey['id']}/contacts", json={"email": "a@example.org"}, headers=admin.headers)
    assert client.delete(f"/admin/v1/surveys/{survey['id']}", headers=admin.headers).status_code == 204
    assert client.get(f"/admin/v1/surveys/{survey['id']}", headers=admin.headers).status_code == 404


def test_results_endpoint_has_the_pinned_shape(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    response = client.get(f"/admin/v1/surveys/{survey['id']}/results", headers=admin.headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


def test_mailings_crud(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    base = f"/admin/v1/surveys/{survey['id']}/mailings"
    created = client.post(
        base,
        json={"name": "Wave 1", "subject": "Hi", "body": "{{survey_link}}", "reminder_days": 3},
        headers=admin.headers,
    )
    assert created.status_code == 201
    mailing = created.json()
    assert mailing["code"] == f"M{mailing['id']}" and mailing["kind"] == "serial"
    patched = client.patch(f"{base}/{mailing['id']}", json={"subject": "Hello"}, headers=admin.headers).json()
    assert patched["subject"] == "Hello" and patched["reminder_days"] == 3
    assert client.post(base, json={"channel": "fax"}, headers=admin.headers).status_code == 422
    assert client.delete(f"{base}/{mailing['id']}", headers=admin.headers).status_code == 204
    assert client.get(base, headers=admin.headers).json()["items"] == []


def test_industries_are_unique_per_workspace(client: TestClient, admin: Admin) -> None:
    assert client.post("/admin/v1/industries", json={"name": "Retail"}, headers=admin.headers).status_code == 201
    dup = client.post("/admin/v1/industries", json={"name": "Retail"}, headers=admin.headers)
    assert dup.status_code == 409
    assert [i["name"] for i in client.get("/admin/v1/industries", headers=admin.headers).json()["items"]] == ["Retail"]
