"""Request and response models of the admin API, with the limits they enforce."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import cache
from types import UnionType
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from invitelink.api.params import no_nul
from invitelink.services.accounts import MIN_PASSWORD_LENGTH
from invitelink.services.errors import InvalidInput
from invitelink.services.fields import check_single_line
from invitelink.services.invitations import DEFAULT_DAYS as INVITATION_DEFAULT_DAYS
from invitelink.services.invitations import MAX_DAYS as INVITATION_MAX_DAYS

T = TypeVar("T")


def _one_line(value: str) -> str:
    """Names, titles and subjects go into mail headers: a line break there cannot be encoded (or splits the
    header), so they are refused where they come in (422) rather than failing a delivery later."""
    try:
        return check_single_line(value, "text")
    except InvalidInput as exc:
        raise ValueError(exc.message.removeprefix("text ")) from None


OneLine = AfterValidator(_one_line)


def _not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


# Surrounding whitespace is dropped after the length is checked on the value as sent, which is what the OpenAPI
# document's maxLength promises (pydantic's strip_whitespace strips first, so a longer value got in).
Strip = AfterValidator(str.strip)
NotBlank = AfterValidator(_not_blank)
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), NotBlank, OneLine]
ShortText = Annotated[str, StringConstraints(max_length=300), OneLine]
PersonName = Annotated[str, StringConstraints(max_length=200), OneLine]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Role = Literal["owner", "admin", "editor", "viewer"]
SurveyStatus = Literal["draft", "active", "closed"]
OutcomeVerification = Literal["browser", "callback"]
Country = Annotated[str, StringConstraints(min_length=1, max_length=64), NotBlank]


def _is_number(annotation: Any) -> bool:
    """``int``, ``Decimal`` or ``float``, also inside ``Annotated``, ``X | None`` or ``list[X]``, but not where a
    boolean is a valid value too."""
    origin = get_origin(annotation)
    if origin is Annotated or origin is list:
        return _is_number(get_args(annotation)[0])
    if origin in (Union, UnionType):
        members = get_args(annotation)
        return bool not in members and any(_is_number(member) for member in members)
    return annotation in (int, float, Decimal)


def _is_only(kind: type) -> Callable[[Any], bool]:
    """Whether an annotation is ``kind``, also inside ``Annotated`` or ``X | None``."""

    def check(annotation: Any) -> bool:
        if get_origin(annotation) is Annotated:
            return check(get_args(annotation)[0])
        if get_origin(annotation) in (Union, UnionType):
            return all(check(member) or member is type(None) for member in get_args(annotation))
        return annotation is kind

    return check


_is_datetime = _is_only(datetime)
_is_bool = _is_only(bool)


@cache
def _fields_of(model: type[BaseModel], kind: Callable[[Any], bool]) -> frozenset[str]:
    return frozenset(name for name, field in model.model_fields.items() if kind(field.annotation))


class Input(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored, and NUL
    characters, which PostgreSQL cannot store (SQLite would, so the engines would differ)."""

    model_config = ConfigDict(extra="forbid")

    _no_nul = model_validator(mode="before")(no_nul)

    @model_validator(mode="before")
    @classmethod
    def _documented_json_types(cls, data: Any) -> Any:
        """pydantic's lax mode (which the JSON dates and decimals of these bodies need) reads ``true`` as 1, ``0``
        as false and a number as seconds since 1970: a client that sent another JSON type than the documented one
        sent a mistake, which is refused rather than guessed at."""
        if isinstance(data, dict):
            for name in _fields_of(cls, _is_number):
                value = data.get(name)
                if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value)):
                    raise ValueError(f"{name}: a number is needed here, not true or false")
            for name in _fields_of(cls, _is_bool):
                value = data.get(name)
                if value is not None and not isinstance(value, bool):
                    raise ValueError(f"{name}: true or false is needed here")
            for name in _fields_of(cls, _is_datetime):
                # Lax mode would read a number as seconds since 1970; the API documents ISO 8601 text.
                if isinstance(data.get(name), int | float):
                    raise ValueError(f"{name}: an ISO 8601 date and time is needed here, e.g. 2026-05-18T14:00:00Z")
        return data


