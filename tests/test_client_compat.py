"""What real clients of the three APIs send, sent exactly so: doubled and trailing slashes, the API URL without its
slash, extra fields, PHP's form encoding, HEAD, a project in capitals. Through the ASGI app on both engines, and
through a live server with raw HTTP where a client library would normalise the request away."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from invitelink.config import Settings
from invitelink.db import transaction
from invitelink.families.supply.routes import ENDPOINTS
from invitelink.models import ApiAccess, Contact, Delivery, Mailing, Suppression
from invitelink.security import digest
from invitelink.services import credentials
from invitelink.worker.runner import Worker
from tests.conftest import Admin, MakeSurvey
from tests.live_server import Live, live_server
from tests.test_sosci import Sosci
from tests.test_supply import Supply, assert_error
from tests.test_trigger import URL as TRIGGER_URL
from tests.test_trigger import Trigger

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def sosci(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Sosci:
    return Sosci(client, admin, make_survey, project="shop-study", questionnaire_url="https://q.example.org/s")


def key_of(api_url: str) -> str:
    return api_url.split("act=")[1]


def sosci_error(response: httpx.Response, status: int, **echoed: Any) -> dict[str, Any]:
    """The SoSci error body, whole: ``result``, ``error`` and what the function echoes."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body == {"result": "error", "error": body["error"], **echoed}
    assert isinstance(body["error"], str) and body["error"]
    return body


# 1. Supply API: doubled and trailing slashes ---------------------------------------------------------------------


def _endpoint_bodies(supply: Supply) -> dict[str, dict[str, Any]]:
    ids = {"supplier_id": supply.sid}
    survey = supply.survey["public_id"]
    return {
        "allocated_survey": {"page": 1, "per_page": 10},
        "get_survey_by_id": {"survey_id": survey},
        "survey_by_date": {"date": datetime.now(UTC).date().isoformat()},
        "get_industries": {},
        "get_redirects": {**ids, "email": "test@partner.com"},
        "add_participant": {**ids, "pid": "SLASH-1", "country": "USA"},
        "view_participants": ids,
        "generate_survey_url": {**ids, "survey_id": survey},
        "survey_stats": ids,
        "survey_stats_by_id": {**ids, "project_id": survey},
        "survey_stats_by_participant": {**ids, "participant_id": "SLASH-1"},
    }


@pytest.mark.parametrize("env", ["sandbox", "production"])
def test_supply_endpoints_with_doubled_or_trailing_slashes_answer_like_the_endpoint(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, env: str
) -> None:
    supply = Supply(client, admin, make_survey, {"USA": 5})
    headers = {"Authorization": f"Bearer {supply.keys[env]}"}
    bodies = _endpoint_bodies(supply)
    assert set(bodies) == set(ENDPOINTS)
    for endpoint, body in bodies.items():
        expected = client.post(f"/{env}/v1/{endpoint}", json=body, headers=headers)
        assert expected.status_code == 200, (endpoint, expected.text)
        for path in (
            f"/{env}/v1//{endpoint}",  # a base URL ending in "/" joined to "/endpoint"
            f"/{env}/v1/{endpoint}/",
            f"/{env}//v1//{endpoint}//",
        ):
            response = client.post(path, json=body, headers=headers)
            # The client sent the path as written: nothing between it and the app collapsed the slashes.
            assert response.request.url.raw_path == path.encode()
            assert (response.status_code, response.json()) == (200, expected.json()), (path, response.text)


def test_supply_slash_variants_keep_the_errors_of_the_api(supply_fixture: Supply) -> None:
    supply, client = supply_fixture, supply_fixture.client
    wrong_method = client.get("/sandbox/v1//allocated_survey")
    assert_error(wrong_method, 405, "use POST")
    assert wrong_method.headers["allow"] == "POST"
    assert_error(client.post("/sandbox/v1//allocated_survey", json={}), 401, "missing api key")
    headers = {"Authorization": f"Bearer {supply.keys['sandbox']}"}
    assert_error(client.post("/sandbox/v1//no_such_endpoint/", json={}, headers=headers), 404, "unknown endpoint")
    assert_error(client.post("/sandbox/v2/allocated_survey", json={}, headers=headers), 404, "unknown endpoint")
    assert_error(client.post("/sandbox/v1/allocated_survey/extra", json={}, headers=headers), 404, "unknown endpoint")
    # A production key on the sandbox, written with a doubled slash: still the environment check.
    live = {"Authorization": f"Bearer {supply.keys['production']}"}
    assert_error(client.post("/sandbox/v1//allocated_survey", json={}, headers=live), 401, "production")


