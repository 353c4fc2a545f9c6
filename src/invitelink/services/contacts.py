"""Contacts of a survey: single create/update and bulk import with a per-row report."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Contact, Survey
from invitelink.security import SERIAL_ALPHABET, random_code
from invitelink.services.bulk_rows import insert_rows, update_rows
from invitelink.services.errors import Conflict, DomainError, InvalidInput, get_owned, remove, save_or_conflict
from invitelink.services.identity import Features
from invitelink.services.pagination import Page, page_of

IMPORT_COLUMNS = ("email", "mobile", "uid", "name", "subgroup")
MAX_IMPORT_ROWS = 50_000
MAX_NAME = 200
MAX_SUBGROUP = 64
SERIAL_LENGTH = 10
# Contact attributes (the extra columns of an import): what a spreadsheet header holds, few enough to list in a
# message template, short enough to keep a contact row small. Breaking one refuses the whole import (400).
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_NAME = 64
MAX_ATTRIBUTE_VALUE = 1000
ATTRIBUTE_NAME = re.compile(rf"[A-Za-z0-9_ -]{{1,{MAX_ATTRIBUTE_NAME}}}")
# Delimiters a CSV export uses: comma, semicolon (Excel where the decimal separator is a comma), tab.
DELIMITERS = ",;\t"
# How much of the file the delimiter is guessed from: enough for the header and a few hundred rows.
SNIFF_CHARS = 64 * 1024


@dataclass
class ContactInput:
    email: str | None = None
    mobile: str | None = None
    uid: str | None = None
    name: str = ""
    subgroup: str = ""
    anonymous: bool = False
    attributes: dict[str, str] = field(default_factory=dict)


class AttributeLimit(InvalidInput):
    """An attribute beyond the limits: refuses the whole import rather than one row, so a file that would lose data
    (cut values, dropped columns) stores nothing."""


@dataclass
class ImportReport:
    created: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def normalize(data: ContactInput) -> ContactInput:
    """Normalised copy; raises InvalidInput naming the field that is wrong."""
    features = Features.parse(data.email, data.mobile, data.uid)
    if not features.given():
        raise InvalidInput("a contact needs an email, a mobile or a uid")
    if len(data.name) > MAX_NAME:
        raise InvalidInput(f"name is longer than {MAX_NAME} characters", field="name")
    if len(data.subgroup) > MAX_SUBGROUP:
        raise InvalidInput(f"subgroup is longer than {MAX_SUBGROUP} characters", field="subgroup")
    return ContactInput(
        features.email,
        features.mobile,
        features.uid,
        data.name.strip(),
        data.subgroup.strip(),
        data.anonymous,
        check_attributes(data.attributes),
    )


def check_attribute_name(name: str) -> str:
    if not ATTRIBUTE_NAME.fullmatch(name):
        raise AttributeLimit(
            f"attribute name {name[:80]!r} must be 1 to {MAX_ATTRIBUTE_NAME} letters, digits, '_', '-' or spaces"
        )
    return name


def check_attributes(attributes: dict[str, str]) -> dict[str, str]:
    """The non-empty attributes (an empty cell is no attribute); AttributeLimit past a limit."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise AttributeLimit(f"at most {MAX_ATTRIBUTES} attributes per contact, got {len(attributes)}")
    kept = {}
    for name, value in attributes.items():
        check_attribute_name(name)
        if len(value) > MAX_ATTRIBUTE_VALUE:
            raise AttributeLimit(f"attribute {name!r} is longer than {MAX_ATTRIBUTE_VALUE} characters")
        if value.strip():
            kept[name] = value.strip()
    return kept


# Columns of a bulk or insert-or-fetch contact insert (services/sosci.py, services/triggers.py).
CONTACT_INSERT_COLUMNS = (
    "survey_id",
    "email",
    "mobile",
    "uid",
    "subgroup",
    "anonymous",
    "name",
    "serial",
    "created_at",
)


def new_serial() -> str:
    return random_code(SERIAL_LENGTH, SERIAL_ALPHABET)


