"""Contacts: normalisation, uniqueness, bulk import with a per-row report, malformed files, size limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from invitelink.config import Settings
from tests.conftest import Admin, MakeSurvey


def _base(survey: dict[str, Any]) -> str:
    return f"/admin/v1/surveys/{survey['id']}/contacts"


def test_contact_features_are_normalised_and_unique(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    base = _base(make_survey(admin))
    created = client.post(
        base,
        json={"email": "  Ann@Example.ORG ", "mobile": "0049 170 1234567", "uid": "cust-1", "name": "Ann"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["email"], body["mobile"], body["uid"]) == ("ann@example.org", "+491701234567", "cust-1")
    assert body["serial"] and len(body["serial"]) == 10
    dup = client.post(base, json={"email": "ANN@example.org"}, headers=admin.headers)
    assert dup.status_code == 409
    anonymous = client.post(base, json={"uid": "anon-1", "anonymous": True}, headers=admin.headers).json()
    assert anonymous["serial"] is None
    for bad, field in [
        ({"email": "not-an-address"}, "email"),
        ({"mobile": "12345"}, "mobile"),
        ({"uid": "tab\there"}, "uid"),
        ({"name": "no identifier"}, None),
    ]:
        response = client.post(base, json=bad, headers=admin.headers)
        assert response.status_code == 400, (bad, response.text)
        assert response.json().get("field") == field
    assert len(client.get(base, headers=admin.headers).json()["items"]) == 2
    patched = client.patch(f"{base}/{body['id']}", json={"subgroup": "vip"}, headers=admin.headers).json()
    assert patched["subgroup"] == "vip" and patched["email"] == "ann@example.org"
    clash = client.patch(f"{base}/{anonymous['id']}", json={"email": "ann@example.org"}, headers=admin.headers)
    assert clash.status_code == 409


def test_csv_import_reports_each_bad_row_and_stores_the_good_ones(
    client: TestClient,
    admin: Admin,
    make_survey: MakeSurvey,
) -> None:
    base = _base(make_survey(admin))
    client.post(base, json={"email": "old@example.org"}, headers=admin.headers)
    csv_text = (
        "email,mobile,uid,name,subgroup\n"
        "a@example.org,,,Ann,g1\n"  # 1 ok
        "broken-address,,,Bob,\n"  # 2 bad email
        ",+12025550123,,Cy,\n"  # 3 ok (mobile only)
        "A@EXAMPLE.ORG,,,Ann again,\n"  # 4 duplicate of row 1
        "old@example.org,,,Old,\n"  # 5 already a contact: skipped
        ",,,Nobody,\n"  # 6 no identifier
        ",,u-7,Uma,,extra\n"  # 7 too many fields
    )
    response = client.post(
        f"{base}/import", content=csv_text.encode(), headers={**admin.headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 2
    assert report["skipped"] == 1
    assert [(e["row"], e["field"]) for e in report["errors"]] == [
        (2, "email"),
        (4, None),
        (6, None),
        (7, None),
    ]
    assert "duplicate of row 1" in report["errors"][1]["error"]
    emails = sorted(c["email"] or c["mobile"] for c in client.get(base, headers=admin.headers).json()["items"])
    assert emails == ["+12025550123", "a@example.org", "old@example.org"]
    # Re-running the same file changes nothing.
    again = client.post(
        f"{base}/import", content=csv_text.encode(), headers={**admin.headers, "Content-Type": "text/csv"}
    ).json()
    assert again["created"] == 0 and again["skipped"] == 3


def test_json_and_multipart_imports(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    base = _base(make_survey(admin))
    # An item that is not an object is a malformed file, refused whole (like malformed CSV): nothing is stored.
    malformed = client.post(f"{base}/import", json={"contacts": [{"uid": "x0"}, "nope"]}, headers=admin.headers)
    assert malformed.status_code == 400 and "item 2 is not an object" in malformed.json()["detail"]
    response = client.post(f"{base}/import", json={"contacts": [{"uid": "x1"}, {"uid": 7}]}, headers=admin.headers)
    assert response.status_code == 200
    report = response.json()
    assert report["created"] == 1 and [e["row"] for e in report["errors"]] == [2]
    assert [c["uid"] for c in client.get(base, headers=admin.headers).json()["items"]] == ["x1"]
    files = {"file": ("people.csv", b"\xef\xbb\xbfuid,name\nx2,Xena\n", "text/csv")}
    uploaded = client.post(f"{base}/import", files=files, headers=admin.headers)
    assert uploaded.status_code == 200 and uploaded.json()["created"] == 1
    files = {"file": ("people.json", json.dumps([{"uid": "x3"}]).encode(), "application/json")}
    assert client.post(f"{base}/import", files=files, headers=admin.headers).json()["created"] == 1


def test_malformed_imports_are_400_and_store_nothing(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    base = _base(make_survey(admin))
    cases = [
        (b"email,col/our\na@example.org,red\n", "text/csv", "attribute name"),
        (b"", "text/csv", "CSV is empty"),
        (b"email\na@example.org\x00\n", "text/csv", "NUL bytes"),
        (b'email,name\na@example.org,"Ann\n', "text/csv", "malformed CSV"),
        ("email\nm\xfcller@example.org\n".encode("latin-1"), "text/csv", "UTF-8"),
        (b'[{"email": ', "application/json", "malformed JSON"),
        (b'{"email": "a@example.org"}', "application/json", "list of contacts"),
        (b"email\na@example.org\n", "application/xml", "text/csv"),
        (b"null", "text/csv", "at least one of email, mobile, uid"),
        (b"name,city\nAnn,Oslo\n", "text/csv", "at least one of email, mobile, uid"),
    ]
    for body, content_type, expected in cases:
        response = client.post(f"{base}/import", content=body, headers={**admin.headers, "Content-Type": content_type})
        assert response.status_code == 400, (body, response.text)
        assert expected in response.json()["detail"], (body, response.json())
    assert client.get(base, headers=admin.headers).json()["items"] == []


def test_oversize_bodies_are_413(client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings) -> None:
    base = _base(make_survey(admin))
    big = b"uid\n" + b"x" * (settings.max_import_bytes + 1)
    response = client.post(f"{base}/import", content=big, headers={**admin.headers, "Content-Type": "text/csv"})
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    oversize_json = {"email": "a@example.org", "name": "x" * (settings.max_body_bytes + 1)}
    assert client.post(base, json=oversize_json, headers=admin.headers).status_code == 413

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit must hold on a streamed body too.
        for _ in range(3):
            yield b"x" * settings.max_body_bytes

    streamed = client.post(base, content=chunks(), headers={**admin.headers, "Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_serial_codes_generate_and_list(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    base = f"/admin/v1/surveys/{survey['id']}/serial-codes"
    created = client.post(base, json={"count": 5, "notice": "wave 1"}, headers=admin.headers)
    assert created.status_code == 201
    codes = [c["code"] for c in created.json()]
    assert len(set(codes)) == 5
    assert all(len(c) == 8 and not set(c) & set("01OIL") for c in codes)
    listed = client.get(base, params={"limit": 3}, headers=admin.headers).json()
    assert len(listed["items"]) == 3 and listed["next_cursor"]
    assert listed["items"][0] == {
        **listed["items"][0],
        "notice": "wave 1",
        "started": False,
        "completed": False,
    }
    assert client.post(base, json={"count": 0}, headers=admin.headers).status_code == 422
    assert client.post(base, json={"count": 10_001}, headers=admin.headers).status_code == 422
