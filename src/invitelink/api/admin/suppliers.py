"""Panel suppliers (admins manage them and their keys), allocations of surveys to them (editors), and the targeting
questions of a survey."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import EmailStr, Field, StringConstraints

from invitelink.api.admin.deps import Admin, CurrentPrincipal, Db, Editor, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Country, Input, Name, NotBlank, Output, Page, Strip
from invitelink.api.deps import SettingsDep
from invitelink.config import Settings
from invitelink.models import Allocation, Question, Supplier
from invitelink.outbound import check_url_now
from invitelink.services import suppliers
from invitelink.services.pagination import DEFAULT_LIMIT

router = APIRouter(prefix="/suppliers", tags=["suppliers"], route_class=AdminRoute)
questions_router = APIRouter(prefix="/surveys/{survey_id}/questions", tags=["suppliers"], route_class=AdminRoute)
Url = Annotated[str, StringConstraints(max_length=2000), Strip]


class Redirects(Input):
    success: Url = Field(default="", examples=["https://partner.example/r?status=C&uid={uid}&hmac={hmac}"])
    terminate: Url = ""
    quotafull: Url = ""
    security_check: Url = ""


PostbackUrl = Annotated[
    Url,
    Field(
        description="Where each final outcome of the supplier's participants (completed, terminated, quotafull, "
        "security) is POSTed server to server, as the event's JSON, with `webhook-id`, `webhook-timestamp` and "
        "`x-invitelink-signature: sha256=<hex HMAC-SHA256 of the body, keyed with hmac_secret>`; retried like "
        "webhooks. Empty: none. Must be http(s); an address written in it must be public, and a name must "
        "resolve to public addresses only when each postback is sent.",
        examples=["https://partner.example/postback"],
    ),
]


class SupplierIn(Input):
    name: Name
    email: EmailStr = Field(description="The supplier's contact address; get_redirects asks for it.")
    redirects: Redirects = Field(default_factory=Redirects)
    postback_url: PostbackUrl = ""


class SupplierPatch(Input):
    name: Name | None = None
    email: EmailStr | None = None
    redirects: Redirects | None = None
    postback_url: PostbackUrl | None = None


class SupplierOut(Output):
    id: int
    public_id: str = Field(description="R4I-S-XXXX-XXXX: the supplier_id of the supply API.")
    name: str
    email: str
    redirects: Redirects
    postback_url: str
    created_at: datetime


class SupplierSecret(SupplierOut):
    hmac_secret: str = Field(
        description="Key of the supplier's redirect signatures ({hmac}: hex HMAC-SHA256 of the redirect URL with "
        "{uid} filled and hmac= empty). Shown at creation and rotation only; give it to the supplier."
    )


def supplier_out(supplier: Supplier) -> SupplierOut:
    redirects = Redirects(**{name: getattr(supplier, column) for name, column in suppliers.REDIRECT_COLUMNS.items()})
    return SupplierOut(
        id=supplier.id,
        public_id=supplier.public_id,
        name=supplier.name,
        email=supplier.email,
        redirects=redirects,
        postback_url=supplier.postback_url,
        created_at=supplier.created_at,
    )


def _redirect_fields(redirects: Redirects) -> dict[str, str]:
    return {
        suppliers.REDIRECT_COLUMNS[name]: suppliers.check_redirect(name, url)
        for name, url in redirects.model_dump().items()
    }


def _postback_url(url: str, settings: Settings) -> str:
    # Without resolving the name: this runs in the admin transaction, which must not wait on DNS.
    return check_url_now(url, allow_private=settings.webhook_allow_private) if url.strip() else ""


def _with_secret(supplier: Supplier, settings: Settings) -> SupplierSecret:
    return SupplierSecret(
        **supplier_out(supplier).model_dump(), hmac_secret=suppliers.hmac_secret(settings.server_secret, supplier)
    )


@router.get("", response_model=Page[SupplierOut], summary="List suppliers")
def list_suppliers(
    principal: CurrentPrincipal, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[SupplierOut]:
    page = suppliers.list_suppliers(db, principal.workspace_id, cursor, limit)
    return Page(items=[supplier_out(s) for s in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=SupplierSecret, status_code=201, summary="Create a supplier (admins)")
def create_supplier(body: SupplierIn, principal: Admin, db: Db, settings: SettingsDep) -> SupplierSecret:
    supplier = suppliers.create_supplier(
        db,
        principal.workspace_id,
        {
            "name": body.name,
            "email": str(body.email),
            "postback_url": _postback_url(body.postback_url, settings),
            **_redirect_fields(body.redirects),
        },
    )
    return _with_secret(supplier, settings)


@router.get("/{supplier_id}", response_model=SupplierOut, summary="Get a supplier")
def get_supplier(supplier_id: int, principal: CurrentPrincipal, db: Db) -> SupplierOut:
    return supplier_out(suppliers.get_supplier(db, principal.workspace_id, supplier_id))


@router.patch(
    "/{supplier_id}", response_model=SupplierOut, summary="Update a supplier's name, e-mail, redirects or postback URL"
)
def update_supplier(
    supplier_id: int, body: SupplierPatch, principal: Admin, db: Db, settings: SettingsDep
) -> SupplierOut:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    fields: dict[str, str] = {}
    if body.name is not None:
        fields["name"] = body.name
    if body.email is not None:
        fields["email"] = str(body.email)
    if body.redirects is not None:
        fields.update(_redirect_fields(body.redirects))
    if body.postback_url is not None:
        fields["postback_url"] = _postback_url(body.postback_url, settings)
    return supplier_out(suppliers.update_supplier(db, supplier, fields))


@router.delete("/{supplier_id}", status_code=204, summary="Delete a supplier with its keys and allocations")
def delete_supplier(supplier_id: int, principal: Admin, db: Db) -> Response:
    suppliers.delete_supplier(db, principal.workspace_id, supplier_id)
    return Response(status_code=204)


@router.post(
    "/{supplier_id}/hmac-secret",
    response_model=SupplierSecret,
    summary="Rotate the redirect-signing secret (the old one stops verifying at once)",
)
def rotate_hmac_secret(supplier_id: int, principal: Admin, db: Db, settings: SettingsDep) -> SupplierSecret:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    suppliers.rotate_hmac_secret(db, supplier)
    return _with_secret(supplier, settings)


# Keys ---------------------------------------------------------------------------------------------------------


class KeyIn(Input):
    environment: Literal["sandbox", "production"]


class KeyOut(Output):
    id: int
    environment: str
    prefix: str
    revoked_at: datetime | None
    created_at: datetime


class KeyCreated(KeyOut):
    key: str = Field(description="R4I_TEST_… (sandbox) or R4I_LIVE_… (production). Shown once.")


@router.get("/{supplier_id}/keys", response_model=list[KeyOut], summary="List a supplier's API keys (never the keys)")
def list_keys(supplier_id: int, principal: CurrentPrincipal, db: Db) -> list[KeyOut]:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    return [KeyOut.model_validate(k) for k in suppliers.list_keys(db, supplier)]


@router.post("/{supplier_id}/keys", response_model=KeyCreated, status_code=201, summary="Create an API key (admins)")
def create_key(supplier_id: int, body: KeyIn, principal: Admin, db: Db) -> KeyCreated:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    key, secret = suppliers.create_key(db, supplier, body.environment)
    return KeyCreated(**KeyOut.model_validate(key).model_dump(), key=secret)


@router.delete("/{supplier_id}/keys/{key_id}", status_code=204, summary="Revoke an API key (401 from now on)")
def revoke_key(supplier_id: int, key_id: int, principal: Admin, db: Db) -> Response:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    suppliers.revoke_key(db, suppliers.get_key(db, supplier, key_id))
    return Response(status_code=204)


# Allocations --------------------------------------------------------------------------------------------------

Limits = Annotated[
    dict[Country, Annotated[int, Field(ge=0, le=10_000_000)]],
    Field(
        max_length=300,
        description="Per-country limit of participants admitted (in progress or completed); over it, entrants go "
        "to the quotafull redirect.",
        examples=[{"USA": 100, "UK": 50}],
    ),
]
AllocationStatus = Literal["active", "paused", "closed"]
Cpi = Annotated[Decimal, Field(ge=0, le=100_000, max_digits=10, decimal_places=2)]


class AllocationIn(Input):
    survey_id: Annotated[str, StringConstraints(max_length=16), Strip] = Field(
        examples=["PROJ-94AECB65"], description="The survey's public PROJ- id."
    )
    cpi: Cpi | None = Field(default=None, description="CPI for this supplier; default: the survey's.")
    status: AllocationStatus = "active"
    survey_limit: Limits = Field(default_factory=dict)


class AllocationPatch(Input):
    cpi: Cpi | None = None
    status: AllocationStatus | None = None
    survey_limit: Limits | None = None


class AllocationOut(Output):
    id: int
    survey_id: str
    cpi: Decimal | None
    status: str
    survey_limit: dict[str, int]
    created_at: datetime


def allocation_out(allocation: Allocation, public_id: str, limits: dict[str, int]) -> AllocationOut:
    return AllocationOut(
        id=allocation.id,
        survey_id=public_id,
        cpi=allocation.cpi_value,
        status=allocation.status,
        survey_limit=limits,
        created_at=allocation.created_at,
    )


def one_allocation_out(db: Db, allocation: Allocation, public_id: str) -> AllocationOut:
    return allocation_out(allocation, public_id, suppliers.limits_of(db, [allocation.id])[allocation.id])


@router.get(
    "/{supplier_id}/allocations",
    response_model=list[AllocationOut],
    summary="List a supplier's allocations",
    description="The first 1,000, oldest first.",
)
def list_allocations(supplier_id: int, principal: CurrentPrincipal, db: Db) -> list[AllocationOut]:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    return [allocation_out(*row) for row in suppliers.list_allocations(db, supplier)]


@router.post("/{supplier_id}/allocations", response_model=AllocationOut, status_code=201, summary="Allocate a survey")
def create_allocation(supplier_id: int, body: AllocationIn, principal: Editor, db: Db) -> AllocationOut:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    allocation, survey = suppliers.create_allocation(
        db, supplier, body.survey_id, body.cpi, body.status, body.survey_limit
    )
    return one_allocation_out(db, allocation, survey.public_id)


@router.patch(
    "/{supplier_id}/allocations/{allocation_id}",
    response_model=AllocationOut,
    summary="Change an allocation's CPI, status or country limits",
)
def update_allocation(
    supplier_id: int, allocation_id: int, body: AllocationPatch, principal: Editor, db: Db
) -> AllocationOut:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    allocation, survey = suppliers.get_allocation(db, supplier, allocation_id)
    fields = body.model_dump(exclude_unset=True)
    if "cpi" in fields:
        fields["cpi_value"] = fields.pop("cpi")
    if fields.get("status") is None:
        fields.pop("status", None)
    suppliers.update_allocation(db, allocation, fields)
    return one_allocation_out(db, allocation, survey.public_id)


@router.delete("/{supplier_id}/allocations/{allocation_id}", status_code=204, summary="Withdraw an allocation")
def delete_allocation(supplier_id: int, allocation_id: int, principal: Editor, db: Db) -> Response:
    supplier = suppliers.get_supplier(db, principal.workspace_id, supplier_id)
    suppliers.delete_allocation(db, supplier, allocation_id)
    return Response(status_code=204)


# Targeting questions ------------------------------------------------------------------------------------------


class QuestionIn(Input):
    key: Annotated[str, StringConstraints(min_length=1, max_length=64), NotBlank] = Field(examples=["AGE_RANGE"])
    text: Annotated[str, StringConstraints(min_length=1, max_length=500), NotBlank] = Field(
        examples=["What is your age range?"]
    )
    type: Annotated[str, StringConstraints(min_length=1, max_length=64), NotBlank] = Field(examples=["Numeric Range"])
    category: Annotated[str, StringConstraints(max_length=64), Strip] = Field(default="", examples=["Demographic"])
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=200), NotBlank]] = Field(
        default_factory=list, max_length=200, examples=[["23 - 35"]]
    )


class QuestionOut(Output):
    key: str
    text: str
    type: str
    category: str
    options: list[str]


def _questions_out(questions: list[Question]) -> list[QuestionOut]:
    return [
        QuestionOut(key=q.key, text=q.text, type=q.type, category=q.category, options=[o.text for o in q.options])
        for q in questions
    ]


@questions_router.get("", response_model=list[QuestionOut], summary="The survey's targeting questions")
def list_questions(survey: ReadableSurvey) -> list[QuestionOut]:
    return _questions_out(list(survey.questions))


@questions_router.put(
    "",
    response_model=list[QuestionOut],
    summary="Replace the survey's targeting questions (shown to suppliers as target_audience)",
)
def replace_questions(
    body: Annotated[list[QuestionIn], Field(max_length=100)], survey: WritableSurvey, db: Db
) -> list[QuestionOut]:
    return _questions_out(suppliers.replace_questions(db, survey, [item.model_dump() for item in body]))
