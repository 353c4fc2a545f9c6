"""Idempotency-Key: a retried create gets the first answer again (Idempotent-Replayed: true) and creates nothing;
the same key with another request is 422; keys are per credential; secrets are never replayed; a replay is
answered before the cooldown is counted."""

from __future__ import annotations

from typing import Any, cast

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from invitelink.models import Mailing, Survey
from tests.conftest import Admin, MakeAdmin, MakeSurvey

TRIGGER = "/api/invitation-trigger"


def count(db: Session, model: Any) -> int:
    db.rollback()  # a fresh snapshot
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_a_retried_trigger_call_queues_one_batch(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, db: Session
) -> None:
    survey = make_survey(admin, status="active")
    token = client.post(
        f"/admin/v1/surveys/{survey['id']}/trigger-tokens",
        json={"name": "CRM", "cooldown_seconds": 60},
        headers=admin.headers,
    ).json()
    auth = {"Authorization": f"Bearer {token['secret']}"}
    body = {"emails": ["a@example.org", "b@example.org"], "metadata": {"order": 17}}
    first = client.post(TRIGGER, json=body, headers={**auth, "Idempotency-Key": "order-17"})
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    # The retry comes within the token's 60 s cooldown: a replay is not a new call, so it is not refused.
    again = client.post(TRIGGER, json=body, headers={**auth, "Idempotency-Key": "order-17"})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert count(db, Mailing) == 1
    other = client.post(TRIGGER, json={"email": "c@example.org"}, headers={**auth, "Idempotency-Key": "order-17"})
    assert other.status_code == 422 and other.json()["ok"] is False
    assert "another request" in other.json()["error"]
    # Without a key, the cooldown applies as ever.
    assert client.post(TRIGGER, json={"email": "d@example.org"}, headers=auth).status_code == 429
    assert count(db, Mailing) == 1


def test_a_retried_admin_create_creates_one_and_replays_no_secret(
    client: TestClient, admin: Admin, make_admin: MakeAdmin, db: Session
) -> None:
    body = {"title": "Panel wave", "questionnaire_url": "https://q.example.org/s"}
    keyed = {**admin.headers, "Idempotency-Key": "2f1c8a"}
    first = client.post("/admin/v1/surveys", json=body, headers=keyed)
    assert first.status_code == 201 and first.json()["callback_secret"]
    again = client.post("/admin/v1/surveys", json=body, headers=keyed)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["callback_secret"] is None  # shown once, never stored for replay
    assert {k: v for k, v in again.json().items() if k != "callback_secret"} == {
        k: v for k, v in first.json().items() if k != "callback_secret"
    }
    assert count(db, Survey) == 1
    changed = client.post("/admin/v1/surveys", json={**body, "title": "Other"}, headers=keyed)
    assert changed.status_code == 422 and "another request" in changed.json()["detail"]
    # Another credential with the same key makes its own.
    other = make_admin()
    theirs = client.post("/admin/v1/surveys", json=body, headers={**other.headers, "Idempotency-Key": "2f1c8a"})
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    assert count(db, Survey) == 2
    # A failed create stores nothing: fixed and retried with the same key, it is made.
    bad = client.post("/admin/v1/surveys", json={"title": "x"}, headers={**admin.headers, "Idempotency-Key": "k2"})
    assert bad.status_code == 422
    good = client.post(
        "/admin/v1/surveys", json=body | {"title": "x"}, headers={**admin.headers, "Idempotency-Key": "k2"}
    )
    assert good.status_code == 201 and "idempotent-replayed" not in good.headers


def test_a_replayed_token_create_carries_no_secret(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    path = f"/admin/v1/surveys/{survey['id']}/trigger-tokens"
    headers = {**admin.headers, "Idempotency-Key": "tok-1"}
    first = client.post(path, json={"name": "CRM"}, headers=headers)
    again = client.post(path, json={"name": "CRM"}, headers=headers)
    assert first.json()["secret"].startswith("sit_")
    assert again.json()["secret"] is None and again.json()["id"] == first.json()["id"]
    assert len(client.get(path, headers=admin.headers).json()["items"]) == 1


def test_an_unusable_key_is_422(client: TestClient, admin: Admin) -> None:
    body = {"title": "T", "questionnaire_url": "https://q.example.org/s"}
    response = client.post("/admin/v1/surveys", json=body, headers={**admin.headers, "Idempotency-Key": "k" * 300})
    assert response.status_code == 422 and "Idempotency-Key" in response.json()["detail"]


def test_a_retried_add_participant_is_answered_again(client: TestClient, admin: Admin) -> None:
    from invitelink.services.demo import seed_demo

    app = cast(FastAPI, client.app)
    demo = app.state.database.write_blocking(seed_demo, app.state.settings)
    supplier = demo["supplier"]
    headers = {"Authorization": f"Bearer {supplier['sandbox_key']}", "Idempotency-Key": "pid-7"}
    body = {"supplier_id": supplier["supplier_id"], "pid": "P-7", "country": "USA", "age": "34"}
    first = client.post("/sandbox/v1/add_participant", json=body, headers=headers)
    again = client.post("/sandbox/v1/add_participant", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    changed = client.post("/sandbox/v1/add_participant", json={**body, "age": "35"}, headers=headers)
    assert changed.status_code == 422 and changed.json()["apiStatus"] == "error"
