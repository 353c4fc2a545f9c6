"""Contacts of a survey: single CRUD and bulk import (CSV or JSON) with a per-row report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import ContactIn, ContactOut, ContactPatch, ImportReportOut, Page
from invitelink.services import contacts
from invitelink.services.errors import InvalidInput
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/surveys/{survey_id}/contacts", tags=["contacts"], route_class=AdminRoute)

IMPORT_DOC = """Send the file as `text/csv`, as `application/json` (a list of contacts, or `{"contacts": [...]}`),
or as a multipart upload in field `file` (.csv or .json). CSV: UTF-8 (a BOM is fine), separated by `,`, `;` or
tabs, a header line naming some of `email, mobile, uid, name, subgroup`; other columns become the contacts'
`attributes` (`{{attr.name}}` in messages; JSON rows: an `attributes` object of strings). At most 50 attributes,
names of 1-64 characters `[A-Za-z0-9_ -]`, values of 1,000 characters; past these the whole import is refused (400).
Every valid new row is stored; rows whose email, mobile or uid is already
a contact of the survey are skipped; invalid rows are listed with their row number (data rows count from 1)
and do not stop the others. At most 50,000 rows and 10 MiB per call."""


@router.get("", response_model=Page[ContactOut], summary="List contacts")
def list_contacts(
    survey: ReadableSurvey,
    db: Db,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    email: Annotated[str | None, Query(max_length=254)] = None,
) -> Page[ContactOut]:
    page = contacts.list_contacts(db, survey, cursor, limit, email)
    return Page(items=[ContactOut.model_validate(c) for c in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=ContactOut, status_code=201, summary="Add a contact")
def create_contact(body: ContactIn, survey: WritableSurvey, db: Db) -> ContactOut:
    data = contacts.ContactInput(**body.model_dump())
    return ContactOut.model_validate(contacts.create_contact(db, survey, data))


@router.post(
    "/import",
    response_model=ImportReportOut,
    summary="Bulk import contacts from CSV or JSON",
    description=IMPORT_DOC,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}, "example": "email,name\na@example.com,Ann\n"},
                "application/json": {
                    "schema": {"type": "array", "items": {"type": "object"}},
                    "example": [{"email": "a@example.com", "name": "Ann"}, {"uid": "customer-4711"}],
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
            },
        }
    },
)
async def import_contacts(request: Request, survey: WritableSurvey, db: Db) -> ImportReportOut:
    text, kind = await _read_import(request)
    rows: list[Any] = contacts.parse_json(text) if kind == "json" else contacts.parse_csv(text)
    report = await run_in_threadpool(contacts.import_contacts, db, survey, rows)
    return ImportReportOut.model_validate(report, from_attributes=True)


async def _read_import(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("multipart import needs the file in field 'file'", field="file")
        raw = await upload.read()
        name = (upload.filename or "").lower()
        kind = "json" if name.endswith(".json") or upload.content_type == "application/json" else "csv"
    elif content_type in ("text/csv", "application/csv", "text/plain"):
        raw, kind = await request.body(), "csv"
    elif content_type == "application/json":
        raw, kind = await request.body(), "json"
    else:
        raise InvalidInput("send text/csv, application/json or a multipart upload in field 'file'")
    try:
        return raw.decode("utf-8-sig"), kind
    except UnicodeDecodeError as exc:
        raise InvalidInput("the file must be UTF-8 encoded; re-save it as UTF-8 and try again") from exc


@router.get("/{contact_id}", response_model=ContactOut, summary="Get a contact")
def get_contact(contact_id: int, survey: ReadableSurvey, db: Db) -> ContactOut:
    return ContactOut.model_validate(contacts.get_contact(db, survey, contact_id))


@router.patch("/{contact_id}", response_model=ContactOut, summary="Update a contact")
def update_contact(contact_id: int, body: ContactPatch, survey: WritableSurvey, db: Db) -> ContactOut:
    contact = contacts.get_contact(db, survey, contact_id)
    return ContactOut.model_validate(contacts.update_contact(db, contact, body.model_dump(exclude_unset=True)))


@router.delete("/{contact_id}", status_code=204, summary="Delete a contact, its links and deliveries")
def delete_contact(contact_id: int, survey: WritableSurvey, db: Db) -> Response:
    contacts.delete_contact(db, survey, contact_id)
    return Response(status_code=204)
