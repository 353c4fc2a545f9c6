"""Odd input never makes a 500: every family answers each of these with a 4xx in its own format (or, where the
input happens to be acceptable, a success). Seeded with `seed_demo`, the same data `invitelink demo` prints."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from invitelink.config import Settings
from invitelink.db import make_sessionmaker, transaction
from invitelink.services.demo import seed_demo
from tests.conftest import Admin

ODD_VALUES: list[Any] = ["", " ", "a" * 5000, "\x00", "💥", "<script>", "+1", "++49", "uid\x7f", "[]", "1e999"]
ODD_BODIES = [b"", b"[]", b"null", b"\xff\xfe", b'{"a":', b'"str"', b"1", b'{"email": ["x"], "uid": {"a": 1}}']
RAW_QUERY_VALUES = ["%ED%A0%80", "%FF", "%", "%zz", "%00"]
SUPPLY_FIELDS = ["survey_id", "supplier_id", "page", "per_page", "date", "pid", "participant_id", "age", "country"]
SUPPLY_ENDPOINTS = [
    "allocated_survey",
    "get_survey_by_id",
    "survey_by_date",
    "add_participant",
    "view_participants",
    "generate_survey_url",
    "survey_stats_by_id",
    "survey_stats_by_participant",
]


@pytest.fixture
def demo(app: Any, client: TestClient, settings: Settings) -> dict[str, Any]:
    with transaction(make_sessionmaker(app.state.database.engine)) as session:
        return seed_demo(session, settings)


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _never_500(response: Any, what: object) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:200])


def test_sosci_api_and_participant_links(client: TestClient, demo: dict[str, Any]) -> None:
    quiet = TestClient(client.app, raise_server_exceptions=False)
    for function, url in demo["sosci"].items():
        path = _path(url)
        for value in ODD_VALUES:
            for field in ("email", "mobile", "uid", "serial"):
                # Appended to the query: httpx's params= would replace the API URL's own ?act=.
                response = quiet.get(f"{path}&{urlencode({field: value})}")
                _never_500(response, (function, field, value[:10]))
                assert "result" in response.json()
        for raw in RAW_QUERY_VALUES:
            _never_500(quiet.get(f"{path}&uid={raw}"), (function, raw))
        for body in ODD_BODIES:
            for content_type in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
                _never_500(quiet.post(path, content=body, headers={"content-type": content_type}), (function, body))
    project = demo["survey"]["project"]
    # Odd values percent-encoded, and raw escapes that decode to invalid UTF-8 or are no escapes at all.
    for value in [quote(v) for v in ODD_VALUES] + RAW_QUERY_VALUES:
        for field in ("d", "s", "act"):
            _never_500(quiet.get(f"/{project}/?{field}={value}", follow_redirects=False), (field, value[:10]))
        _never_500(quiet.get(f"/survey/end?token={value}&status={value}", follow_redirects=False), value[:10])
        _never_500(quiet.post(f"/unsubscribe?u={value}"), value[:10])


def test_trigger_and_callback(client: TestClient, demo: dict[str, Any]) -> None:
    quiet = TestClient(client.app, raise_server_exceptions=False)
    bearer = {"Authorization": f"Bearer {demo['trigger']['secret']}"}
    variants = [
        json.dumps({field: value}).encode() for field in ("email", "emails", "metadata") for value in ODD_VALUES
    ]
    variants += [
        json.dumps({"email": "a@example.com", field: value}).encode()
        for field in ("send_at", "send_in_seconds", "reminder_days", "name", "subject")
        for value in [*ODD_VALUES, -1, 10**30, 1.5, None, [1], {"a": 1}]
    ]
    for body in ODD_BODIES + variants:
        for content_type in ("application/json", "application/x-www-form-urlencoded"):
            response = quiet.post(
                "/api/invitation-trigger", content=body, headers={**bearer, "content-type": content_type}
            )
            _never_500(response, body[:40])
            assert set(response.json()) >= {"ok"}
    callback = {"Authorization": f"Bearer {demo['survey']['callback_secret']}", "content-type": "application/json"}
    for body in ODD_BODIES + [json.dumps({"token": v, "event": "started"}).encode() for v in ODD_VALUES]:
        _never_500(quiet.post("/api/v1/participations/events", content=body, headers=callback), body[:40])


def test_supplier_api(client: TestClient, demo: dict[str, Any], db: Session) -> None:
    quiet = TestClient(client.app, raise_server_exceptions=False)
    key = {"Authorization": f"Bearer {demo['supplier']['sandbox_key']}"}
    known = {"supplier_id": demo["supplier"]["supplier_id"], "survey_id": demo["supplier"]["survey_id"]}
    for endpoint in SUPPLY_ENDPOINTS:
        path = f"/sandbox/v1/{endpoint}"
        for body in ODD_BODIES:
            _never_500(quiet.post(path, content=body, headers={**key, "content-type": "application/json"}), body)
        for field in SUPPLY_FIELDS:
            for value in [*ODD_VALUES, 5, -5, 1.5, True, None, [1], {"a": 1}, 10**30]:
                response = quiet.post(path, json={**known, field: value}, headers=key)
                _never_500(response, (endpoint, field, str(value)[:10]))
                if response.status_code >= 400:
                    assert response.json()["apiStatus"] == "error"


def test_nul_characters_are_refused_alike_on_both_engines(client: TestClient, demo: dict[str, Any]) -> None:
    """PostgreSQL cannot store a NUL in text or JSONB and SQLite can: the shared readers refuse it first, so both
    engines answer 400 in the family's format, before anything is written."""
    create_link = _path(demo["sosci"]["create_link"])
    sosci = client.get(f"{create_link}&uid=a%00b")
    assert sosci.status_code == 400
    assert sosci.json() == {
        "result": "error",
        "error": "uid: text must not contain NUL characters (\\u0000)",
        "url": None,
    }
    posted = client.post(create_link, json={"email": "a\u0000@example.com"})
    assert posted.status_code == 400 and "NUL" in posted.json()["error"]
    # A participant's browser with a mangled link gets the not-found page, not the API's JSON.
    for mangled in ("d=A%00B", "s=" + "X" * 2000):
        page = client.get(f"/{demo['survey']['project']}/?{mangled}", follow_redirects=False)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")

    bearer = {"Authorization": f"Bearer {demo['trigger']['secret']}"}
    trigger = client.post(
        "/api/invitation-trigger", json={"email": "a@example.com", "metadata": {"k": ["x\u0000"]}}, headers=bearer
    )
    assert trigger.status_code == 400 and trigger.json() == {
        "ok": False,
        "error": "metadata: text must not contain NUL characters (\\u0000)",
    }

    key = {"Authorization": f"Bearer {demo['supplier']['sandbox_key']}"}
    supply = client.post("/sandbox/v1/get_survey_by_id", json={"survey_id": "PROJ-\u0000"}, headers=key)
    assert supply.status_code == 400 and supply.json()["apiStatus"] == "error" and "NUL" in supply.json()["msg"]

    # Bodies read by pydantic models refuse them in the model: 400 for the callback, 422 in the admin API.
    callback = {"Authorization": f"Bearer {demo['survey']['callback_secret']}"}
    event = client.post(
        "/api/v1/participations/events", json={"token": "A\u0000", "event": "started"}, headers=callback
    )
    assert event.status_code == 400 and event.json()["ok"] is False and "NUL" in event.json()["error"]
    admin = {"Authorization": f"Bearer {demo['admin']['token']}"}
    industry = client.post("/admin/v1/industries", json={"name": "a\u0000b"}, headers=admin)
    assert industry.status_code == 422 and "NUL" in json.dumps(industry.json())
    survey = client.patch(f"/admin/v1/surveys/{demo['survey']['id']}", json={"title": "x\u0000"}, headers=admin)
    assert survey.status_code == 422
    assert client.get(f"/admin/v1/surveys/{demo['survey']['id']}", headers=admin).json()["title"] != "x\u0000"


def test_ids_beyond_64_bits_are_refused_not_a_500(client: TestClient, admin: Admin) -> None:
    """SQLite's driver raises a bare OverflowError for such an integer; it is the request's fault on both engines."""
    huge = 2**70
    for path in (f"/admin/v1/surveys/{huge}", f"/admin/v1/suppliers/{huge}", f"/admin/v1/surveys/{huge}/funnel"):
        response = client.get(path, headers=admin.headers)
        assert response.status_code in (400, 404, 422), (path, response.status_code, response.text)
        assert "detail" in response.json()
