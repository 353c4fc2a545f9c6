"""Panel suppliers as admins manage them: the supplier, its API keys per environment, its allocations of surveys
with per-country limits, and the redirect-signing secret."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.models import Allocation, Question, QuestionOption, Quota, Supplier, SupplierKey, Survey
from invitelink.security import derive_key, random_code
from invitelink.services import credentials
from invitelink.services.errors import InvalidInput, NotFound, get_owned, remove, save_or_conflict
from invitelink.services.pagination import Page, page_of

KEY_PREFIXES = {"sandbox": "R4I_TEST_", "production": "R4I_LIVE_"}
PUBLIC_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
REDIRECTS = ("success", "terminate", "quotafull", "security_check")
REDIRECT_COLUMNS = {
    "success": "redirect_success",
    "terminate": "redirect_terminate",
    "quotafull": "redirect_quotafull",
    "security_check": "redirect_security",
}


def hmac_secret(server_secret: bytes, supplier: Supplier) -> str:
    """The key of the supplier's redirect signatures: derived from the server secret, the supplier and a version
    (bumped to rotate), so it is never stored and every instance computes the same one."""
    key = derive_key(server_secret, f"supplier-redirect:{supplier.id}:{supplier.hmac_key_version}")
    return "shs_" + key.hex()


def create_supplier(session: Session, workspace_id: int, fields: dict[str, Any]) -> Supplier:
    for _attempt in range(5):
        public_id = f"R4I-S-{random_code(4, PUBLIC_ID_ALPHABET)}-{random_code(4, PUBLIC_ID_ALPHABET)}"
        if session.scalar(select(Supplier.id).where(Supplier.public_id == public_id)) is None:
            break
    supplier = Supplier(workspace_id=workspace_id, public_id=public_id, **fields)
    save_or_conflict(session, supplier, "could not allocate a supplier id; try again")
    return supplier


def get_supplier(session: Session, workspace_id: int, supplier_id: int) -> Supplier:
    return get_owned(session, Supplier, supplier_id, "supplier not found", workspace_id=workspace_id)


def rotate_hmac_secret(session: Session, supplier: Supplier) -> None:
    supplier.hmac_key_version += 1
    session.flush()


def create_key(session: Session, supplier: Supplier, environment: str) -> tuple[SupplierKey, str]:
    """A new API key (returned once; only the digest is stored). R4I_TEST_… for sandbox, R4I_LIVE_… production."""
    if environment not in KEY_PREFIXES:
        raise InvalidInput("environment must be sandbox or production", field="environment")
    secret = credentials.issue(KEY_PREFIXES[environment], 24, shown=14)
    key = SupplierKey(supplier_id=supplier.id, environment=environment, prefix=secret.shown, key_digest=secret.digest)
    session.add(key)
    session.flush()
    return key, secret.secret


def get_key(session: Session, supplier: Supplier, key_id: int) -> SupplierKey:
    return get_owned(session, SupplierKey, key_id, "key not found", supplier_id=supplier.id)


def revoke_key(session: Session, key: SupplierKey) -> None:
    credentials.revoke(session, key)


def _survey_by_public_id(session: Session, workspace_id: int, public_id: str) -> Survey:
    survey = session.scalar(select(Survey).where(Survey.public_id == public_id.strip().upper()))
    if survey is None or survey.workspace_id != workspace_id:
        raise InvalidInput("survey_id: no survey with this PROJ- id in the workspace", field="survey_id")
    return survey


def _set_limits(session: Session, allocation: Allocation, limits: dict[str, int]) -> None:
    # Deleted as objects, not with one DELETE statement, so the inventory listener sees whose limits changed.
    for quota in session.scalars(select(Quota).where(Quota.allocation_id == allocation.id)):
        session.delete(quota)
    session.flush()
    for country, limit in limits.items():
        if limit < 0:
            raise InvalidInput(f"survey_limit.{country} must not be negative", field="survey_limit")
        session.add(Quota(allocation_id=allocation.id, country=country.strip(), limit=limit))
    session.flush()


def create_allocation(
    session: Session,
    supplier: Supplier,
    survey_public_id: str,
    cpi: Decimal | None,
    status: str,
    limits: dict[str, int],
) -> tuple[Allocation, Survey]:
    survey = _survey_by_public_id(session, supplier.workspace_id, survey_public_id)
    allocation = Allocation(supplier_id=supplier.id, survey_id=survey.id, cpi_value=cpi, status=status)
    save_or_conflict(session, allocation, "this survey is already allocated to the supplier", field="survey_id")
    _set_limits(session, allocation, limits)
    return allocation, survey


def get_allocation(session: Session, supplier: Supplier, allocation_id: int) -> tuple[Allocation, Survey]:
    row = session.execute(
        select(Allocation, Survey)
        .join(Survey, Survey.id == Allocation.survey_id)
        .where(Allocation.id == allocation_id, Allocation.supplier_id == supplier.id)
    ).first()
    if row is None:
        raise NotFound("allocation not found")
    return row[0], row[1]


def update_allocation(session: Session, allocation: Allocation, fields: dict[str, Any]) -> None:
    limits = fields.pop("survey_limit", None)
    for name, value in fields.items():
        setattr(allocation, name, value)
    if limits is not None:
        _set_limits(session, allocation, limits)
    session.flush()


def limits_of(session: Session, allocation_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per-country limits of several allocations in one query."""
    result: dict[int, dict[str, int]] = {i: {} for i in allocation_ids}
    if allocation_ids:
        rows = session.execute(
            select(Quota.allocation_id, Quota.country, Quota.limit)
            .where(Quota.allocation_id.in_(allocation_ids))
            .order_by(Quota.allocation_id, Quota.id)
        )
        for allocation_id, country, limit in rows:
            result[allocation_id][country] = limit
    return result


