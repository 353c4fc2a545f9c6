"""Admin login, sessions, roles."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from invitelink.models import AdminSession, User, utcnow
from invitelink.security import digest
from tests.conftest import PASSWORD, Admin, MakeAdmin, MakeSurvey
from tests.invites import join


def test_password_login_returns_a_token_that_works_and_is_stored_as_digest(
    client: TestClient, admin: Admin, db: Session
) -> None:
    me = client.get("/admin/v1/auth/me", headers=admin.headers)
    assert me.status_code == 200
    assert me.json()["user"]["email"] == admin.email
    assert me.json()["role"] == "owner"
    assert me.json()["workspace"]["id"] == admin.workspace_id
    stored = db.scalars(select(AdminSession.token_digest)).all()
    assert digest(admin.token) in stored
    assert admin.token not in stored
    user = db.scalar(select(User).where(User.email == admin.email))
    assert user is not None and user.password_hash.startswith("$argon2id$")


def test_wrong_password_and_unknown_user_are_refused_alike(client: TestClient, admin: Admin) -> None:
    wrong = client.post("/admin/v1/auth/token", data={"username": admin.email, "password": "nope-nope"})
    unknown = client.post("/admin/v1/auth/token", data={"username": "x@example.org", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "incorrect e-mail or password"}


def test_email_is_case_insensitive_at_login(client: TestClient, admin: Admin) -> None:
    response = client.post("/admin/v1/auth/token", data={"username": admin.email.upper(), "password": PASSWORD})
    assert response.status_code == 200


def test_logout_revokes_the_token(client: TestClient, admin: Admin) -> None:
    assert client.post("/admin/v1/auth/logout", headers=admin.headers).status_code == 204
    response = client.get("/admin/v1/auth/me", headers=admin.headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_refused(client: TestClient, admin: Admin, db: Session) -> None:
    db.execute(update(AdminSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert client.get("/admin/v1/auth/me", headers=admin.headers).status_code == 401


def test_missing_and_garbage_tokens_are_401(client: TestClient, admin: Admin) -> None:
    assert client.get("/admin/v1/surveys").status_code == 401
    assert client.get("/admin/v1/surveys", headers={"Authorization": "Bearer ilk_garbage"}).status_code == 401


def test_viewer_reads_but_cannot_change_anything(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    viewer = join(client, admin.headers, "viewer@example.org", "viewer")
    assert client.get(f"/admin/v1/surveys/{survey['id']}", headers=viewer).status_code == 200
    attempts = [
        client.post(
            "/admin/v1/surveys",
            json={"title": "x", "questionnaire_url": "https://q.example.org"},
            headers=viewer,
        ),
        client.patch(f"/admin/v1/surveys/{survey['id']}", json={"title": "y"}, headers=viewer),
        client.delete(f"/admin/v1/surveys/{survey['id']}", headers=viewer),
        client.post(f"/admin/v1/surveys/{survey['id']}/contacts", json={"email": "a@example.org"}, headers=viewer),
        client.post(f"/admin/v1/surveys/{survey['id']}/mailings", json={"name": "m"}, headers=viewer),
        client.post(f"/admin/v1/surveys/{survey['id']}/serial-codes", json={"count": 1}, headers=viewer),
        client.post("/admin/v1/industries", json={"name": "Retail"}, headers=viewer),
        client.post("/admin/v1/members", json={"email": "z@example.org", "role": "viewer"}, headers=viewer),
        client.post("/admin/v1/invitations", json={"email": "z@example.org", "role": "viewer"}, headers=viewer),
        client.patch("/admin/v1/workspace", json={"name": "mine"}, headers=viewer),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    assert client.get(f"/admin/v1/surveys/{survey['id']}", headers=admin.headers).json()["title"] == survey["title"]


def test_members_roles_and_the_last_owner(client: TestClient, admin: Admin) -> None:
    as_admin = join(client, admin.headers, "ed@example.org", "admin")
    members = client.get("/admin/v1/members", headers=admin.headers).json()["items"]
    editor = next(m for m in members if m["user"]["email"] == "ed@example.org")
    # An admin cannot make owners.
    made_owner = client.patch(f"/admin/v1/members/{editor['id']}", json={"role": "owner"}, headers=as_admin)
    assert made_owner.status_code == 403
    members = client.get("/admin/v1/members", headers=admin.headers).json()["items"]
    owner_id = next(m["id"] for m in members if m["role"] == "owner")
    # The only owner can neither be demoted nor removed.
    assert (
        client.patch(f"/admin/v1/members/{owner_id}", json={"role": "viewer"}, headers=admin.headers).status_code == 409
    )
    assert client.delete(f"/admin/v1/members/{owner_id}", headers=admin.headers).status_code == 409
    # Removing a member ends their sessions in this workspace.
    assert client.delete(f"/admin/v1/members/{editor['id']}", headers=admin.headers).status_code == 204
    assert client.get("/admin/v1/auth/me", headers=as_admin).status_code == 401


def test_workspace_switch_needs_membership(client: TestClient, admin: Admin, make_admin: MakeAdmin) -> None:
    created = client.post("/admin/v1/workspaces", json={"name": "Second"}, headers=admin.headers)
    assert created.status_code == 201
    switched = client.post(f"/admin/v1/workspaces/{created.json()['id']}/token", headers=admin.headers)
    assert switched.status_code == 200
    token = switched.json()["access_token"]
    me = client.get("/admin/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["workspace"]["name"] == "Second"
    other = make_admin()
    assert client.post(f"/admin/v1/workspaces/{other.workspace_id}/token", headers=admin.headers).status_code == 404
    names = [w["name"] for w in client.get("/admin/v1/workspaces", headers=admin.headers).json()]
    assert names == ["Lab", "Second"]