@pytest.fixture
def supply_fixture(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Supply:
    return Supply(client, admin, make_survey, {"USA": 2, "UK": 300})


# 2. SoSci: the API URL without the slash before "?" ------------------------------------------------------------


def test_sosci_api_url_without_the_slash_is_served_with_its_body(sosci: Sosci, client: TestClient) -> None:
    expected = sosci.call("create_link", uid="no-slash").json()
    key = key_of(sosci.urls["create_link"])
    path = f"/shop-study?act={key}"
    form = client.post(path, content=b"uid=no-slash", headers=FORM, follow_redirects=False)
    assert form.request.url.raw_path == path.encode()
    assert (form.status_code, form.json()) == (200, expected)
    as_json = client.post(path, content=b'{"uid": "no-slash"}', headers=JSON, follow_redirects=False)
    assert (as_json.status_code, as_json.json()) == (200, expected)
    # The key in the body, not the query: a POST is an API call all the same.
    in_body = client.post("/shop-study", json={"act": key, "uid": "no-slash"}, follow_redirects=False)
    assert (in_body.status_code, in_body.json()) == (200, expected)
    # GET with act= is an API call too: answered here, not redirected.
    got = client.get(f"{path}&uid=no-slash", follow_redirects=False)
    assert (got.status_code, got.json()) == (200, expected)
    # Status functions and their errors alike.
    status_key = key_of(sosci.urls["address_status"])
    missing = client.post(f"/shop-study?act={status_key}", data={"uid": "nobody"}, follow_redirects=False)
    sosci_error(missing, 404, serial=None, email=None, mobile=None, uid="nobody")
    bad = client.post(f"/shop-study?act={key}", data={"email": "not-an-address"}, follow_redirects=False)
    assert sosci_error(bad, 400, url=None)["error"].startswith("email")


def test_participant_links_without_the_slash_are_still_redirected(sosci: Sosci, client: TestClient) -> None:
    token = sosci.call("create_link", uid="p1").json()["token"]
    for method in ("GET", "HEAD"):
        response = client.request(method, f"/shop-study?d={token}", follow_redirects=False)
        assert response.status_code == 308
        assert response.headers["location"] == f"/shop-study/?d={token}"


def test_an_api_call_to_a_path_no_project_can_have_is_json_without_the_slash_too(client: TestClient) -> None:
    for path in ("/Shop_Study?act=KEY", "/x?act=KEY"):
        sosci_error(client.post(path, data={"uid": "a"}), 404, url=None)
        sosci_error(client.get(f"{path}&uid=a"), 404, url=None)
    assert client.head("/readyz").status_code == 200


# 3. SoSci: fields the API does not read are ignored -------------------------------------------------------------


def test_sosci_ignores_fields_it_does_not_read(sosci: Sosci, client: TestClient) -> None:
    expected = sosci.call("create_link", uid="a").json()
    url = sosci.urls["create_link"].removeprefix("http://testserver")
    order = {
        "uid": "a",
        "paid": True,
        "order": {"id": 17, "items": [{"sku": "X", "qty": 2}]},
        "tags": ["new", 3, None],
        "coupon": None,
        "note": "a\u0000b",  # unread, so not refused either
        "total": 1e300,
    }
    response = client.post(url, json=order)
    assert (response.status_code, response.json()) == (200, expected)
    form = client.post(url, data={"uid": "a", "paid": "1", "order[id]": "17"})
    assert (form.status_code, form.json()) == (200, expected)
    query = client.get(f"{url}&uid=a&utm_source=shop&raw=%00&long={'x' * 5000}")
    assert (query.status_code, query.json()) == (200, expected)
    # What the API reads is still checked, in the function's error body.
    for value, message in ((True, "uid must be a string"), ({"a": 1}, "uid must be a string"), ([1], "uid must")):
        refused = client.post(url, json={"uid": value, "paid": True})
        assert sosci_error(refused, 400, url=None)["error"].startswith(message)
    status_url = sosci.urls["address_status"].removeprefix("http://testserver")
    echoed = client.post(status_url, json={"uid": "a", "paid": True, "extra": {"x": 1}})
    assert echoed.status_code == 200
    assert {k: echoed.json()[k] for k in ("serial", "email", "mobile", "uid")} == {
        "serial": None,
        "email": None,
        "mobile": None,
        "uid": "a",
    }
    assert "paid" not in echoed.json()


# 4. SoSci API keys: letters and digits; older keys keep working ----------------------------------------------------


def test_new_api_keys_are_letters_and_digits(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin, status="active")
    keys = set()
    for _ in range(20):
        created = client.post(
            f"/admin/v1/surveys/{survey['id']}/api-accesses", json={"function": "serial_status"}, headers=admin.headers
        )
        assert created.status_code == 201, created.text
        keys.add(key_of(created.json()["api_url"]))
    assert len(keys) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", key) for key in keys), keys
    # Every character of the alphabet turns up: 640 draws from 62 characters.
    assert len(set("".join(keys))) > 55
    issued = credentials.issue("x_", 24, shown=4, alphabet="AB")
    assert re.fullmatch(r"x_[AB]{32}", issued.secret) and issued.digest == digest(issued.secret)
    assert re.fullmatch(r"sit_[\w-]{32}", credentials.issue("sit_", 24, shown=4).secret)  # others unchanged


def test_base64url_keys_issued_before_keep_working(sosci: Sosci, client: TestClient, app: FastAPI) -> None:
    legacy = "Ab-_cd-_ef0123456789-_ghijklmnop"  # the former alphabet, "-" and "_" included
    with transaction(app.state.database.sessions) as session:
        session.add(
            ApiAccess(
                survey_id=sosci.survey["id"],
                mailing_id=sosci.mailing["id"],
                function="create_link",
                key_digest=digest(legacy),
                key_prefix=legacy[:6],
            )
        )
    response = client.get(f"/shop-study/?act={legacy}&uid=old-shop")
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "ok"
    assert client.post(f"/shop-study?act={legacy}", data={"uid": "old-shop"}).json() == response.json()


# 5. R4I generate_survey_url: security_code as a field ------------------------------------------------------------


def test_generate_survey_url_carries_the_security_code(supply_fixture: Supply) -> None:
    supply = supply_fixture
    body = {"survey_id": supply.survey["public_id"], "supplier_id": supply.sid}
    data = supply.data("generate_survey_url", body)
    assert set(data) == {"survey_link", "security_code"}
    assert parse_qs(urlsplit(data["survey_link"]).query)["security_code"] == [data["security_code"]]
    assert re.fullmatch(r"[\w-]{16}", data["security_code"])
    assert supply.data("generate_survey_url", body, env="production")["security_code"] != data["security_code"]
    entered = supply.enter(data["survey_link"], "PANEL-9")
    assert entered.status_code == 302 and entered.headers["location"].startswith("https://q.example.org/")


# 6. SoSci address_status: sendTime of a skipped or failed mailing ------------------------------------------------


def test_address_status_gives_skipped_and_failed_mailings_a_send_time(
    sosci: Sosci, client: TestClient, app: FastAPI, settings: Settings, db: Session
) -> None:
    assert sosci.call("send_mail", email="gone@example.com").status_code == 200
    assert sosci.call("send_mail", email="broken@example.com").status_code == 200
    with transaction(app.state.database.sessions) as session:
        session.add(Suppression(workspace_id=sosci.admin.workspace_id, address="gone@example.com"))

    async def work() -> None:
        worker = Worker(settings)
        await worker.run_once()
        await worker.close()

    asyncio.run(work())  # the worker decides now: gone@ is suppressed, so skipped
    mid = f"M{sosci.mailing['id']}"
    today = datetime.now(UTC).date().isoformat()
    skipped = sosci.call("address_status", email="gone@example.com").json()["mailings"][mid]
    assert skipped == {"id": sosci.mailing["id"], "status": "skipped", "statusMail": "none", "statusSMS": "none",
                       "sendTime": today}  # fmt: skip
    # A send that failed for good after its retries, the last of them due two days ago.
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    broken = db.scalar(select(Contact.id).where(Contact.email == "broken@example.com"))
    with transaction(app.state.database.sessions) as session:
        session.execute(
            update(Delivery)
            .where(Delivery.contact_id == broken)
            .values(status="failed", transport_status="failed", due_at=two_days_ago, sent_at=None)
        )
    failed = sosci.call("address_status", email="broken@example.com").json()["mailings"][mid]
    assert (failed["status"], failed["statusMail"], failed["sendTime"]) == (
        "failed",
        "failed",
        two_days_ago.date().isoformat(),
    )
    assert db.scalar(select(Mailing.id).where(Mailing.id == sosci.mailing["id"])) is not None


# 7. HEAD where GET is answered ---------------------------------------------------------------------------------


def test_head_is_answered_like_get_with_the_same_effects(sosci: Sosci, client: TestClient, db: Session) -> None:
    url = sosci.urls["create_link"].removeprefix("http://testserver")
    head = client.head(f"{url}&uid=head-1")
    assert head.status_code == 200 and head.headers["content-type"] == "application/json"
    # HEAD did what GET does: the contact and its link exist, and GET now answers with that link.
    db.rollback()
    assert db.scalar(select(Contact.id).where(Contact.uid == "head-1")) is not None
    got = client.get(f"{url}&uid=head-1")
    assert head.headers["content-length"] == got.headers["content-length"]
    assert client.head(f"{url}&uid=head-1").headers["content-length"] == got.headers["content-length"]
    assert client.head(f"/shop-study?act={key_of(sosci.urls['create_link'])}&uid=head-1").status_code == 200
    # Errors: the status GET gives.
    assert client.head(f"{url}&uid=Zo%C3%AB").status_code == 400
    assert client.head("/shop-study/?act=unknown&uid=x").status_code == 404
    # A participant link: HEAD opens it like GET.
    token = got.json()["token"]
    opened = client.head(f"/shop-study/?d={token}", follow_redirects=False)
    assert opened.status_code == 302 and opened.headers["location"] == f"https://q.example.org/s?token={token}"
    assert client.head("/shop-study/?d=AAAAAAAAAAAAAAAA").status_code == 404


def test_head_of_the_supplier_entry_link(supply_fixture: Supply) -> None:
    supply, client = supply_fixture, supply_fixture.client
    link = supply.link().replace("[%%pid%%]", "HEAD-1").removeprefix("http://testserver")
    head = client.head(link, follow_redirects=False)
    assert head.status_code == 302
    got = client.get(link, follow_redirects=False)
    assert got.headers["location"] == head.headers["location"]  # one participation, entered by HEAD
    assert client.head("/survey/letdosurvey?sid=garbage&security_code=x&PID=P").status_code == 404
    assert client.head(link.replace("PID=HEAD-1", "PID=")).status_code == 400


# 8. SoSci: the project in another case ---------------------------------------------------------------------------


def test_project_is_matched_regardless_of_case(sosci: Sosci, client: TestClient) -> None:
    expected = sosci.call("create_link", uid="case").json()
    key = key_of(sosci.urls["create_link"])
    for project in ("SHOP-STUDY", "Shop-Study"):
        got = client.get(f"/{project}/?act={key}&uid=case")
        assert (got.status_code, got.json()) == (200, expected)
        posted = client.post(f"/{project}?act={key}", data={"uid": "case"})
        assert (posted.status_code, posted.json()) == (200, expected)
    opened = client.get(f"/SHOP-STUDY/?d={expected['token']}", follow_redirects=False)
    assert opened.status_code == 302
    # A path no project can have: an API call still gets the API's JSON error, a browser the page.
    for path in (f"/Shop_Study/?act={key}&uid=x", f"/x/?act={key}&uid=x", f"/{'a' * 80}/?act={key}"):
        sosci_error(client.get(path), 404, url=None)
    assert sosci_error(client.post("/Shop_Study/", json={"act": key, "uid": "x"}), 404, url=None)["error"] == (
        "invalid API key"
    )
    status_key = key_of(sosci.urls["serial_status"])
    assert client.get(f"/SHOP-STUDY/?act={status_key}&serial=NOPE").json() == {
        "result": "error",
        "error": "not found",
        "code": "NOPE",
    }
    page = client.get("/Shop_Study/?d=ABC")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


# 9. Trigger API: name with a list, and PHP's form encoding ---------------------------------------------------------


@pytest.fixture
def trigger(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Trigger:
    return Trigger(client, admin, make_survey(admin, status="active"))


def _names(db: Session) -> dict[str, str]:
    db.rollback()  # a new read transaction: see what was committed since
    return {email: name for email, name in db.execute(select(Contact.email, Contact.name)) if email}


def test_trigger_name_next_to_emails_names_the_recipients_without_a_name(trigger: Trigger, db: Session) -> None:
    response = trigger.post(
        {
            "emails": ["a@example.com", {"email": "b@example.com", "name": "Bea"}, {"email": "c@example.com"}],
            "name": "Pat",
        }
    )
    assert response.status_code == 200, response.text
    assert _names(db) == {"a@example.com": "Pat", "b@example.com": "Bea", "c@example.com": "Pat"}
    one = trigger.client.post(TRIGGER_URL, json={"emails": ["d@example.com"], "name": "Dee"}, headers=trigger.auth)
    assert one.status_code == 200, one.text
    assert _names(db)["d@example.com"] == "Dee"


def _batch_recipients(db: Session, uuid: str) -> tuple[dict[str, str], Any]:
    db.rollback()
    mailing = db.scalar(select(Mailing).where(Mailing.uuid == uuid))
    assert mailing is not None
    rows = db.execute(
        select(Contact.email, Contact.name)
        .join(Delivery, Delivery.contact_id == Contact.id)
        .where(Delivery.mailing_id == mailing.id)
    )
    return {email: name for email, name in rows}, mailing.meta


@pytest.mark.parametrize(
    ("body", "recipients", "metadata"),
    [
        # http_build_query(["emails" => ["a@example.com", "b@example.com"]]), brackets percent-encoded as PHP does
        (
            b"emails%5B0%5D=a%40example.com&emails%5B1%5D=b%40example.com",
            {"a@example.com": "", "b@example.com": ""},
            None,
        ),
        # http_build_query(["emails" => [["email" => …, "name" => …], …], "metadata" => [...], "reminder_days" => 0])
        (
            b"emails%5B0%5D%5Bemail%5D=alex%40example.com&emails%5B0%5D%5Bname%5D=Alex"
            b"&emails%5B1%5D%5Bemail%5D=sam%40example.com&emails%5B1%5D%5Bname%5D=Sam"
            b"&metadata%5Bcampaign%5D=post-demo&metadata%5Bsource_id%5D=evt_12345&reminder_days=0",
            {"alex@example.com": "Alex", "sam@example.com": "Sam"},
            {"campaign": "post-demo", "source_id": "evt_12345"},
        ),
        # The same, brackets written as they are, "[]" appending, and name for the plain address.
        (
            b"emails[]=a@example.com&emails[][email]=b@example.com&emails[1][name]=Bea&name=Pat&metadata[n][k]=v",
            {"a@example.com": "Pat", "b@example.com": "Bea"},
            {"n": {"k": "v"}},
        ),
        # Repeated plain names, as some form builders send a list.
        (b"emails=a%40example.com&emails=b%40example.com", {"a@example.com": "", "b@example.com": ""}, None),
    ],
)
def test_trigger_reads_php_form_encoding(
    trigger: Trigger, db: Session, body: bytes, recipients: dict[str, str], metadata: dict[str, Any] | None
) -> None:
    response = trigger.client.post(TRIGGER_URL, content=body, headers={**trigger.auth, **FORM})
    assert response.status_code == 200, response.text
    assert _batch_recipients(db, response.json()["batch"]["uuid"]) == (recipients, metadata)


def test_trigger_reads_php_fields_in_a_multipart_body(trigger: Trigger, db: Session) -> None:
    # PHP's curl with an array of fields sends multipart/form-data.
    parts = [("emails[0][email]", "m@example.com"), ("emails[0][name]", "Em"), ("metadata[k]", "v")]
    raw = b"".join(f'--XyZ\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode() for n, v in parts)
    response = trigger.client.post(
        TRIGGER_URL,
        content=raw + b"--XyZ--\r\n",
        headers={**trigger.auth, "Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 200, response.text
    assert _batch_recipients(db, response.json()["batch"]["uuid"]) == ({"m@example.com": "Em"}, {"k": "v"})


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"emails[0][email]=not-an-address", "invalid recipient emails[0]"),
        (b"emails[0]=a%40example.com&emails[0][email]=b%40example.com", "emails is given both"),
        (b"email=a%40example.com&metadata=x&metadata[k]=v", "metadata is given both"),
        (b"email=a%40example.com&metadata" + b"[a]" * 7 + b"=v", "nested more than 6 levels"),
        (b"emails[x]=a%40example.com", "emails must be a non-empty list"),
        (b"email=a%40example.com&metadata[k]=a%00b", "NUL"),
        (b"&".join(b"f%d=1" % i for i in range(3001)), "Too many fields"),
    ],
)
def test_trigger_form_errors_are_the_family_body(trigger: Trigger, body: bytes, fragment: str) -> None:
    response = trigger.client.post(TRIGGER_URL, content=body, headers={**trigger.auth, **FORM})
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"ok", "error"} and response.json()["ok"] is False
    assert fragment in response.json()["error"]


# 10. Every SoSci error body is complete -----------------------------------------------------------------------------


def test_sosci_error_bodies_are_complete_for_every_refusal(sosci: Sosci, client: TestClient) -> None:
    url = sosci.urls["create_link"].removeprefix("http://testserver")
    for method in ("PUT", "PATCH", "DELETE"):
        refused = client.request(method, url)
        assert sosci_error(refused, 405, url=None)["error"] == f"method {method} not allowed; use GET or POST"
        assert refused.headers["allow"] == "GET, HEAD, POST"
    many = "&".join(f"f{i}=1" for i in range(1001)).encode()
    assert "cannot be read" in sosci_error(client.post(url, content=many, headers=FORM), 400, url=None)["error"]
    broken = client.post(url, content=b"x", headers={"Content-Type": "multipart/form-data"})
    sosci_error(broken, 400, url=None)
    sosci_error(client.post(url, content=b"[1]", headers=JSON), 400, url=None)
    status_url = sosci.urls["address_status"].removeprefix("http://testserver")
    sosci_error(client.get(f"{status_url}&email=nope"), 400, serial=None, email="nope", mobile=None, uid=None)
    serial_url = sosci.urls["serial_status"].removeprefix("http://testserver")
    sosci_error(client.get(serial_url), 400, code=None)


# Raw HTTP against a live server --------------------------------------------------------------------------------


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Live]:
    with live_server(db_url, tmp_path) as server:
        yield server


