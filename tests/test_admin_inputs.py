"""What the admin API does with inputs its OpenAPI document does not admit (found by schemathesis): refused in the
admin error format with the status the document lists, never a 500 and never guessed at."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Admin, MakeSurvey


def test_path_ids_that_name_nothing_are_404(client: TestClient, admin: Admin) -> None:
    # "²" is a digit to str.isdigit() but no int() reads it; a number beyond 64 bits no row can have.
    for path in ("/admin/v1/surveys/%C2%B2", "/admin/v1/surveys/99999999999999999999", "/admin/v1/surveys/abc"):
        answer = client.get(path, headers=admin.headers)
        assert answer.status_code == 404, (path, answer.text)
        assert set(answer.json()) == {"detail"}


def test_another_method_on_a_path_is_405_with_every_method(
    client: TestClient, admin: Admin, make_survey: MakeSurvey
) -> None:
    survey = make_survey(admin)
    answer = client.options(f"/admin/v1/surveys/{survey['id']}", headers=admin.headers)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, GET, PATCH"
    assert set(answer.json()) == {"detail"}
    # /contacts/import is not /contacts/{contact_id}: PATCH is a method the import does not take, not a bad id.
    answer = client.patch(f"/admin/v1/surveys/{survey['id']}/contacts/import", headers=admin.headers)
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")


def test_lengths_are_checked_on_the_value_as_sent(client: TestClient, admin: Admin) -> None:
    long = client.post("/admin/v1/industries", json={"name": "\t" + "a" * 100}, headers=admin.headers)
    assert long.status_code == 422, long.text
    padded = client.post("/admin/v1/industries", json={"name": "  Retail  "}, headers=admin.headers)
    assert padded.status_code == 201 and padded.json()["name"] == "Retail"
    blank = client.post("/admin/v1/industries", json={"name": "   "}, headers=admin.headers)
    assert blank.status_code == 422 and "blank" in blank.json()["detail"]


def test_json_types_are_not_guessed(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    base = f"/admin/v1/surveys/{survey['id']}"
    cases = [
        (f"{base}/contacts", {"email": "a@example.org", "anonymous": 0}, "anonymous: true or false"),
        (f"{base}/mailings", {"name": "Wave", "reminder_days": False}, "reminder_days: a number"),
    ]
    for url, body, message in cases:
        answer = client.post(url, json=body, headers=admin.headers)
        assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    mailing = client.post(f"{base}/mailings", json={"name": "Wave"}, headers=admin.headers).json()
    send = client.post(f"{base}/mailings/{mailing['id']}/send", json={"send_at": 0}, headers=admin.headers)
    assert send.status_code == 422 and "ISO 8601" in send.json()["detail"], send.text
    # The documented types still work.
    ok = client.post(f"{base}/contacts", json={"email": "b@example.org", "anonymous": True}, headers=admin.headers)
    assert ok.status_code == 201, ok.text


def test_a_contact_keeps_text_where_null_is_sent(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    base = f"/admin/v1/surveys/{survey['id']}/contacts"
    contact = client.post(base, json={"email": "c@example.org", "name": "Cy"}, headers=admin.headers).json()
    answer = client.patch(f"{base}/{contact['id']}", json={"subgroup": None}, headers=admin.headers)
    assert answer.status_code == 422, answer.text  # was a 500 (len(None))
    cleared = client.patch(f"{base}/{contact['id']}", json={"uid": "u-1", "email": None}, headers=admin.headers)
    assert cleared.status_code == 200 and cleared.json()["email"] is None
