"""No credential of one workspace reads or changes another's objects: 404, so existence is not revealed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Admin, MakeAdmin, MakeSurvey


def test_other_workspace_objects_are_404_everywhere(
    client: TestClient, make_admin: MakeAdmin, make_survey: MakeSurvey
) -> None:
    alice: Admin = make_admin()
    mallory: Admin = make_admin()
    survey = make_survey(alice)
    sid = survey["id"]
    contact = client.post(
        f"/admin/v1/surveys/{sid}/contacts", json={"email": "p@example.org"}, headers=alice.headers
    ).json()
    mailing = client.post(f"/admin/v1/surveys/{sid}/mailings", json={"name": "wave"}, headers=alice.headers).json()
    industry = client.post("/admin/v1/industries", json={"name": "Retail"}, headers=alice.headers).json()
    member_id = client.get("/admin/v1/members", headers=alice.headers).json()["items"][0]["id"]
    h = mallory.headers
    attempts = {
        "get survey": client.get(f"/admin/v1/surveys/{sid}", headers=h),
        "patch survey": client.patch(f"/admin/v1/surveys/{sid}", json={"title": "pwned"}, headers=h),
        "delete survey": client.delete(f"/admin/v1/surveys/{sid}", headers=h),
        "rotate secret": client.post(f"/admin/v1/surveys/{sid}/callback-secret", headers=h),
        "results": client.get(f"/admin/v1/surveys/{sid}/results", headers=h),
        "list contacts": client.get(f"/admin/v1/surveys/{sid}/contacts", headers=h),
        "get contact": client.get(f"/admin/v1/surveys/{sid}/contacts/{contact['id']}", headers=h),
        "add contact": client.post(f"/admin/v1/surveys/{sid}/contacts", json={"uid": "x"}, headers=h),
        "import": client.post(
            f"/admin/v1/surveys/{sid}/contacts/import",
            content="uid\nx\n",
            headers={**h, "Content-Type": "text/csv"},
        ),
        "get mailing": client.get(f"/admin/v1/surveys/{sid}/mailings/{mailing['id']}", headers=h),
        "serial codes": client.post(f"/admin/v1/surveys/{sid}/serial-codes", json={"count": 1}, headers=h),
        "industry": client.patch(f"/admin/v1/industries/{industry['id']}", json={"name": "x"}, headers=h),
        "member": client.patch(f"/admin/v1/members/{member_id}", json={"role": "viewer"}, headers=h),
    }
    assert {name: r.status_code for name, r in attempts.items()} == {name: 404 for name in attempts}
    # Lists show only one's own objects.
    assert client.get("/admin/v1/surveys", headers=h).json()["items"] == []
    assert client.get("/admin/v1/industries", headers=h).json()["items"] == []
    # And nothing changed.
    assert client.get(f"/admin/v1/surveys/{sid}", headers=alice.headers).json()["title"] == survey["title"]
    assert len(client.get(f"/admin/v1/surveys/{sid}/contacts", headers=alice.headers).json()["items"]) == 1
    assert client.get("/admin/v1/members", headers=alice.headers).json()["items"][0]["role"] == "owner"


def test_survey_cannot_point_at_another_workspaces_industry(
    client: TestClient, make_admin: MakeAdmin, make_survey: MakeSurvey
) -> None:
    alice: Admin = make_admin()
    bob: Admin = make_admin()
    theirs = client.post("/admin/v1/industries", json={"name": "Energy"}, headers=bob.headers).json()
    survey = make_survey(alice)
    response = client.patch(
        f"/admin/v1/surveys/{survey['id']}", json={"industry_id": theirs["id"]}, headers=alice.headers
    )
    assert response.status_code == 400
    assert response.json()["field"] == "industry_id"
