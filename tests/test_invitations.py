"""Members join a workspace only by accepting an invitation, and inviting tells nothing about who has an account."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import argon2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from invitelink.models import MemberInvitation, User, utcnow
from invitelink.security import digest
from invitelink.services.invitations import MAX_WRONG_PASSWORDS
from tests.conftest import PASSWORD, Admin, MakeAdmin
from tests.invites import invite, join

ACCEPT = "/admin/v1/invitations/accept"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def member_emails(client: TestClient, admin: Admin) -> set[str]:
    items = client.get("/admin/v1/members", headers=admin.headers).json()["items"]
    return {m["user"]["email"] for m in items}


def workspace_ids(client: TestClient, headers: dict[str, str]) -> set[int]:
    return {w["id"] for w in client.get("/admin/v1/workspaces", headers=headers).json()}


def login(client: TestClient, email: str, workspace_id: int, password: str = PASSWORD) -> Any:
    return client.post(
        "/admin/v1/auth/token",
        data={"username": email, "password": password, "scope": f"workspace:{workspace_id}"},
    )


def test_an_invited_account_is_no_member_until_it_accepts(client: TestClient, make_admin: MakeAdmin) -> None:
    alice, bob = make_admin(), make_admin()
    created = client.post("/admin/v1/invitations", json={"email": bob.email, "role": "editor"}, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending" and created.json()["secret"].startswith("ilinv_")
    # Invited, not joined: not on the member list, not among bob's workspaces, no login there.
    assert bob.email not in member_emails(client, alice)
    assert alice.workspace_id not in workspace_ids(client, bob.headers)
    assert login(client, bob.email, alice.workspace_id).status_code == 401

    accepted = client.post(ACCEPT, json={"secret": created.json()["secret"]}, headers=bob.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["workspace_id"] == alice.workspace_id and accepted.json()["role"] == "editor"
    me = client.get("/admin/v1/auth/me", headers=bearer(accepted.json()["access_token"])).json()
    assert me["workspace"]["id"] == alice.workspace_id and me["user"]["email"] == bob.email and me["role"] == "editor"
    members = client.get("/admin/v1/members", headers=alice.headers).json()["items"]
    assert {m["user"]["email"]: m["role"] for m in members}[bob.email] == "editor"
    assert alice.workspace_id in workspace_ids(client, bob.headers)
    shown = client.get(f"/admin/v1/invitations/{created.json()['id']}", headers=alice.headers).json()
    assert shown["status"] == "accepted" and shown["accepted_at"] is not None
    assert client.get("/admin/v1/invitations", headers=alice.headers).json()["items"] == []


def test_an_existing_account_accepts_with_its_password(client: TestClient, make_admin: MakeAdmin) -> None:
    alice, bob = make_admin(), make_admin()
    secret = invite(client, alice.headers, bob.email, "viewer")["secret"]
    accepted = client.post(ACCEPT, json={"secret": secret, "password": PASSWORD})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == "viewer"
    assert login(client, bob.email, alice.workspace_id).status_code == 200
    # bob kept his password and his own workspace.
    assert bob.workspace_id in workspace_ids(client, bob.headers)


def test_a_new_person_creates_the_account_by_accepting(client: TestClient, admin: Admin, db: Session) -> None:
    secret = invite(client, admin.headers, "New.Person@Example.org", "admin")["secret"]
    assert db.scalar(select(User).where(User.email == "new.person@example.org")) is None
    short = client.post(ACCEPT, json={"secret": secret, "password": "short"})
    assert short.status_code == 422 and "password" in short.json()["detail"]
    accepted = client.post(ACCEPT, json={"secret": secret, "password": "a long passphrase"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == "admin" and accepted.json()["workspace_id"] == admin.workspace_id
    db.rollback()  # a new snapshot: the read above began one
    user = db.scalar(select(User).where(User.email == "new.person@example.org"))
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert login(client, "new.person@example.org", admin.workspace_id, "a long passphrase").status_code == 200
    assert "new.person@example.org" in member_emails(client, admin)


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 hash or verification the process computes (the real ones still run)."""
    calls: list[str] = []
    for name in ("hash", "verify"):
        real = getattr(argon2.PasswordHasher, name)

        def counted(self: argon2.PasswordHasher, *args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(argon2.PasswordHasher, name, counted)
    return calls


@pytest.fixture
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app sends, on every engine of its database."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    engines = {app.state.database.engine, app.state.database.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    yield sent
    for engine in engines:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.parametrize("path", ["/admin/v1/invitations", "/admin/v1/members"])
def test_known_and_unknown_addresses_get_the_same_answer(
    client: TestClient,
    make_admin: MakeAdmin,
    argon2_calls: list[str],
    statements: list[str],
    path: str,
) -> None:
    """Was (POST /admin/v1/members): 201 and a member for an address with an account, 404 "no account for …"
    without one."""
    alice, bob = make_admin(), make_admin()
    unknown = "nobody-here@example.org"
    argon2_calls.clear()  # the two logins above
    answers, sql = [], []
    for email in (bob.email, unknown):
        statements.clear()
        answers.append(client.post(path, json={"email": email, "role": "editor"}, headers=alice.headers))
        sql.append(list(statements))
    known_answer, unknown_answer = answers
    assert known_answer.status_code == unknown_answer.status_code == 201
    assert set(known_answer.headers) == set(unknown_answer.headers)
    known, other = known_answer.json(), unknown_answer.json()
    assert known.keys() == other.keys()
    varying = {"id", "email", "secret", "created_at", "expires_at"}
    assert {k: v for k, v in known.items() if k not in varying} == {k: v for k, v in other.items() if k not in varying}
    # No oracle in how the answer is computed either: no password work, and the same statements, on both paths.
    assert argon2_calls == []
    assert sql[0] == sql[1]


def test_adding_an_account_of_another_workspace_by_email_alone_makes_no_member(
    client: TestClient, make_admin: MakeAdmin
) -> None:
    """Was: POST /admin/v1/members with another workspace's account's e-mail made it a member at once."""
    alice, bob = make_admin(), make_admin()
    added = client.post("/admin/v1/members", json={"email": bob.email, "role": "admin"}, headers=alice.headers)
    assert bob.email not in member_emails(client, alice)
    assert alice.workspace_id not in workspace_ids(client, bob.headers)
    assert login(client, bob.email, alice.workspace_id).status_code == 401
    # What it does instead: an invitation, which bob may accept or not.
    assert added.status_code == 201, added.text
    assert added.json()["status"] == "pending" and added.json()["secret"].startswith("ilinv_")
    # Nor can the admin pick a password for an address (that was how new accounts were made).
    with_password = {"email": "someone@example.org", "role": "editor", "password": PASSWORD}
    assert client.post("/admin/v1/members", json=with_password, headers=alice.headers).status_code == 422


def test_the_secret_is_stored_as_its_digest_only(client: TestClient, admin: Admin, db: Session) -> None:
    created = invite(client, admin.headers, "colleague@example.org")
    row = db.get(MemberInvitation, created["id"])
    assert row is not None and row.token_digest == digest(created["secret"])
    assert created["secret"] not in {str(v) for v in vars(row).values()}
    listed = client.get("/admin/v1/invitations", headers=admin.headers).json()["items"]
    assert [i["id"] for i in listed] == [created["id"]] and "secret" not in listed[0]
    assert "secret" not in client.get(f"/admin/v1/invitations/{created['id']}", headers=admin.headers).json()


def test_expired_used_revoked_and_unknown_invitations_are_refused(
    client: TestClient, admin: Admin, db: Session
) -> None:
    expired = invite(client, admin.headers, "late@example.org")
    db.execute(
        update(MemberInvitation)
        .where(MemberInvitation.id == expired["id"])
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.commit()
    refused = client.post(ACCEPT, json={"secret": expired["secret"], "password": PASSWORD})
    assert refused.status_code == 409 and "expired" in refused.json()["detail"]
    assert refused.json()["field"] == "secret"

    used = invite(client, admin.headers, "once@example.org")
    assert client.post(ACCEPT, json={"secret": used["secret"], "password": PASSWORD}).status_code == 200
    again = client.post(ACCEPT, json={"secret": used["secret"], "password": PASSWORD})
    assert again.status_code == 409 and "already been accepted" in again.json()["detail"]

    revoked = invite(client, admin.headers, "changed-mind@example.org")
    assert client.delete(f"/admin/v1/invitations/{revoked['id']}", headers=admin.headers).status_code == 204
    assert client.delete(f"/admin/v1/invitations/{revoked['id']}", headers=admin.headers).status_code == 204
    gone = client.post(ACCEPT, json={"secret": revoked["secret"], "password": PASSWORD})
    assert gone.status_code == 409 and "revoked" in gone.json()["detail"]
    # An accepted invitation is history: the member is removed as a member.
    assert client.delete(f"/admin/v1/invitations/{used['id']}", headers=admin.headers).status_code == 409

    unknown = client.post(ACCEPT, json={"secret": "ilinv_" + "x" * 43, "password": PASSWORD})
    assert unknown.status_code == 404 and unknown.json()["field"] == "secret"
    # None of them made a member; only the accepted one did.
    assert member_emails(client, admin) == {admin.email, "once@example.org"}
    statuses = {
        i: client.get(f"/admin/v1/invitations/{i}", headers=admin.headers).json()["status"]
        for i in (expired["id"], used["id"], revoked["id"])
    }
    assert statuses == {expired["id"]: "expired", used["id"]: "accepted", revoked["id"]: "revoked"}
    assert client.get("/admin/v1/invitations", headers=admin.headers).json()["items"] == []


def test_inviting_again_replaces_the_pending_invitation(client: TestClient, admin: Admin) -> None:
    first = invite(client, admin.headers, "twice@example.org", "viewer")
    second = invite(client, admin.headers, "twice@example.org", "editor")
    refused = client.post(ACCEPT, json={"secret": first["secret"], "password": PASSWORD})
    assert refused.status_code == 409 and "revoked" in refused.json()["detail"]
    assert [i["id"] for i in client.get("/admin/v1/invitations", headers=admin.headers).json()["items"]] == [
        second["id"]
    ]
    accepted = client.post(ACCEPT, json={"secret": second["secret"], "password": PASSWORD})
    assert accepted.status_code == 200 and accepted.json()["role"] == "editor"
    member = client.post("/admin/v1/invitations", json={"email": "TWICE@example.org"}, headers=admin.headers)
    assert member.status_code == 409 and member.json() == {
        "detail": "twice@example.org is already a member of this workspace",
        "field": "email",
    }


def test_wrong_passwords_are_counted_and_revoke_the_invitation(
    client: TestClient, make_admin: MakeAdmin, db: Session
) -> None:
    alice, bob = make_admin(), make_admin()
    created = invite(client, alice.headers, bob.email)
    for _ in range(MAX_WRONG_PASSWORDS):
        wrong = client.post(ACCEPT, json={"secret": created["secret"], "password": "not his password"})
        assert wrong.status_code == 401 and wrong.json() == {"detail": "incorrect password for the invited account"}
    # The limit is reached: even the right password is refused now, and the invitation is no longer pending.
    locked = client.post(ACCEPT, json={"secret": created["secret"], "password": PASSWORD})
    assert locked.status_code == 409 and "too many wrong passwords" in locked.json()["detail"]
    assert client.get("/admin/v1/invitations", headers=alice.headers).json()["items"] == []
    assert bob.email not in member_emails(client, alice)
    row = db.get(MemberInvitation, created["id"])
    assert row is not None and row.failed_attempts == MAX_WRONG_PASSWORDS and row.revoked_at is not None


def test_accepting_needs_the_invited_account(client: TestClient, make_admin: MakeAdmin) -> None:
    alice, bob, mallory = make_admin(), make_admin(), make_admin()
    secret = invite(client, alice.headers, bob.email)["secret"]
    # Logged in as someone else: the secret alone is not enough.
    other = client.post(ACCEPT, json={"secret": secret}, headers=mallory.headers)
    assert other.status_code == 403 and other.json()["field"] == "secret"
    nobody = client.post(ACCEPT, json={"secret": secret})
    assert nobody.status_code == 401 and nobody.headers["www-authenticate"] == "Bearer"
    both = client.post(ACCEPT, json={"secret": secret, "password": PASSWORD}, headers=bob.headers)
    assert both.status_code == 400 and both.json()["field"] == "password"
    garbage = client.post(ACCEPT, json={"secret": secret}, headers=bearer("ilk_garbage"))
    assert garbage.status_code == 401
    assert member_emails(client, alice) == {alice.email}
    # Still usable by bob.
    assert client.post(ACCEPT, json={"secret": secret}, headers=bob.headers).status_code == 200


def test_another_workspaces_invitations_are_404(client: TestClient, make_admin: MakeAdmin) -> None:
    alice, mallory = make_admin(), make_admin()
    created = invite(client, alice.headers, "colleague@example.org")
    path = f"/admin/v1/invitations/{created['id']}"
    assert client.get(path, headers=mallory.headers).status_code == 404
    assert client.delete(path, headers=mallory.headers).status_code == 404
    assert client.get("/admin/v1/invitations", headers=mallory.headers).json()["items"] == []
    assert client.get(path, headers=alice.headers).json()["status"] == "pending"
    # Still usable, and it joins alice's workspace, never mallory's.
    accepted = client.post(ACCEPT, json={"secret": created["secret"], "password": PASSWORD})
    assert accepted.json()["workspace_id"] == alice.workspace_id
    assert "colleague@example.org" not in member_emails(client, mallory)


def test_a_replayed_invitation_create_carries_no_secret(client: TestClient, admin: Admin) -> None:
    headers = {**admin.headers, "Idempotency-Key": "invite-colleague-1"}
    body = {"email": "colleague@example.org", "role": "viewer"}
    first = client.post("/admin/v1/invitations", json=body, headers=headers)
    second = client.post("/admin/v1/invitations", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert first.json()["secret"].startswith("ilinv_") and second.json()["secret"] is None
    assert {**first.json(), "secret": None} == second.json()
    # One invitation, and the replay did not replace it: the first secret still works.
    assert len(client.get("/admin/v1/invitations", headers=admin.headers).json()["items"]) == 1
    assert client.post(ACCEPT, json={"secret": first.json()["secret"], "password": PASSWORD}).status_code == 200


def test_viewers_and_editors_cannot_invite_and_admins_cannot_make_owners(client: TestClient, admin: Admin) -> None:
    pending = invite(client, admin.headers, "pending@example.org")
    owner_invite = invite(client, admin.headers, "future-owner@example.org", "owner")
    for role in ("viewer", "editor"):
        h = join(client, admin.headers, f"{role}@example.org", role)
        attempts = [
            client.post("/admin/v1/invitations", json={"email": "x@example.org", "role": "viewer"}, headers=h),
            client.post("/admin/v1/members", json={"email": "x@example.org", "role": "viewer"}, headers=h),
            client.get("/admin/v1/invitations", headers=h),
            client.get(f"/admin/v1/invitations/{pending['id']}", headers=h),
            client.delete(f"/admin/v1/invitations/{pending['id']}", headers=h),
        ]
        assert [r.status_code for r in attempts] == [403] * len(attempts), role
    as_admin = join(client, admin.headers, "admin@example.org", "admin")
    made_owner = client.post(
        "/admin/v1/invitations", json={"email": "y@example.org", "role": "owner"}, headers=as_admin
    )
    assert made_owner.status_code == 403
    assert client.delete(f"/admin/v1/invitations/{owner_invite['id']}", headers=as_admin).status_code == 403
    assert invite(client, as_admin, "helper@example.org", "editor")["invited_by"]["email"] == "admin@example.org"
    pending_ids = {i["id"] for i in client.get("/admin/v1/invitations", headers=admin.headers).json()["items"]}
    assert {pending["id"], owner_invite["id"]} <= pending_ids
    assert "x@example.org" not in member_emails(client, admin)


def test_openapi_documents_the_invitation_operations(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in [
        ("/admin/v1/invitations", "post"),
        ("/admin/v1/invitations", "get"),
        ("/admin/v1/invitations/{invitation_id}", "get"),
        ("/admin/v1/invitations/{invitation_id}", "delete"),
        ("/admin/v1/invitations/accept", "post"),
    ]:
        operation = paths[path][method]
        assert operation["summary"] and operation["tags"] == ["members"], path
    assert paths["/admin/v1/members"]["post"]["deprecated"] is True
    accept = paths["/admin/v1/invitations/accept"]["post"]
    assert {"401", "403", "404", "409"} <= set(accept["responses"])
    components = schema["components"]["schemas"]
    assert components["InvitationAccept"]["examples"] and components["InvitationCreated"]["examples"]