# The survey's contacts with these addresses, on PostgreSQL: one parameter however many addresses, and a nested loop
# whose inner side (kept apart by its LIMIT) is one probe of the (survey_id, email) index per address: 4 ms for 1,000
# addresses among 10,000 contacts. ``email = ANY(…)`` let a prepared statement's generic plan scan the survey's
# contacts and compare each with every address (575 ms). Either may scan the survey per address while the planner
# believes the survey small (no statistics yet), which is why contacts_by_email reads only what its insert skipped.
_EXISTING_BY_EMAIL_PG = text(
    "SELECT c.id, c.email, c.name FROM json_array_elements_text(CAST(:addresses AS json)) AS a(email) CROSS JOIN "
    "LATERAL (SELECT id, email, name FROM contacts WHERE survey_id = :survey_id AND email = a.email LIMIT 1) AS c"
)
# SQLite probes the (survey_id, email) index for each value of an IN list; chunks stay below its limit of 32,766
# bound parameters.
_SQLITE_IN_CHUNK = 5000


def _existing_by_email(conn: Connection, survey_id: int, addresses: list[str]) -> dict[str, tuple[int, str]]:
    """address -> (contact id, name) for the survey's contacts among ``addresses``."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_EXISTING_BY_EMAIL_PG, {"survey_id": survey_id, "addresses": json.dumps(addresses)})
        return {row.email: (row.id, row.name) for row in rows}
    c = Contact.__table__.c
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(addresses), _SQLITE_IN_CHUNK):
        chunk = addresses[start : start + _SQLITE_IN_CHUNK]
        rows = conn.execute(select(c.id, c.email, c.name).where(c.survey_id == survey_id, c.email.in_(chunk)))
        found.update({row.email: (row.id, row.name) for row in rows})
    return found


def contacts_by_email(conn: Connection, survey_id: int, names: Mapping[str, str], now: datetime) -> dict[str, int]:
    """The survey's contact id for each address of ``names`` (normalised address -> name), creating the missing
    contacts with that name; an existing contact takes a non-empty name that differs from its own.

    Insert first, skipping conflicts, and read back only the addresses that were skipped, so a batch of new
    recipients (the usual trigger call) is one statement and no read. The unique index decides what exists, not a
    plan: a read of 1,000 addresses chose, while the table had no statistics, to scan every contact of the survey
    for each address (0.8 s per call at 6,000 contacts). On PostgreSQL a skipped row still draws an id, so an
    existing recipient uses one contact id per call, as each recipient of each call uses a token and a delivery id.
    Rows go in address order: two calls inserting overlapping batches take the unique index's locks in the same
    order instead of deadlocking. A skipped address that is not found lost on its random person code, not its
    address: it is inserted again with a new one.
    """
    ids: dict[str, int] = {}
    existing: dict[str, tuple[int, str]] = {}
    pending = sorted(names)
    fixed = {"survey_id": survey_id, "subgroup": "", "anonymous": False, "created_at": now}
    for _attempt in range(3):
        if not pending:
            break
        inserted = insert_rows(
            conn,
            Contact,
            ("email", "name", "serial"),
            [(address, names[address], new_serial()) for address in pending],
            fixed,
            returning=("id", "email"),
            skip_conflicts=True,
        )
        ids.update({row.email: row.id for row in inserted})
        skipped = [address for address in pending if address not in ids]
        if skipped:
            existing.update(_existing_by_email(conn, survey_id, skipped))
        pending = [address for address in skipped if address not in existing]
    if pending:
        raise RuntimeError("could not create the contacts")
    renamed = [
        (contact_id, names[address])
        for address, (contact_id, name) in existing.items()
        if names[address] and names[address] != name
    ]
    if renamed:
        update_rows(conn, Contact, "id", ("name",), renamed)
    return ids | {address: contact_id for address, (contact_id, _name) in existing.items()}


def get_contact(session: Session, survey: Survey, contact_id: int) -> Contact:
    return get_owned(session, Contact, contact_id, "contact not found", survey_id=survey.id)


def _new_contact(survey: Survey, data: ContactInput) -> Contact:
    """A contact from normalised input; anonymous contacts get no person code."""
    return Contact(
        survey_id=survey.id,
        email=data.email,
        mobile=data.mobile,
        uid=data.uid,
        name=data.name,
        subgroup=data.subgroup,
        anonymous=data.anonymous,
        serial=None if data.anonymous else new_serial(),
        attributes=data.attributes or None,
    )


def create_contact(session: Session, survey: Survey, data: ContactInput) -> Contact:
    contact = _new_contact(survey, normalize(data))
    save_or_conflict(session, contact, "a contact with this email, mobile or uid exists in this survey")
    return contact


def update_contact(session: Session, contact: Contact, changes: dict[str, Any]) -> Contact:
    merged = ContactInput(
        email=changes.get("email", contact.email),
        mobile=changes.get("mobile", contact.mobile),
        uid=changes.get("uid", contact.uid),
        name=changes.get("name", contact.name),
        subgroup=changes.get("subgroup", contact.subgroup),
        anonymous=contact.anonymous,
    )
    data = normalize(merged)
    contact.email, contact.mobile, contact.uid = data.email, data.mobile, data.uid
    contact.name, contact.subgroup = data.name, data.subgroup
    save_or_conflict(session, contact, "another contact of this survey has this email, mobile or uid")
    return contact


def sniff_delimiter(text: str) -> str:
    """The file's delimiter among DELIMITERS. csv.Sniffer guesses from how consistently a character splits the
    lines; when it cannot decide (one column, a single line) or picks a character the header does not contain, the
    one the header line holds most of wins, and a header without any is one column (comma)."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only: a cut line would mislead the count
    header = sample.split("\n", 1)[0]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = ""
    if sniffed and sniffed in header:
        return sniffed
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows of a CSV (comma, semicolon or tab separated) whose header names some of IMPORT_COLUMNS; the other
    columns are the contacts' attributes (row["attributes"]). InvalidInput on a malformed file."""
    if "\x00" in text:
        raise InvalidInput("the file contains NUL bytes, so it is not CSV text: export it as CSV (UTF-8)")
    text = text.removeprefix("\ufeff")  # Excel's "CSV UTF-8" starts with a byte order mark
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text), strict=True)
    try:
        header = reader.fieldnames
        if not header:
            raise InvalidInput("CSV is empty: the first line must name the columns, e.g. email,name")
        names = [h.strip() for h in header]
        header = [n.lower() if n.lower() in IMPORT_COLUMNS else n for n in names]
        if not {"email", "mobile", "uid"} & set(header):
            # No row of such a file could name a contact: a file exported without its header line, or not CSV.
            raise InvalidInput(
                f"the first line must name the columns, with at least one of email, mobile, uid (found {names[:5]})"
            )
        duplicates = sorted({n for n in header if header.count(n) > 1})
        if duplicates:
            raise InvalidInput(f"CSV column(s) named twice: {', '.join(map(repr, duplicates))}")
        extra = [n for n in header if n not in IMPORT_COLUMNS]
        if len(extra) > MAX_ATTRIBUTES:
            raise AttributeLimit(f"at most {MAX_ATTRIBUTES} attribute columns besides {', '.join(IMPORT_COLUMNS)}")
        for name in extra:
            if name:  # a nameless column is allowed while empty (spreadsheets export trailing separators)
                check_attribute_name(name)
        reader.fieldnames = header
        rows = []
        for row in reader:
            known: dict[Any, Any] = {k: v for k, v in row.items() if k is None or k in IMPORT_COLUMNS}
            attributes = {k: v for k, v in row.items() if k is not None and k not in IMPORT_COLUMNS and v}
            if "" in attributes:
                raise InvalidInput(f"line {reader.line_num} has a value in a column without a name")
            if attributes:
                known["attributes"] = attributes
            rows.append(known)
        return rows
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV at line {reader.line_num}: {exc}") from exc


