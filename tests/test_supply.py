"""The supplier API (R4I-style): every endpoint's whole body against R4I's documented shapes, every error status, signed
links and redirects, per-country limits under concurrency, stats from participations, sandbox kept apart."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.models import Participation, utcnow
from invitelink.services.supplier_redirects import verify_redirect
from tests.conftest import Admin, MakeAdmin, MakeSurvey

SUCCESS_KEYS = {"status", "message", "data"}
SURVEY_KEYS = {
    "survey_id",
    "name",
    "industry",
    "segment",
    "CPI",
    "survey_limit",
    "IR",
    "LOI",
    "PII",
    "status",
    "country",
    "description",
}
BY_DATE_KEYS = (SURVEY_KEYS - {"country"}) | {"country", "date"}
STATS_KEYS = {
    "isVerified",
    "clicks",
    "surveyStarts",
    "completes",
    "fails",
    "overQuota",
    "qualityTerms",
    "preSurveyTerminates",
    "preSurveyOverQuota",
    "preSurveyQualityTermination",
    "averageLOI",
    "revenue",
    "Conversion",
}
ROW_KEYS = {
    "participant_id",
    "project",
    "status",
    "token",
    "cpi",
    "ip",
    "start_time",
    "end_time",
    "click_at",
    "verified",
}
PARTICIPANT_KEYS = {
    "pid",
    "participant_name",
    "email",
    "phone",
    "country",
    "zipcode",
    "ethnicity",
    "device",
    "age",
    "gender",
    "qualification",
    "employment_status",
    "income_range",
}
SEED_PARTICIPANT = {
    "pid": "MY-6jh7gh7gh",
    "participant_name": "Edward Patrick",
    "email": "",
    "phone": "",
    "age": 28,
    "country": "USA",
    "zipcode": "236789",
    "gender": "Male",
    "device": "Mobile",
    "ethnicity": "Asian",
    "qualification": "Graduation",
    "employment_status": "Private Job",
    "income_range": "500-1200",
}
PANEL = "https://partner.example/survey/index"
QUESTIONS = [
    {"key": "AGE_RANGE", "text": "What is your age range?", "type": "Numeric Range", "category": "Demographic",
     "options": ["23 - 35"]},
    {"key": "DEVICE_TYPE", "text": "Which device(s) do you use most frequently?", "type": "Multiple Choice",
     "category": "Technology", "options": ["Mobile", "Desktop", "Tablet"]},
]  # fmt: skip


class Supply:
    """A workspace with an active survey allocated to a supplier that has a key for each environment."""

    def __init__(self, client: TestClient, admin: Admin, make_survey: MakeSurvey, limits: dict[str, int]) -> None:
        self.client, self.admin = client, admin
        industry = client.post("/admin/v1/industries", json={"name": "Healthcare"}, headers=admin.headers)
        industry_id = industry.json()["id"] if industry.status_code == 201 else None
        self.survey = make_survey(
            admin,
            status="active",
            title="Healthcare Consumer Study",
            cpi={"value": 6, "currency": "USD"},
            ir=40,
            loi=26,
            segment="B2B",
            countries=["USA", "UK"],
            description="Insights on market behaviour.",
            **({"industry_id": industry_id} if industry_id else {}),
        )
        questions = client.put(
            f"/admin/v1/surveys/{self.survey['id']}/questions", json=QUESTIONS, headers=admin.headers
        )
        assert questions.status_code == 200, questions.text
        created = client.post(
            "/admin/v1/suppliers",
            json={
                "name": "Partner",
                "email": "test@partner.com",
                "redirects": {
                    "success": f"{PANEL}?status=C&uid={{uid}}&hmac={{hmac}}",
                    "terminate": f"{PANEL}?&status=T&uid={{uid}}&hmac={{hmac}}",
                    "quotafull": f"{PANEL}?&status=Q&uid={{uid}}&hmac={{hmac}}",
                    "security_check": f"{PANEL}?&status=S&uid={{uid}}&hmac={{hmac}}",
                },
            },
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        self.supplier = created.json()
        self.sid = self.supplier["public_id"]
        self.hmac_secret = self.supplier["hmac_secret"]
        base = f"/admin/v1/suppliers/{self.supplier['id']}"
        self.keys = {
            env: client.post(f"{base}/keys", json={"environment": env}, headers=admin.headers).json()["key"]
            for env in ("sandbox", "production")
        }
        allocation = client.post(
            f"{base}/allocations",
            json={"survey_id": self.survey["public_id"], "survey_limit": limits},
            headers=admin.headers,
        )
        assert allocation.status_code == 201, allocation.text
        self.allocation = allocation.json()

    def call(
        self, endpoint: str, body: dict[str, Any] | None = None, env: str = "sandbox", **kw: Any
    ) -> httpx.Response:
        headers = kw.pop("headers", {"Authorization": f"Bearer {self.keys[env]}"})
        response: httpx.Response = self.client.post(f"/{env}/v1/{endpoint}", json=body or {}, headers=headers, **kw)
        return response

    def data(self, endpoint: str, body: dict[str, Any] | None = None, env: str = "sandbox") -> Any:
        response = self.call(endpoint, body, env)
        assert response.status_code == 200, response.text
        payload = response.json()
        assert set(payload) == SUCCESS_KEYS and payload["status"] == "success"
        return payload["data"]

    def link(self, env: str = "sandbox") -> str:
        body = {"survey_id": self.survey["public_id"], "supplier_id": self.sid}
        return str(self.data("generate_survey_url", body, env)["survey_link"])

    def enter(self, link: str, pid: str) -> httpx.Response:
        response: httpx.Response = self.client.get(
            link.replace("[%%pid%%]", pid).removeprefix("http://testserver"), follow_redirects=False
        )
        return response


@pytest.fixture
def supply(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Supply:
    return Supply(client, admin, make_survey, {"USA": 2, "UK": 300})


def assert_error(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"apiStatus": "error", "msg": response.json()["msg"], "result": None}
    assert fragment.lower() in response.json()["msg"].lower()


def token_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["token"][0]


def test_allocated_survey_matches_the_seed(supply: Supply) -> None:
    data = supply.data("allocated_survey", {"page": 1, "per_page": 10})
    assert set(data) == {"success", "TotalCount", "data"} and data["success"] is True and data["TotalCount"] == 1
    (item,) = data["data"]
    assert set(item) == SURVEY_KEYS
    assert item["survey_id"] == supply.survey["public_id"] and item["name"] == "Healthcare Consumer Study"
    assert item["CPI"] == {"value": 6, "currency": "USD"}
    assert item["survey_limit"] == {"USA": 2, "UK": 300}
    assert (item["IR"], item["LOI"], item["PII"], item["status"]) == (40, 26, "No", "Active")
    assert item["country"] == ["USA", "UK"] and item["segment"] == "B2B" and item["industry"] == "Healthcare"
    assert supply.data("allocated_survey", {"page": 2, "per_page": 10}) == {
        "success": True,
        "TotalCount": 1,
        "data": [],
    }
    assert supply.data("allocated_survey")["TotalCount"] == 1  # defaults: page 1, 10 per page
    listed = supply.client.get(f"/admin/v1/suppliers/{supply.supplier['id']}/allocations", headers=supply.admin.headers)
    assert [(a["survey_id"], a["survey_limit"]) for a in listed.json()] == [
        (supply.survey["public_id"], {"USA": 2, "UK": 300})
    ]


def test_get_survey_by_id_has_the_target_audience(supply: Supply, make_survey: MakeSurvey) -> None:
    data = supply.data("get_survey_by_id", {"survey_id": supply.survey["public_id"]})
    assert set(data) == {"success", "TotalCount", "data"} and data["TotalCount"] == 1
    (item,) = data["data"]
    assert set(item) == SURVEY_KEYS | {"target_audience"}
    first, second = item["target_audience"]
    assert set(first) == {"QuestionId", "QuestionKey", "QuestionText", "QuestionType", "QuestionCategory", "Options"}
    assert (first["QuestionId"], first["QuestionKey"], first["QuestionType"]) == (1, "AGE_RANGE", "Numeric Range")
    assert first["Options"] == [{"OptionId": 1, "OptionText": "23 - 35"}]
    assert [o["OptionText"] for o in second["Options"]] == ["Mobile", "Desktop", "Tablet"]
    assert_error(supply.call("get_survey_by_id", {"survey_id": "PROJ-00000000"}), 404, "not found")
    other = make_survey(supply.admin, status="active")
    assert_error(supply.call("get_survey_by_id", {"survey_id": other["public_id"]}), 403, "not allocated")
    assert_error(supply.call("get_survey_by_id", {}), 400, "survey_id is required")


def test_survey_by_date_and_industries(supply: Supply) -> None:
    today = datetime.now(UTC).date().isoformat()
    data = supply.data("survey_by_date", {"date": today})
    assert set(data) == {"success", "total", "data"} and data["total"] == 1
    (item,) = data["data"]
    assert set(item) == BY_DATE_KEYS
    assert item["CPI"] == "USD 6" and item["country"] == "USA, UK" and item["date"] == today
    assert supply.data("survey_by_date", {"date": "2020-01-01"})["total"] == 0
    assert_error(supply.call("survey_by_date", {"date": "23/10/2025"}), 400, "YYYY-MM-DD")
    industries = supply.data("get_industries")
    assert set(industries) == {"success", "total", "data"}
    assert {"id", "name"} == set(industries["data"][0]) and industries["total"] == len(industries["data"])
    assert "Healthcare" in [i["name"] for i in industries["data"]]


def test_get_redirects_checks_supplier_and_email(supply: Supply, make_admin: MakeAdmin, client: TestClient) -> None:
    data = supply.data("get_redirects", {"supplier_id": supply.sid, "email": "TEST@partner.com"})
    assert data == {
        "redirects": {
            "success": f"{PANEL}?status=C&uid={{uid}}&hmac={{hmac}}",
            "terminate": f"{PANEL}?&status=T&uid={{uid}}&hmac={{hmac}}",
            "quotafull": f"{PANEL}?&status=Q&uid={{uid}}&hmac={{hmac}}",
            "security_check": f"{PANEL}?&status=S&uid={{uid}}&hmac={{hmac}}",
        }
    }
    assert_error(supply.call("get_redirects", {"supplier_id": "R4I-S-0000-0000", "email": "test@partner.com"}), 403, "")
    assert_error(supply.call("get_redirects", {"supplier_id": supply.sid, "email": "x@partner.com"}), 403, "email")
    assert_error(supply.call("get_redirects", {"email": "test@partner.com"}), 400, "supplier_id is required")


def test_participants_are_added_and_listed_per_environment(supply: Supply) -> None:
    added = supply.data("add_participant", {**SEED_PARTICIPANT, "supplier_id": supply.sid})
    assert added == {"success": True, "message": "Participant added successfully", "pid": "MY-6jh7gh7gh"}
    generated = supply.data("add_participant", {"supplier_id": supply.sid, "country": "UK"})
    assert re.fullmatch(r"R4I-[A-Z0-9]{10}", generated["pid"])
    listed = supply.data("view_participants", {"page": 1, "per_page": 10, "supplier_id": supply.sid})
    assert set(listed) == {"page", "per_page", "total", "data"}
    assert (listed["page"], listed["per_page"], listed["total"]) == (1, 10, 2)
    first = listed["data"][0]
    assert set(first) == PARTICIPANT_KEYS
    assert first["age"] == "28" and first["participant_name"] == "Edward Patrick" and first["country"] == "USA"
    assert (
        supply.data("view_participants", {"per_page": 1, "page": 2, "supplier_id": supply.sid})["data"][0]["pid"]
        == generated["pid"]
    )
    assert supply.data("view_participants", {"supplier_id": supply.sid}, env="production")["total"] == 0
    assert_error(supply.call("add_participant", {"supplier_id": supply.sid, "age": "old"}), 400, "age")
    assert_error(supply.call("add_participant", {"supplier_id": supply.sid, "email": "nope"}), 400, "email")
    assert_error(supply.call("view_participants", {"supplier_id": supply.sid, "per_page": 1000}), 400, "per_page")


def test_signed_link_enters_once_and_the_end_redirect_is_signed(supply: Supply) -> None:
    link = supply.link()
    assert re.fullmatch(
        r"http://testserver/survey/letdosurvey\?sid=[^&]+&security_code=[\w-]{16}&PID=\[%%pid%%\]", link
    )
    entered = supply.enter(link, "PANEL123")
    assert entered.status_code == 302
    location = entered.headers["location"]
    assert location.startswith("https://q.example.org/s?token=")
    again = supply.enter(link, "PANEL123")
    assert again.headers["location"] == location  # the same participation and token
    code = location.rsplit("=", 1)[1]
    end = supply.client.get(f"/survey/end?token={code}&status=complete", follow_redirects=False)
    assert end.status_code == 302
    target = end.headers["location"]
    assert target.startswith(f"{PANEL}?status=C&uid=PANEL123&hmac=")
    assert verify_redirect(target, supply.hmac_secret)
    assert not verify_redirect(target.replace("uid=PANEL123", "uid=PANEL124"), supply.hmac_secret)
    assert not verify_redirect(target, "shs_wrong-secret")
    # Re-entering after the end goes straight back to the supplier with the same outcome.
    assert supply.enter(link, "PANEL123").headers["location"] == target


def test_forged_links_go_to_security_check(supply: Supply) -> None:
    link = supply.link()
    forged = re.sub(r"security_code=[\w-]+", "security_code=AAAAAAAAAAAAAAAA", link)
    response = supply.enter(forged, "P1")
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{PANEL}?&status=S&uid=P1&hmac=")
    assert verify_redirect(response.headers["location"], supply.hmac_secret)
    assert (
        supply.enter("http://testserver/survey/letdosurvey?sid=garbage&security_code=x&PID=[%%pid%%]", "P1").status_code
        == 404
    )
    assert supply.enter(link, "").status_code == 400
    assert supply.enter(link.replace("PID=[%%pid%%]", "PID=[%25%25pid%25%25]"), "").status_code == 400


def test_country_limit_sends_the_next_entrant_to_quotafull(supply: Supply) -> None:
    link = supply.link()
    for pid, country in (("u1", "USA"), ("u2", "usa"), ("u3", "USA"), ("k1", "UK"), ("x1", "")):
        supply.data("add_participant", {"supplier_id": supply.sid, "pid": pid, "country": country})
    assert supply.enter(link, "u1").headers["location"].startswith("https://q.example.org/")
    assert supply.enter(link, "u2").headers["location"].startswith("https://q.example.org/")
    over = supply.enter(link, "u3").headers["location"]
    assert over.startswith(f"{PANEL}?&status=Q&uid=u3&hmac=") and verify_redirect(over, supply.hmac_secret)
    assert supply.enter(link, "k1").headers["location"].startswith("https://q.example.org/")
    assert supply.enter(link, "x1").headers["location"].startswith("https://q.example.org/")  # country unknown
    # Production has its own count: the sandbox entrants consumed none of it.
    supply.data("add_participant", {"supplier_id": supply.sid, "pid": "u3", "country": "USA"}, env="production")
    assert supply.enter(supply.link("production"), "u3").headers["location"].startswith("https://q.example.org/")


def test_stats_come_from_participations(supply: Supply, client: TestClient) -> None:
    link = supply.link()
    supply.data("add_participant", {"supplier_id": supply.sid, "pid": "q9", "country": "USA"})
    codes = {pid: token_of(supply.enter(link, pid).headers["location"]) for pid in ("a", "b", "c", "d")}
    callback = {"Authorization": f"Bearer {supply.survey['callback_secret']}"}
    for pid in ("a", "b", "c"):
        event = {"token": codes[pid], "event": "started"}
        assert client.post("/api/v1/participations/events", json=event, headers=callback).status_code == 200
    assert (
        client.post(
            "/api/v1/participations/events", json={"token": codes["a"], "event": "completed"}, headers=callback
        ).status_code
        == 200
    )
    client.get(f"/survey/end?token={codes['b']}&status=terminate", follow_redirects=False)
    # a started 90 s before it completed (set directly: the test does not wait).
    with cast(FastAPI, client.app).state.database.sessions.begin() as session:
        session.execute(
            update(Participation).where(Participation.pid == "a").values(started_at=utcnow() - timedelta(seconds=90))
        )
    supply.enter(re.sub(r"security_code=[\w-]+", "security_code=forged", link), "e")  # not recorded: forged
    stats = supply.data("survey_stats", {"supplier_id": supply.sid})
    assert set(stats) == STATS_KEYS
    assert (stats["clicks"], stats["surveyStarts"], stats["completes"], stats["fails"]) == (4, 3, 1, 1)
    assert stats["Conversion"] == 25 and stats["revenue"] == 6 and stats["isVerified"] is True
    assert 1.4 <= stats["averageLOI"] <= 1.6
    assert supply.data("survey_stats", {"supplier_id": supply.sid}, env="production")["clicks"] == 0

    by_id = supply.data(
        "survey_stats_by_id",
        {"supplier_id": supply.sid, "project_id": supply.survey["public_id"], "page": 1, "per_page": 2},
    )
    assert set(by_id) == {"total", "page", "per_page", "data"} and by_id["total"] == 4 and len(by_id["data"]) == 2
    row = by_id["data"][0]
    assert set(row) == ROW_KEYS
    assert (row["participant_id"], row["status"], row["cpi"], row["verified"]) == ("a", "complete", "6", True)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["click_at"]) and row["token"] == codes["a"]
    assert by_id["data"][1]["status"] == "terminate" and by_id["data"][1]["cpi"] == "0"
    by_pid = supply.data("survey_stats_by_participant", {"supplier_id": supply.sid, "participant_id": "b"})
    assert by_pid["total"] == 1 and by_pid["data"][0]["status"] == "terminate"
    unknown = {"supplier_id": supply.sid, "participant_id": "nobody"}
    assert_error(supply.call("survey_stats_by_participant", unknown), 404, "participant")


def test_authentication_and_method_errors(supply: Supply, settings: Settings) -> None:
    assert_error(supply.call("allocated_survey", headers={}), 401, "missing api key")
    assert_error(
        supply.call("allocated_survey", headers={"Authorization": "Bearer R4I_TEST_nope"}), 401, "invalid api key"
    )
    live = {"Authorization": f"Bearer {supply.keys['production']}"}
    assert_error(supply.call("allocated_survey", headers=live), 401, "production")
    assert supply.call("allocated_survey", env="production").status_code == 200
    response = supply.client.get("/sandbox/v1/allocated_survey")
    assert_error(response, 405, "use POST")
    assert response.headers["allow"] == "POST"
    assert_error(supply.call("no_such_endpoint"), 404, "unknown endpoint")
    bad = supply.client.post(
        "/sandbox/v1/allocated_survey",
        content=b"{oops",
        headers={"Authorization": f"Bearer {supply.keys['sandbox']}", "Content-Type": "application/json"},
    )
    assert_error(bad, 400, "JSON")
    keys = supply.client.get(f"/admin/v1/suppliers/{supply.supplier['id']}/keys", headers=supply.admin.headers).json()
    sandbox_key = next(k for k in keys if k["environment"] == "sandbox")
    assert "key" not in sandbox_key and supply.keys["sandbox"].startswith(sandbox_key["prefix"])
    revoked = supply.client.delete(
        f"/admin/v1/suppliers/{supply.supplier['id']}/keys/{sandbox_key['id']}", headers=supply.admin.headers
    )
    assert revoked.status_code == 204
    assert_error(supply.call("allocated_survey"), 401, "invalid api key")


def test_rate_limit_is_429_with_retry_after(supply: Supply, settings: Settings) -> None:
    strict = settings.model_copy(update={"supplier_requests_per_minute": 3})
    with TestClient(create_app(strict)) as limited:
        headers = {"Authorization": f"Bearer {supply.keys['sandbox']}"}
        codes = [limited.post("/sandbox/v1/get_industries", json={}, headers=headers).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = limited.post("/sandbox/v1/get_industries", json={}, headers=headers)
        assert_error(refused, 429, "rate limit")
        assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_suppliers_see_only_their_own(
    supply: Supply, make_admin: MakeAdmin, make_survey: MakeSurvey, client: TestClient
) -> None:
    other = Supply(client, make_admin(), make_survey, {})
    assert other.data("allocated_survey")["TotalCount"] == 1
    assert other.data("allocated_survey")["data"][0]["survey_id"] == other.survey["public_id"]
    assert_error(other.call("get_survey_by_id", {"survey_id": supply.survey["public_id"]}), 404, "not found")
    assert_error(other.call("view_participants", {"supplier_id": supply.sid}), 403, "")
    assert client.get(f"/admin/v1/suppliers/{supply.supplier['id']}", headers=other.admin.headers).status_code == 404
    body = {"survey_id": supply.survey["public_id"]}
    denied = client.post(
        f"/admin/v1/suppliers/{other.supplier['id']}/allocations", json=body, headers=other.admin.headers
    )
    assert denied.status_code == 400


def test_fifty_simultaneous_entrants_against_a_limit_of_ten(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings
) -> None:
    supply = Supply(client, admin, make_survey, {"USA": 10})
    link = supply.link("production")
    for i in range(50):
        supply.data("add_participant", {"supplier_id": supply.sid, "pid": f"p{i}", "country": "USA"}, env="production")
    apps = [create_app(settings), create_app(settings)]
    path = link.removeprefix("http://testserver")

    async def burst() -> list[httpx.Response]:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://testserver") for a in apps]
        try:
            return await asyncio.gather(*(clients[i % 2].get(path.replace("[%%pid%%]", f"p{i}")) for i in range(50)))
        finally:
            for c in clients:
                await c.aclose()

    locations = [r.headers["location"] for r in asyncio.run(burst())]
    admitted = [loc for loc in locations if loc.startswith("https://q.example.org/")]
    refused = [loc for loc in locations if loc.startswith(f"{PANEL}?&status=Q&")]
    assert (len(admitted), len(refused)) == (10, 40)
    stats = supply.data("survey_stats", {"supplier_id": supply.sid}, env="production")
    assert (stats["clicks"], stats["preSurveyOverQuota"]) == (50, 40)
    for a in apps:
        a.state.database.dispose()