def check_redirect(name: str, url: str) -> str:
    """A redirect template must be an http(s) URL; ``{uid}`` and ``{hmac}`` are filled when it is used."""
    url = url.strip()
    if url and not url.lower().startswith(("https://", "http://")):
        raise InvalidInput(f"redirects.{name} must be an http(s) URL", field=f"redirects.{name}")
    if url and "{uid}" not in url:
        raise InvalidInput(f"redirects.{name} must contain {{uid}}, where the participant's PID goes")
    return url


def list_suppliers(session: Session, workspace_id: int, cursor: str | None, limit: int) -> Page[Supplier]:
    return page_of(session, Supplier, cursor, limit, Supplier.workspace_id == workspace_id)


def update_supplier(session: Session, supplier: Supplier, fields: dict[str, Any]) -> Supplier:
    """Set the given columns (name, email, redirect columns)."""
    for column, value in fields.items():
        setattr(supplier, column, value)
    session.flush()
    return supplier


def delete_supplier(session: Session, workspace_id: int, supplier_id: int) -> None:
    remove(session, get_supplier(session, workspace_id, supplier_id))


def list_keys(session: Session, supplier: Supplier) -> list[SupplierKey]:
    return list(
        session.scalars(select(SupplierKey).where(SupplierKey.supplier_id == supplier.id).order_by(SupplierKey.id))
    )


MAX_ALLOCATIONS_LISTED = 1000


def list_allocations(session: Session, supplier: Supplier) -> list[tuple[Allocation, str, dict[str, int]]]:
    """The supplier's first allocations, oldest first, each with its survey's PROJ- id and its country limits."""
    rows = session.execute(
        select(Allocation, Survey.public_id)
        .join(Survey, Survey.id == Allocation.survey_id)
        .where(Allocation.supplier_id == supplier.id)
        .order_by(Allocation.id)
        .limit(MAX_ALLOCATIONS_LISTED)
    ).all()
    limits = limits_of(session, [allocation.id for allocation, _ in rows])  # one query for the whole list
    return [(allocation, public_id, limits[allocation.id]) for allocation, public_id in rows]


def delete_allocation(session: Session, supplier: Supplier, allocation_id: int) -> None:
    remove(session, get_allocation(session, supplier, allocation_id)[0])


def replace_questions(session: Session, survey: Survey, questions: list[dict[str, Any]]) -> list[Question]:
    """The survey's targeting questions become ``questions`` (key, text, type, category, options), in order."""
    keys = [q["key"] for q in questions]
    if len(set(keys)) != len(keys):
        raise InvalidInput("question keys must be unique within the survey")
    survey.questions.clear()
    session.flush()
    for position, item in enumerate(questions):
        options = [QuestionOption(position=i, text=text) for i, text in enumerate(item["options"])]
        survey.questions.append(
            Question(
                position=position,
                key=item["key"],
                text=item["text"],
                type=item["type"],
                category=item["category"],
                options=options,
            )
        )
    session.flush()
    return list(survey.questions)