def parse_json(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from exc
    if isinstance(data, dict) and "contacts" in data:
        data = data["contacts"]
    if not isinstance(data, list):
        raise InvalidInput('JSON import takes a list of contacts or {"contacts": [...]}')
    # A CSV row is always a row; a JSON item that is not an object is a malformed request, refused whole.
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise InvalidInput(
                f"item {number} is not an object: each contact is {{email, mobile, uid, name, subgroup}}"
            )
    return data


def _row_input(row: Any) -> ContactInput:
    if not isinstance(row, dict):
        raise InvalidInput("a row must be an object with email, mobile, uid, name, subgroup")
    if None in row:
        raise InvalidInput("row has more fields than the header")
    unknown = [k for k in row if k not in IMPORT_COLUMNS and k != "attributes"]
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(map(str, unknown))}")
    attributes = row.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise InvalidInput("attributes must be an object of strings", field="attributes")
    values: dict[str, str] = {}
    for key in IMPORT_COLUMNS:
        value = row.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"{key} must be a string", field=key)
        values[key] = value
    return normalize(
        ContactInput(
            email=values.get("email") or None,
            mobile=values.get("mobile") or None,
            uid=values.get("uid") or None,
            name=values.get("name", ""),
            subgroup=values.get("subgroup", ""),
            attributes=attributes,
        )
    )


