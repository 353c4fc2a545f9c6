"""allocated_survey answers from each process's copy of a supplier's inventory: every change to what a listed item
shows reaches the next call, whichever write made it, and the copy never outlives its supplier."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from invitelink.config import Settings
from invitelink.models import Supplier, Workspace
from invitelink.services import inventory
from tests.conftest import Admin, MakeSurvey
from tests.test_supply import Supply


@pytest.fixture
def supply(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> Supply:
    return Supply(client, admin, make_survey, {"USA": 2, "UK": 300})


def listing(supply: Supply, page: int = 1, per_page: int = 10) -> dict[str, Any]:
    data: dict[str, Any] = supply.data("allocated_survey", {"page": page, "per_page": per_page})
    return data


def names(supply: Supply) -> list[str]:
    return [item["name"] for item in listing(supply)["data"]]


def test_every_change_to_a_listed_survey_shows_in_the_next_call(supply: Supply, make_survey: MakeSurvey) -> None:
    client, headers = supply.client, supply.admin.headers
    base = f"/admin/v1/suppliers/{supply.supplier['id']}"
    survey_path = f"/admin/v1/surveys/{supply.survey['id']}"
    assert names(supply) == ["Healthcare Consumer Study"]
    assert names(supply) == ["Healthcare Consumer Study"]  # answered from the copy

    second = make_survey(supply.admin, status="active", title="Second study", countries=["USA"])
    allocated = client.post(f"{base}/allocations", json={"survey_id": second["public_id"]}, headers=headers)
    assert allocated.status_code == 201, allocated.text
    assert names(supply) == ["Healthcare Consumer Study", "Second study"]
    assert listing(supply)["TotalCount"] == 2

    assert client.patch(survey_path, json={"title": "Renamed study"}, headers=headers).status_code == 200
    assert names(supply) == ["Renamed study", "Second study"]

    allocation = f"{base}/allocations/{supply.allocation['id']}"
    changed = client.patch(allocation, json={"survey_limit": {"USA": 7}, "cpi": 9}, headers=headers)
    assert changed.status_code == 200, changed.text
    first = listing(supply)["data"][0]
    assert (first["survey_limit"], first["CPI"]["value"]) == ({"USA": 7}, 9)

    industry = next(
        i for i in client.get("/admin/v1/industries", headers=headers).json()["items"] if i["name"] == "Healthcare"
    )
    renamed = client.patch(f"/admin/v1/industries/{industry['id']}", json={"name": "Health"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert listing(supply)["data"][0]["industry"] == "Health"

    assert client.patch(allocation, json={"status": "paused"}, headers=headers).status_code == 200
    assert names(supply) == ["Second study"]
    assert client.patch(allocation, json={"status": "active"}, headers=headers).status_code == 200
    assert names(supply) == ["Renamed study", "Second study"]

    assert client.patch(survey_path, json={"status": "closed"}, headers=headers).status_code == 200
    assert names(supply) == ["Second study"]
    assert client.patch(survey_path, json={"status": "active"}, headers=headers).status_code == 200
    assert names(supply) == ["Renamed study", "Second study"]

    assert client.delete(f"{base}/allocations/{allocated.json()['id']}", headers=headers).status_code == 204
    assert names(supply) == ["Renamed study"]
    assert client.delete(survey_path, headers=headers).status_code == 204
    assert listing(supply) == {"success": True, "TotalCount": 0, "data": []}


def test_other_workspaces_keep_their_copy(
    supply: Supply, make_admin: Any, make_survey: MakeSurvey, app: FastAPI
) -> None:
    """A change raises only its own workspace's version: another tenant's listing stays as it was read."""

    def version(workspace_id: int) -> int:
        with app.state.database.read_sessions() as session:
            return int(session.scalar(select(Workspace.inventory_version).where(Workspace.id == workspace_id)) or 0)

    other = make_admin("other@example.org", workspace="Other lab")
    mine, theirs = version(supply.admin.workspace_id), version(other.workspace_id)
    survey_path = f"/admin/v1/surveys/{supply.survey['id']}"
    assert supply.client.patch(survey_path, json={"title": "New"}, headers=supply.admin.headers).status_code == 200
    assert version(supply.admin.workspace_id) > mine
    assert version(other.workspace_id) == theirs
    # A change that touches nothing listed (a survey nobody is allocated is still a survey: it counts) and a
    # change of something not listed at all (a supplier's name) leave the version alone.
    before = version(supply.admin.workspace_id)
    renamed = supply.client.patch(
        f"/admin/v1/suppliers/{supply.supplier['id']}", json={"name": "Renamed"}, headers=supply.admin.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert version(supply.admin.workspace_id) == before


def test_deep_pages_and_totals_come_from_the_same_list(supply: Supply, make_survey: MakeSurvey) -> None:
    base = f"/admin/v1/suppliers/{supply.supplier['id']}"
    for n in range(12):
        survey = make_survey(supply.admin, status="active", title=f"Study {n:02d}")
        allocated = supply.client.post(
            f"{base}/allocations", json={"survey_id": survey["public_id"]}, headers=supply.admin.headers
        )
        assert allocated.status_code == 201
    pages = [listing(supply, page, 5) for page in (1, 2, 3, 4)]
    assert [p["TotalCount"] for p in pages] == [13, 13, 13, 13]
    assert [len(p["data"]) for p in pages] == [5, 5, 3, 0]
    listed = [item["name"] for p in pages for item in p["data"]]
    assert listed == ["Healthcare Consumer Study", *(f"Study {n:02d}" for n in range(12))]


def test_a_revoked_key_is_refused_even_after_it_was_accepted(supply: Supply) -> None:
    assert listing(supply)["TotalCount"] == 1
    assert listing(supply)["TotalCount"] == 1  # the key is now one this process saw accepted
    keys = supply.client.get(f"/admin/v1/suppliers/{supply.supplier['id']}/keys", headers=supply.admin.headers)
    sandbox = next(k for k in keys.json() if k["environment"] == "sandbox")
    revoked = supply.client.delete(
        f"/admin/v1/suppliers/{supply.supplier['id']}/keys/{sandbox['id']}", headers=supply.admin.headers
    )
    assert revoked.status_code == 204
    for endpoint in ("allocated_survey", "get_industries", "survey_stats", "add_participant"):
        response = supply.call(endpoint, {"supplier_id": supply.sid, "pid": "p1"})
        assert response.status_code == 401, (endpoint, response.text)


def test_a_new_supplier_never_sees_a_deleted_ones_listing(
    supply: Supply, make_survey: MakeSurvey, settings: Settings
) -> None:
    """SQLite may give a deleted supplier's id to the next one created; its listing must start empty."""
    client, headers = supply.client, supply.admin.headers

    def supplier_with_key(name: str) -> tuple[dict[str, Any], str]:
        created = client.post("/admin/v1/suppliers", json={"name": name, "email": "s@example.org"}, headers=headers)
        assert created.status_code == 201, created.text
        body: dict[str, Any] = created.json()
        key = client.post(f"/admin/v1/suppliers/{body['id']}/keys", json={"environment": "sandbox"}, headers=headers)
        return body, key.json()["key"]

    def listed(key: str) -> dict[str, Any]:
        response = client.post("/sandbox/v1/allocated_survey", json={}, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    old, old_key = supplier_with_key("Old")
    allocated = client.post(
        f"/admin/v1/suppliers/{old['id']}/allocations", json={"survey_id": supply.survey["public_id"]}, headers=headers
    )
    assert allocated.status_code == 201
    assert listed(old_key)["TotalCount"] == 1
    assert client.delete(f"/admin/v1/suppliers/{old['id']}", headers=headers).status_code == 204
    new, new_key = supplier_with_key("New")
    if settings.database_url.startswith("sqlite"):
        assert new["id"] == old["id"]  # the case this test is about
    assert listed(new_key) == {"success": True, "TotalCount": 0, "data": []}


def test_pages_kept_are_bounded(supply: Supply, app: FastAPI) -> None:
    """Beyond its bound (the pages' size as JSON) the copy forgets the least recently used page, which the next call
    builds again; a page larger than the bound is never kept."""
    held = inventory.Inventories(suppliers=1, page_bytes=2)
    built: list[int] = []
    with app.state.database.read_sessions() as session:
        supplier = session.get(Supplier, supply.supplier["id"])
        assert supplier is not None

        def page(number: int) -> int:
            def build() -> int:
                built.append(number)
                return number

            return held.page(held.owner(session, supplier), 0, (number, 10), build)

        assert [page(1), page(2), page(1), page(3), page(1), page(2)] == [1, 2, 1, 3, 1, 2]
        assert built == [1, 2, 3, 2]  # each answer is 1 byte of JSON: page 2 was the least recent when 3 came
        assert [page(123), page(123)] == [123, 123]
    assert built == [1, 2, 3, 2, 123, 123]  # 3 bytes: larger than the whole bound, built each time
