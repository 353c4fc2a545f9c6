"""Survey results for admins: each participation with its response and the invitation's metadata."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from invitelink.models import Contact, Participation, Supplier, Token
from invitelink.services.pagination import Page, paginate


def results_stmt(survey_id: int) -> Select[tuple[Participation, Token, Supplier, Contact]]:
    """Participations of a survey with their token, supplier and contact (each may be NULL: outer joins)."""
    return (
        select(Participation, Token, Supplier, Contact)
        .outerjoin(Token, Token.id == Participation.token_id)
        .outerjoin(Supplier, Supplier.id == Participation.supplier_id)
        .outerjoin(Contact, Contact.id == Token.contact_id)
        .where(Participation.survey_id == survey_id)
    )


def contact_identity(contact: Contact | None) -> dict[str, Any] | None:
    """Who the participant is: null for anonymous contacts, serial codes and supplier traffic."""
    if contact is None or contact.anonymous:
        return None
    return {"id": contact.id, "email": contact.email, "mobile": contact.mobile, "uid": contact.uid}


def result_item(
    participation: Participation, token: Token | None, supplier: Supplier | None, contact: Contact | None = None
) -> dict[str, Any]:
    """The pinned result shape: metadata shows only once the participant completed (hidden until then)."""
    completed = participation.status == "completed"
    return {
        "contact": contact_identity(contact),
        "id": participation.id,
        "token": token.code if token else None,
        "status": participation.status,
        "clicked_at": participation.first_click_at,
        "click_count": participation.click_count,
        "started_at": participation.started_at,
        "completed_at": participation.ended_at if completed else None,
        "ended_at": participation.ended_at,
        "response": participation.response,
        "metadata": participation.meta if completed else None,
        "environment": participation.environment,
        "supplier_id": supplier.public_id if supplier else None,
        "pid": participation.pid,
    }


def list_results(
    session: Session, survey_id: int, cursor: str | None, limit: int
) -> Page[tuple[Participation, Token | None, Supplier | None, Contact | None]]:
    """A page of the survey's participations with their token, supplier and contact, oldest first."""
    return paginate(session, results_stmt(survey_id), Participation.id, cursor, limit)


CSV_COLUMNS = (
    "id",
    "token",
    "status",
    "clicked_at",
    "click_count",
    "started_at",
    "completed_at",
    "ended_at",
    "contact_id",
    "email",
    "mobile",
    "uid",
    "environment",
    "supplier_id",
    "pid",
    "metadata",
    "response",
    "attributes",  # the contact's import attributes as one JSON object; empty where the contact is not shown
)
CSV_BATCH = 1000


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def results_csv(sessions: sessionmaker[Session], survey_id: int) -> Iterator[str]:
    """Every result of the survey as CSV text (header first), in constant memory: batches of CSV_BATCH rows by
    keyset, each read in a short transaction of its own, so an export of any size holds one batch at a time and
    no transaction stays open while the client reads."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    after = 0
    while True:
        with sessions() as session:
            rows = session.execute(
                results_stmt(survey_id).where(Participation.id > after).order_by(Participation.id).limit(CSV_BATCH)
            ).all()
            for row in rows:
                item = result_item(*row)
                contact = item.pop("contact") or {}
                item.update(
                    {"contact_id": contact.get("id"), **{k: contact.get(k) for k in ("email", "mobile", "uid")}}
                )
                if contact:  # not for anonymous contacts: attributes could name the person
                    item["attributes"] = row[3].attributes or None
                writer.writerow([_csv_value(item.get(column)) for column in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < CSV_BATCH:
            return
        after = rows[-1][0].id