def import_contacts(session: Session, survey: Survey, rows: list[Any]) -> ImportReport:
    """Store every valid new row; rows already in the survey are skipped; invalid rows are reported.

    Row numbers count data rows from 1 (a CSV's header is not a row).
    """
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidInput(f"at most {MAX_IMPORT_ROWS} rows per import; split the file")
    report = ImportReport()
    valid: list[tuple[ContactInput, list[tuple[str, str]]]] = []
    seen: dict[tuple[str, str], int] = {}
    for number, row in enumerate(rows, start=1):
        try:
            data = _row_input(row)
        except AttributeLimit as exc:
            raise AttributeLimit(f"row {number}: {exc.message}", field=exc.field) from exc
        except DomainError as exc:
            report.errors.append({"row": number, "field": exc.field, "error": exc.message})
            continue
        keys = Features(data.email, data.mobile, data.uid).given()
        duplicate = next((seen[k] for k in keys if k in seen), None)
        if duplicate is not None:
            report.errors.append({"row": number, "field": None, "error": f"duplicate of row {duplicate}"})
            continue
        seen.update({k: number for k in keys})
        valid.append((data, keys))

    existing = _existing_keys(session, survey.id, seen)
    new_contacts = []
    for data, keys in valid:
        if any(key in existing for key in keys):
            report.skipped += 1
            continue
        new_contacts.append(_new_contact(survey, data))
    session.add_all(new_contacts)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("contacts changed during the import; run it again (existing rows are skipped)") from exc
    report.created = len(new_contacts)
    return report


def _existing_keys(session: Session, survey_id: int, keys: dict[tuple[str, str], int]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    by_field: dict[str, list[str]] = {"email": [], "mobile": [], "uid": []}
    for name, value in keys:
        by_field[name].append(value)
    chunk = 500  # stays under SQLite's bound-parameter limit
    for name, values in by_field.items():
        column = getattr(Contact, name)
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            rows = session.execute(
                select(column).where(Contact.survey_id == survey_id, or_(column.in_(part)))
            ).scalars()
            found.update((name, v) for v in rows)
    return found


def list_contacts(session: Session, survey: Survey, cursor: str | None, limit: int, email: str | None) -> Page[Contact]:
    """The survey's contacts, optionally only the one with ``email``."""
    where = [Contact.survey_id == survey.id]
    if email:
        where.append(Contact.email == email.strip().lower())
    return page_of(session, Contact, cursor, limit, *where)


def delete_contact(session: Session, survey: Survey, contact_id: int) -> None:
    remove(session, get_contact(session, survey, contact_id))
