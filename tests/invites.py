"""Bringing someone into a workspace in tests the way the API allows: an invitation, accepted."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import PASSWORD


def invite(client: TestClient, inviter: dict[str, str], email: str, role: str = "editor") -> dict[str, Any]:
    """``POST /admin/v1/invitations`` by ``inviter`` (headers); the 201 body, with its ``secret``."""
    response = client.post("/admin/v1/invitations", json={"email": email, "role": role}, headers=inviter)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def join(
    client: TestClient, inviter: dict[str, str], email: str, role: str = "editor", password: str = PASSWORD
) -> dict[str, str]:
    """Invite ``email`` and accept with ``password`` (creating the account if it has none): the new member's
    Authorization headers in the inviter's workspace."""
    secret = invite(client, inviter, email, role)["secret"]
    accepted = client.post("/admin/v1/invitations/accept", json={"secret": secret, "password": password})
    assert accepted.status_code == 200, accepted.text
    return {"Authorization": f"Bearer {accepted.json()['access_token']}"}