def raw_request(port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """One request written byte for byte on a socket (no client library to tidy the path), and the whole answer."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def test_live_server_serves_the_raw_request_shapes(live: Live) -> None:
    supplier, project = live.demo["supplier"], live.demo["survey"]["project"]
    auth = {"Authorization": f"Bearer {supplier['sandbox_key']}", "Content-Type": "application/json"}
    for target in ("/sandbox/v1//allocated_survey", "/sandbox/v1/allocated_survey/"):
        status, _headers, body = parse_answer(raw_request(live.port, "POST", target, b'{"page": 1}', auth))
        assert status == 200, (target, body)
        assert json.loads(body)["data"]["TotalCount"] == 1

    key = key_of(live.demo["sosci"]["create_link"])
    status, _headers, body = parse_answer(raw_request(live.port, "POST", f"/{project}?act={key}", b"uid=raw-1", FORM))
    assert status == 200, body
    link = json.loads(body)
    assert link["result"] == "ok" and link["url"].startswith(f"{live.base}/{project}/?d=")
    status, _headers, body = parse_answer(
        raw_request(live.port, "POST", f"/{project.upper()}?act={key}", b'{"uid": "raw-1", "paid": true}', JSON)
    )
    assert (status, json.loads(body)) == (200, link)

    # HEAD: GET's status and headers, and not one byte of body on the wire.
    status, headers, body = parse_answer(raw_request(live.port, "HEAD", f"/{project}/?act={key}&uid=raw-1"))
    assert (status, headers["content-type"], body) == (200, "application/json", b"")
    assert int(headers["content-length"]) == len(json.dumps(link, separators=(",", ":")))
    entry = live.demo["supplier"]
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    conn.request(
        "POST",
        "/production/v1//generate_survey_url",
        body=json.dumps({"survey_id": entry["survey_id"], "supplier_id": entry["supplier_id"]}),
        headers={"Authorization": f"Bearer {entry['production_key']}", "Content-Type": "application/json"},
    )
    answer = conn.getresponse()
    data = json.loads(answer.read())["data"]
    conn.close()
    assert answer.status == 200 and data["security_code"] in data["survey_link"]
    target = urlsplit(data["survey_link"].replace("[%%pid%%]", "RAW-1"))
    status, headers, body = parse_answer(raw_request(live.port, "HEAD", f"{target.path}?{target.query}"))
    assert (status, body) == (302, b"") and headers["location"].startswith("https://questionnaire.example.org/")
    # The HEAD entered the PID, as its GET would have: the GET that follows reuses that participation.
    status, again, _body = parse_answer(raw_request(live.port, "GET", f"{target.path}?{target.query}"))
    assert (status, again["location"]) == (302, headers["location"])
