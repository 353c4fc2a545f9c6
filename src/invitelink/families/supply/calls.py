"""The R4I-style supply API over the shared model: each function returns the ``data`` of R4I's documented body.

The caller (one supplier key, so one supplier and one environment) only ever sees its own allocations,
panelists and participations; sandbox and production never mix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from invitelink.families.supply.entry import security_code, sid_for, survey_link
from invitelink.models import (
    Allocation,
    Industry,
    Panelist,
    Participation,
    Supplier,
    SupplierKey,
    Survey,
    Token,
    Workspace,
)
from invitelink.security import random_code
from invitelink.services import credentials, idempotency, inventory
from invitelink.services.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from invitelink.services.fields import whole_number
from invitelink.services.identity import normalize_email
from invitelink.services.suppliers import KEY_PREFIXES, REDIRECT_COLUMNS, limits_of

MAX_PER_PAGE = 100
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
STATUS_NAMES = {"completed": "complete", "terminated": "terminate"}


@dataclass(frozen=True)
class Caller:
    supplier: Supplier
    environment: str
    inventory_version: int
    """Of the supplier's workspace, read with the key (services/inventory.py)."""


def authenticate(session: Session, key: str | None, environment: str) -> Caller:
    if not key:
        raise Unauthorized("Missing API key: send Authorization: Bearer R4I_…")
    row = session.execute(
        select(SupplierKey, Supplier, Workspace.inventory_version)
        .join(Supplier, Supplier.id == SupplierKey.supplier_id)
        .join(Workspace, Workspace.id == Supplier.workspace_id)
        .where(SupplierKey.key_digest == credentials.lookup_digest(key))
    ).first()
    if row is None or row[0].revoked_at is not None:
        raise Unauthorized("Invalid API key")
    if row[0].environment != environment:
        other = "sandbox" if environment == "production" else "production"
        raise Unauthorized(f"Invalid API key for {environment}: {KEY_PREFIXES[other]}… keys work only on /{other}/v1/")
    return Caller(supplier=row[1], environment=environment, inventory_version=row[2])


# Parameters ---------------------------------------------------------------------------------------------------


def text_param(body: dict[str, Any], name: str, *, required: bool = False, limit: int = 200) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name} is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"{name} must be a string")
    text = str(value).strip()
    if len(text) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters")
    return text


def page_params(body: dict[str, Any]) -> tuple[int, int]:
    """``page`` (from 1) and ``per_page`` (1 to 100; default 10)."""
    page = whole_number(body, "page", 1, 1_000_000)
    per_page = whole_number(body, "per_page", 1, MAX_PER_PAGE)
    return page or 1, per_page or 10


def check_supplier(caller: Caller, body: dict[str, Any]) -> None:
    """``supplier_id`` is required where R4I's API has it, and must be the key's own."""
    supplier_id = text_param(body, "supplier_id", required=True, limit=32)
    if supplier_id.upper() != caller.supplier.public_id:
        raise Forbidden("supplier_id does not belong to this API key")


# Surveys ------------------------------------------------------------------------------------------------------


def _number(value: Decimal | None) -> int | float:
    if value is None:
        return 0
    return int(value) if value == value.to_integral_value() else float(value)


def _rows(session: Session, allocation_ids: list[int]) -> list[tuple[Allocation, Survey, str | None]]:
    rows = session.execute(
        select(Allocation, Survey, Industry.name)
        .join(Survey, Survey.id == Allocation.survey_id)
        .outerjoin(Industry, Industry.id == Survey.industry_id)
        .where(Allocation.id.in_(allocation_ids))
        .order_by(Allocation.id)
    ).all()
    return [(a, s, i) for a, s, i in rows]


def _cpi(allocation: Allocation, survey: Survey) -> Decimal | None:
    return allocation.cpi_value if allocation.cpi_value is not None else survey.cpi_value


def _item(allocation: Allocation, survey: Survey, industry: str | None, limits: dict[str, int]) -> dict[str, Any]:
    return {
        "survey_id": survey.public_id,
        "name": survey.title,
        "industry": industry or "",
        "segment": survey.segment or "",
        "CPI": {"value": _number(_cpi(allocation, survey)), "currency": survey.cpi_currency},
        "survey_limit": limits,
        "IR": survey.incidence_rate or 0,
        "LOI": survey.length_of_interview or 0,
        "PII": "Yes" if survey.pii else "No",
        "status": "Active" if survey.status == "active" and allocation.status == "active" else "Inactive",
        "country": list(survey.countries or []),
        "description": survey.description,
    }


