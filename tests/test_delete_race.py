"""A change that loses a race with a delete of the same row answers 404, not 500.

On PostgreSQL a request can change a contact while another deletes it (directly, or through its survey). The
loser has already loaded the row when its UPDATE finds it gone; SQLAlchemy says so with StaleDataError, which every
family answers as 404. SQLite runs one writer at a time (the write seam), so there the loser simply does not find
the row."""

from __future__ import annotations

import json

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm.exc import StaleDataError

from invitelink.api.errors import storage_failure
from invitelink.db import make_engine, make_sessionmaker
from invitelink.families.registry import FAMILIES
from invitelink.models import Contact, Survey
from invitelink.services import contacts
from tests.conftest import Admin, MakeSurvey


def test_a_change_to_a_row_deleted_meanwhile_meets_stale_data_and_answers_404(
    db_url: str, client: TestClient, admin: Admin, make_survey: MakeSurvey
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers: the second delete does not find the row (a plain 404)")
    survey = make_survey(admin)
    base = f"/admin/v1/surveys/{survey['id']}/contacts"
    contact = client.post(base, json={"email": "race@example.org"}, headers=admin.headers).json()
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with sessions() as loser, sessions() as winner:
        row = loser.get(Survey, survey["id"])
        loaded = loser.get(Contact, contact["id"])  # loaded (and held: the identity map is weak), as a request does
        assert row is not None and loaded is not None
        winner.execute(text("DELETE FROM contacts WHERE id = :id"), {"id": contact["id"]})
        winner.commit()
        with pytest.raises(StaleDataError) as raised:
            contacts.update_contact(loser, loaded, {"name": "Late"})
    engine.dispose()

    request = Request({"type": "http", "method": "PATCH", "path": f"{base}/{contact['id']}", "headers": []})
    for family in FAMILIES:
        answer = storage_failure(request, raised.value, family.render_error)
        assert answer.status_code == 404, family.name
        assert "deleted meanwhile" in json.dumps(json.loads(bytes(answer.body))), family.name
