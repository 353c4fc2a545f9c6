"""Panel suppliers as admins manage them: the supplier, its API keys per environment, its allocations of surveys
with per-country limits, and the redirect-signing secret."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from invitelink.models import Allocation, Quota, Supplier, SupplierKey, Survey, utcnow
from invitelink.security import derive_key, digest, new_secret, random_code
from invitelink.services.errors import InvalidInput, NotFound, get_owned, save_or_conflict

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
    secret = new_secret(KEY_PREFIXES[environment], 24)
    key = SupplierKey(supplier_id=supplier.id, environment=environment, prefix=secret[:14], key_digest=digest(secret))
    session.add(key)
    session.flush()
    return key, secret


def get_key(session: Session, supplier: Supplier, key_id: int) -> SupplierKey:
    return get_owned(session, SupplierKey, key_id, "key not found", supplier_id=supplier.id)


def revoke_key(session: Session, key: SupplierKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()


def _survey_by_public_id(session: Session, workspace_id: int, public_id: str) -> Survey:
    survey = session.scalar(select(Survey).where(Survey.public_id == public_id.strip().upper()))
    if survey is None or survey.workspace_id != workspace_id:
        raise InvalidInput("survey_id: no survey with this PROJ- id in the workspace", field="survey_id")
    return survey


def _set_limits(session: Session, allocation: Allocation, limits: dict[str, int]) -> None:
    session.execute(delete(Quota).where(Quota.allocation_id == allocation.id))
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