def allocated_survey(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """One page of the supplier's live allocations. The ordered ids, and pages answered before, come from the
    process's copy of the supplier's inventory, read again whenever anything listed changed (services/inventory.py):
    the total and a deep page cost what the first page does."""
    page, per_page = page_params(body)
    owner = inventory.INVENTORIES.owner(session, caller.supplier)
    live = inventory.INVENTORIES.live_ids(session, owner, caller.inventory_version)

    def build() -> list[dict[str, Any]]:
        ids = list(live[(page - 1) * per_page : page * per_page])
        limits = limits_of(session, ids)
        return [_item(a, s, i, limits[a.id]) for a, s, i in _rows(session, ids)]

    items = inventory.INVENTORIES.page(owner, caller.inventory_version, (page, per_page), build)
    return {"success": True, "TotalCount": len(live), "data": items}


def _allocated(session: Session, caller: Caller, public_id: str) -> tuple[Allocation, Survey]:
    """The caller's allocation of a survey: 404 for an unknown survey, 403 for one not allocated to it."""
    survey = session.scalar(select(Survey).where(Survey.public_id == public_id.strip().upper()))
    if survey is None or survey.workspace_id != caller.supplier.workspace_id:
        raise NotFound("Survey not found")
    allocation = session.scalar(
        select(Allocation).where(Allocation.survey_id == survey.id, Allocation.supplier_id == caller.supplier.id)
    )
    if allocation is None:
        raise Forbidden("This survey is not allocated to you")
    return allocation, survey


def _target_audience(survey: Survey) -> list[dict[str, Any]]:
    return [
        {
            "QuestionId": position,
            "QuestionKey": question.key,
            "QuestionText": question.text,
            "QuestionType": question.type,
            "QuestionCategory": question.category,
            "Options": [
                {"OptionId": number, "OptionText": option.text}
                for number, option in enumerate(question.options, start=1)
            ],
        }
        for position, question in enumerate(survey.questions, start=1)
    ]


def get_survey_by_id(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    allocation, survey = _allocated(session, caller, text_param(body, "survey_id", required=True, limit=32))
    industry = survey.industry.name if survey.industry else None
    item = _item(allocation, survey, industry, limits_of(session, [allocation.id])[allocation.id])
    country = item.pop("country")
    description = item.pop("description")
    item.update({"target_audience": _target_audience(survey), "country": country, "description": description})
    return {"success": True, "TotalCount": 1, "data": [item]}


def survey_by_date(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Allocated surveys created on the date, or created before it and active (so active on it)."""
    raw = text_param(body, "date", required=True, limit=10)
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("date must be in YYYY-MM-DD format") from None
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    ids = list(
        session.scalars(
            select(Allocation.id)
            .join(Survey, Survey.id == Allocation.survey_id)
            .where(
                Allocation.supplier_id == caller.supplier.id,
                Survey.created_at < end,
                or_(Survey.created_at >= start, and_(Survey.status == "active", Allocation.status == "active")),
            )
            .order_by(Allocation.id)
            .limit(1000)
        )
    )
    limits = limits_of(session, ids)
    items = []
    for allocation, survey, industry in _rows(session, ids):
        # R4I's by-date shape: CPI as "USD 6", countries as one string, and the date asked for.
        item = _item(allocation, survey, industry, limits[allocation.id])
        description = item.pop("description")
        item.update(
            CPI=f"{item['CPI']['currency']} {item['CPI']['value']}",
            country=", ".join(item["country"]),
            date=day.isoformat(),
            description=description,
        )
        items.append(item)
    return {"success": True, "total": len(items), "data": items}


def get_industries(session: Session, caller: Caller, _body: dict[str, Any]) -> dict[str, Any]:
    rows = session.execute(
        select(Industry.id, Industry.name)
        .where(Industry.workspace_id == caller.supplier.workspace_id)
        .order_by(Industry.id)
    ).all()
    return {"success": True, "total": len(rows), "data": [{"id": i, "name": n} for i, n in rows]}


def get_redirects(_session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    check_supplier(caller, body)
    email = text_param(body, "email", required=True, limit=254)
    if email.lower() != caller.supplier.email.lower():
        raise Forbidden("email is not the contact address registered for this supplier")
    return {"redirects": {name: getattr(caller.supplier, column) for name, column in REDIRECT_COLUMNS.items()}}


# Participants -------------------------------------------------------------------------------------------------

PROFILE_FIELDS = {
    "participant_name": 200,
    "phone": 32,
    "country": 64,
    "zipcode": 16,
    "gender": 16,
    "device": 16,
    "ethnicity": 64,
    "qualification": 64,
    "employment_status": 64,
    "income_range": 32,
}


def add_participant(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Register (or update) a panelist profile; without ``pid`` one is generated."""
    check_supplier(caller, body)
    pid = text_param(body, "pid", limit=128)
    if pid and not all("!" <= ch <= "~" for ch in pid):
        raise InvalidInput("pid must be printable ASCII without spaces")
    fields: dict[str, Any] = {name: text_param(body, name, limit=limit) for name, limit in PROFILE_FIELDS.items()}
    email = text_param(body, "email", limit=254)
    fields["email"] = normalize_email(email) if email else ""
    age = body.get("age")
    if age not in (None, ""):
        try:
            if isinstance(age, bool):
                raise ValueError
            fields["age"] = int(age)
        except (TypeError, ValueError):
            raise InvalidInput("age must be a number") from None
        if not 0 < fields["age"] < 130:
            raise InvalidInput("age must be between 1 and 129")
    if not pid:
        pid = f"R4I-{random_code(10)}"
    panelist = session.scalar(
        select(Panelist).where(
            Panelist.supplier_id == caller.supplier.id,
            Panelist.environment == caller.environment,
            Panelist.pid == pid,
        )
    )
    if panelist is None:
        panelist = Panelist(supplier_id=caller.supplier.id, environment=caller.environment, pid=pid)
        session.add(panelist)
    for name, value in fields.items():
        setattr(panelist, name, value)
    session.flush()
    return {"success": True, "message": "Participant added successfully", "pid": pid}


def view_participants(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    check_supplier(caller, body)
    page, per_page = page_params(body)
    mine = (Panelist.supplier_id == caller.supplier.id, Panelist.environment == caller.environment)
    total = session.scalar(select(func.count()).select_from(Panelist).where(*mine)) or 0
    rows = session.scalars(
        select(Panelist).where(*mine).order_by(Panelist.id).limit(per_page).offset((page - 1) * per_page)
    )
    data = [
        {
            "pid": p.pid,
            "participant_name": p.participant_name,
            "email": p.email,
            "phone": p.phone,
            "country": p.country,
            "zipcode": p.zipcode,
            "ethnicity": p.ethnicity,
            "device": p.device,
            "age": "" if p.age is None else str(p.age),
            "gender": p.gender,
            "qualification": p.qualification,
            "employment_status": p.employment_status,
            "income_range": p.income_range,
        }
        for p in rows
    ]
    return {"page": page, "per_page": per_page, "total": total, "data": data}


def generate_survey_url(
    session: Session, caller: Caller, body: dict[str, Any], public_url: str, server_secret: bytes
) -> dict[str, Any]:
    """The link, and its security code as a field of its own: clients store the code to check the links they
    build, and should not have to parse it out of the URL."""
    check_supplier(caller, body)
    _allocation, survey = _allocated(session, caller, text_param(body, "survey_id", required=True, limit=32))
    sid = sid_for(survey.public_id, caller.supplier.public_id, caller.environment)
    return {
        "survey_link": survey_link(public_url, server_secret, survey, caller.supplier, caller.environment),
        "security_code": security_code(server_secret, sid),
    }


# Stats --------------------------------------------------------------------------------------------------------


def _seconds(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def survey_stats(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Aggregates over the supplier's participations in this environment, computed by the database each time."""
    check_supplier(caller, body)
    p = Participation
    started = p.started_at.is_not(None)
    completed = p.status == "completed"
    cpi = func.coalesce(Allocation.cpi_value, Survey.cpi_value, 0)
    row = session.execute(
        select(
            func.count(p.id),
            _count_if(started),
            _count_if(completed),
            _count_if(and_(p.status == "terminated", started)),
            _count_if(and_(p.status == "quotafull", started)),
            _count_if(and_(p.status == "security", started)),
            _count_if(and_(p.status == "terminated", p.started_at.is_(None))),
            _count_if(and_(p.status == "quotafull", p.started_at.is_(None))),
            _count_if(and_(p.status == "security", p.started_at.is_(None))),
            func.avg(
                case((and_(completed, started, p.ended_at.is_not(None)), _seconds(session, p.started_at, p.ended_at)))
            ),
            func.coalesce(func.sum(case((completed, cpi), else_=0)), 0),
            _count_if(and_(completed, p.verified_at.is_not(None))),
        )
        .select_from(p)
        .join(Survey, Survey.id == p.survey_id)
        .outerjoin(Allocation, and_(Allocation.survey_id == p.survey_id, Allocation.supplier_id == p.supplier_id))
        .where(p.supplier_id == caller.supplier.id, p.environment == caller.environment)
    ).one()
    clicks, starts, completes, fails, over, quality, pre_term, pre_over, pre_quality, loi, revenue, verified = row
    return {
        "isVerified": bool(completes) and verified == completes,
        "clicks": int(clicks),
        "surveyStarts": int(starts),
        "completes": int(completes),
        "fails": int(fails),
        "overQuota": int(over),
        "qualityTerms": int(quality),
        "preSurveyTerminates": int(pre_term),
        "preSurveyOverQuota": int(pre_over),
        "preSurveyQualityTermination": int(pre_quality),
        "averageLOI": round(float(loi) / 60, 2) if loi is not None else 0,
        "revenue": _number(Decimal(str(revenue))),
        "Conversion": round(completes * 100 / clicks, 2) if clicks else 0,
    }


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime(TIME_FORMAT) if moment else None


def _participations(
    session: Session, caller: Caller, body: dict[str, Any], condition: ColumnElement[bool]
) -> dict[str, Any]:
    page, per_page = page_params(body)
    p = Participation
    where = (p.supplier_id == caller.supplier.id, p.environment == caller.environment, condition)
    total = session.scalar(select(func.count()).select_from(p).join(Survey, Survey.id == p.survey_id).where(*where))
    rows = session.execute(
        select(p, Survey.public_id, Token.code, func.coalesce(Allocation.cpi_value, Survey.cpi_value))
        .join(Survey, Survey.id == p.survey_id)
        .outerjoin(Token, Token.id == p.token_id)
        .outerjoin(Allocation, and_(Allocation.survey_id == p.survey_id, Allocation.supplier_id == p.supplier_id))
        .where(*where)
        .order_by(p.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    data = [
        {
            "participant_id": part.pid,
            "project": public_id,
            "status": STATUS_NAMES.get(part.status, part.status),
            "token": code,
            "cpi": str(_number(cpi)) if part.status == "completed" else "0",
            "ip": part.ip or "",
            "start_time": _when(part.started_at),
            "end_time": _when(part.ended_at),
            "click_at": _when(part.first_click_at),
            "verified": part.verified_at is not None,
        }
        for part, public_id, code, cpi in rows
    ]
    return {"total": int(total or 0), "page": page, "per_page": per_page, "data": data}


def survey_stats_by_id(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    check_supplier(caller, body)
    _allocation, survey = _allocated(session, caller, text_param(body, "project_id", required=True, limit=32))
    return _participations(session, caller, body, Participation.survey_id == survey.id)


def survey_stats_by_participant(session: Session, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    check_supplier(caller, body)
    pid = text_param(body, "participant_id", required=True, limit=128)
    known = session.scalar(
        select(func.count()).where(
            Participation.supplier_id == caller.supplier.id,
            Participation.environment == caller.environment,
            Participation.pid == pid,
        )
    )
    panelist = session.scalar(
        select(Panelist.id).where(
            Panelist.supplier_id == caller.supplier.id,
            Panelist.environment == caller.environment,
            Panelist.pid == pid,
        )
    )
    if not known and panelist is None:
        raise NotFound("Participant not found")
    return _participations(session, caller, body, Participation.pid == pid)


def call(session: Session, key: str | None, environment: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call of a reading endpoint or of add_participant (the only write): authenticate, then the endpoint's
    ``data``."""
    return ENDPOINTS[endpoint](session, authenticate(session, key, environment), body)


def call_write(
    session: Session,
    key: str | None,
    environment: str,
    endpoint: str,
    body: dict[str, Any],
    keyed: idempotency.Keyed | None,
) -> idempotency.Stored:
    """A writing endpoint (add_participant): its success envelope, or with an Idempotency-Key used before, the
    first answer again (recorded in the same transaction as the write)."""
    caller = authenticate(session, key, environment)
    return idempotency.once(
        session,
        idempotency.credential_of(f"supplier-key:{key}"),
        keyed,
        lambda: idempotency.Stored(
            200, {"status": "success", "message": SUCCESS, "data": ENDPOINTS[endpoint](session, caller, body)}
        ),
    )


def call_generate_survey_url(
    session: Session, key: str | None, environment: str, body: dict[str, Any], public_url: str, server_secret: bytes
) -> dict[str, Any]:
    return generate_survey_url(session, authenticate(session, key, environment), body, public_url, server_secret)


Endpoint = Callable[[Session, Caller, dict[str, Any]], dict[str, Any]]
ENDPOINTS: dict[str, Endpoint] = {
    "allocated_survey": allocated_survey,
    "get_survey_by_id": get_survey_by_id,
    "survey_by_date": survey_by_date,
    "get_industries": get_industries,
    "get_redirects": get_redirects,
    "view_participants": view_participants,
    "survey_stats": survey_stats,
    "survey_stats_by_id": survey_stats_by_id,
    "survey_stats_by_participant": survey_stats_by_participant,
    "add_participant": add_participant,
}
WRITES = frozenset({"add_participant"})
# A few indexed statements each, whatever the supplier's size: read through the batch reader (Database.read_hot).
# The others aggregate or list a supplier's participations and run in the thread pool.
HOT_READS = frozenset({"allocated_survey", "get_survey_by_id", "get_industries", "get_redirects"})
SUCCESS = "Request processed successfully"