class Patch(Input):
    """Fields that may be left out. ``null`` is accepted only where the stored value may be empty (``NULLABLE``):
    elsewhere it is refused (422) instead of reaching a NOT NULL column (a 500) or a check meant for something else."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_where_a_value_is_needed(self) -> Patch:
        nulls = sorted(n for n in self.model_fields_set if getattr(self, n) is None and n not in self.NULLABLE)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: null is not a value here; leave the field out to keep it")
        return self


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


# Auth & workspaces -----------------------------------------------------------------------------------------


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the token expires.")
    workspace_id: int
    role: Role


class UserOut(Output):
    id: int
    email: str


class WorkspaceOut(Output):
    id: int
    name: str
    status: str
    created_at: datetime


class MyWorkspaceOut(WorkspaceOut):
    role: Role


class MeOut(BaseModel):
    user: UserOut
    workspace: WorkspaceOut
    role: Role


class WorkspaceIn(Input):
    name: Name = Field(examples=["Psychology Lab"])


class MemberPatch(Input):
    role: Role


class MemberOut(Output):
    id: int
    role: Role
    user: UserOut
    created_at: datetime


# Invitations: the only way into a workspace for an account that is not a member yet.

Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=200)]
INVITATION_EXAMPLE: dict[str, Any] = {
    "id": 12,
    "email": "colleague@example.org",
    "role": "editor",
    "status": "pending",
    "invited_by": {"id": 1, "email": "owner@example.org"},
    "created_at": "2026-05-18T14:00:00Z",
    "expires_at": "2026-05-25T14:00:00Z",
    "accepted_at": None,
    "revoked_at": None,
}
INVITATION_SECRET_EXAMPLE = "ilinv_Wq3x0m8yqU6bQj7kP2nF4tR9vL1cZ5sH0aE8dG6iK3o"  # noqa: S105 (an example in the docs)


class InvitationIn(Input):
    email: Annotated[str, StringConstraints(min_length=3, max_length=254), NotBlank] = Field(
        description="Who is invited. Whether an account has this address is neither checked nor told.",
        examples=["colleague@example.org"],
    )
    role: Role = Field(default="editor", description="The role on accepting; only owners invite owners.")
    expires_in_days: Annotated[int, Field(ge=1, le=INVITATION_MAX_DAYS)] = Field(
        default=INVITATION_DEFAULT_DAYS, description="How long the secret can be used.", examples=[7]
    )


class InvitationOut(Output):
    model_config = ConfigDict(json_schema_extra={"examples": [INVITATION_EXAMPLE]})

    id: int
    email: str
    role: Role
    status: Literal["pending", "accepted", "revoked", "expired"]
    invited_by: UserOut | None = Field(description="Null once the inviting account is deleted.")
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationCreated(InvitationOut):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**INVITATION_EXAMPLE, "secret": INVITATION_SECRET_EXAMPLE}]}
    )

    secret: str | None = Field(
        description="Shown once: pass it to the invited person, who accepts with it at "
        "POST /admin/v1/invitations/accept. Null in an Idempotency-Key replay (secrets are never stored)."
    )


class InvitationAccept(Input):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"secret": INVITATION_SECRET_EXAMPLE, "password": "a long passphrase"},
                {"secret": INVITATION_SECRET_EXAMPLE},
            ]
        },
    )

    secret: Annotated[str, StringConstraints(min_length=1, max_length=200), NotBlank] = Field(
        description="The invitation's secret (ilinv_…)."
    )
    password: Password | None = Field(
        default=None,
        description="Without a bearer token: the password of the invited address's account, or, when it has none "
        "yet, the password the new account is to have. Leave it out when sending your admin bearer token.",
    )


# Industries ------------------------------------------------------------------------------------------------


class IndustryIn(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100), NotBlank] = Field(examples=["Healthcare"])


class IndustryOut(Output):
    id: int
    name: str


# Surveys ---------------------------------------------------------------------------------------------------


class Cpi(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Annotated[Decimal, Field(ge=0, le=100_000, decimal_places=2)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"


class SurveyFields(Patch):
    NULLABLE = frozenset({"industry_id", "segment", "cpi", "ir", "loi"})

    project: Annotated[str, StringConstraints(min_length=3, max_length=64)] | None = Field(
        default=None, description="URL slug of the participant links; generated from the title when omitted."
    )
    questionnaire_url: AnyHttpUrl | None = Field(
        default=None,
        description="Where participants are sent. The token is added as ?token=, or replaces {token}.",
        examples=["https://questionnaire.example.org/s/abc?token={token}"],
    )
    status: SurveyStatus | None = None
    industry_id: int | None = None
    segment: Literal["B2B", "B2C"] | None = None
    cpi: Cpi | None = None
    ir: Annotated[int, Field(ge=0, le=100)] | None = Field(default=None, description="Incidence rate, %.")
    loi: Annotated[int, Field(ge=0, le=1440)] | None = Field(default=None, description="Length, minutes.")
    pii: bool | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    countries: list[Country] | None = Field(default=None, max_length=250)
    outcome_verification: OutcomeVerification | None = Field(
        default=None,
        description="Who may report a completion. `browser` (the default): the participant's browser at "
        "`/survey/end?status=complete` completes the participation, and supplier traffic gets the signed success "
        "redirect. `callback`: only the questionnaire's authenticated callback completes it; the browser's "
        "`complete` is kept as reported, not counted in stats or revenue, and supplier traffic goes to the success "
        "redirect unsigned (`{hmac}` empty) with `verified=0`. Other outcomes are taken from the browser in both "
        "modes, and the callback may correct any outcome only the browser reported.",
        examples=["callback"],
    )


class SurveyIn(SurveyFields):
    title: Name = Field(examples=["Customer satisfaction 2026"])
    questionnaire_url: AnyHttpUrl = Field(examples=["https://questionnaire.example.org/s/abc"])


class SurveyPatch(SurveyFields):
    title: Name | None = None


class SurveyOut(Output):
    id: int
    project: str
    public_id: str = Field(description="The supplier-facing id (PROJ-XXXXXXXX).")
    title: str
    status: SurveyStatus
    questionnaire_url: str
    industry_id: int | None
    segment: str | None
    cpi: Cpi | None
    ir: int | None
    loi: int | None
    pii: bool
    description: str
    countries: list[str]
    outcome_verification: OutcomeVerification
    created_at: datetime
    updated_at: datetime


class SurveyCreated(SurveyOut):
    callback_secret: str = Field(description="Bearer secret of the questionnaire callback. Shown once.")


class CallbackSecretOut(BaseModel):
    callback_secret: str


# Mailings --------------------------------------------------------------------------------------------------


class MailingFields(Patch):
    name: PersonName | None = None
    channel: Literal["email", "sms"] | None = None
    subject: ShortText | None = None
    body: LongText | None = Field(
        default=None,
        description="Plain text; {{survey_link}}, {{recipient_name}}, {{survey_title}} are filled.",
    )
    sender_name: PersonName | None = None
    reminder_days: Annotated[int, Field(ge=0, le=365)] | None = None


class MailingIn(MailingFields):
    name: PersonName = Field(default="", examples=["Invitation wave 1"])
    channel: Literal["email", "sms"] = "email"
    subject: ShortText = Field(default="", examples=["Your invitation to {{survey_title}}"])
    body: LongText = Field(default="", examples=["Hello {{recipient_name}},\n\nplease take part: {{survey_link}}"])


class MailingOut(Output):
    id: int
    code: str = Field(description="The SoSci-style mailing key, M{id}.")
    kind: str
    name: str
    channel: str
    subject: str
    body: str
    sender_name: str
    reminder_days: int
    uuid: str | None
    scheduled_at: datetime | None
    created_at: datetime


# Contacts --------------------------------------------------------------------------------------------------


class ContactIn(Input):
    email: Annotated[str, StringConstraints(max_length=254)] | None = Field(default=None, examples=["a@example.com"])
    mobile: Annotated[str, StringConstraints(max_length=32)] | None = Field(default=None, examples=["+491701234567"])
    uid: Annotated[str, StringConstraints(max_length=255)] | None = Field(default=None, examples=["customer-4711"])
    name: PersonName = ""
    subgroup: Annotated[str, StringConstraints(max_length=64)] = ""
    anonymous: bool = Field(default=False, description="Anonymous contacts get no person code (serial).")


class ContactPatch(Patch):
    # A contact keeps at least one of its identities (normalize() says so); name and subgroup are text, never null.
    NULLABLE = frozenset({"email", "mobile", "uid"})

    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    mobile: Annotated[str, StringConstraints(max_length=32)] | None = None
    uid: Annotated[str, StringConstraints(max_length=255)] | None = None
    name: PersonName | None = None
    subgroup: Annotated[str, StringConstraints(max_length=64)] | None = None


class ContactOut(Output):
    id: int
    email: str | None
    mobile: str | None
    uid: str | None
    serial: str | None
    name: str
    subgroup: str
    anonymous: bool
    created_at: datetime
    # Stored as NULL for contacts without any (models/contact.py); shown as {} so clients need no null check.
    attributes: Annotated[dict[str, str], BeforeValidator(lambda value: value or {})] = Field(
        description="Extra columns of the import that created the contact, for {{attr.name}} in messages."
    )


class ImportError_(BaseModel):
    row: int
    field: str | None
    error: str


class ImportReportOut(BaseModel):
    created: int
    skipped: int = Field(description="Rows whose email, mobile or uid is already a contact of the survey.")
    errors: list[ImportError_]


# Serial codes ----------------------------------------------------------------------------------------------


class SerialCodesIn(Input):
    count: Annotated[int, Field(ge=1, le=10_000)] = Field(examples=[5])
    notice: Annotated[str, StringConstraints(max_length=500)] = Field(default="", examples=["Wave 1"])


class SerialCodeOut(BaseModel):
    code: str
    notice: str
    started: bool
    completed: bool
    created_at: datetime


# Results ---------------------------------------------------------------------------------------------------


class ContactIdentity(BaseModel):
    id: int
    email: str | None
    mobile: str | None
    uid: str | None


class ResultItem(BaseModel):
    id: int
    contact: ContactIdentity | None = Field(
        description="Who participated: null for anonymous contacts, serial codes and supplier traffic."
    )
    token: str | None
    status: str
    clicked_at: datetime | None
    click_count: int
    started_at: datetime | None
    completed_at: datetime | None
    ended_at: datetime | None
    response: dict[str, Any] | None
    metadata: dict[str, Any] | None = Field(description="The invitation's metadata, shown once completed.")
    environment: str
    supplier_id: str | None
    pid: str | None
