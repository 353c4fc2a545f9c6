"""Request and response models of the admin API, with the limits they enforce."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

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
from invitelink.services.errors import InvalidInput
from invitelink.services.fields import check_single_line

T = TypeVar("T")


def _one_line(value: str) -> str:
    """Names, titles and subjects go into mail headers: a line break there cannot be encoded (or splits the
    header), so they are refused where they come in (422) rather than failing a delivery later."""
    try:
        return check_single_line(value, "text")
    except InvalidInput as exc:
        raise ValueError(exc.message.removeprefix("text ")) from None


OneLine = AfterValidator(_one_line)
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), OneLine]
ShortText = Annotated[str, StringConstraints(max_length=300), OneLine]
PersonName = Annotated[str, StringConstraints(max_length=200), OneLine]
LongText = Annotated[str, StringConstraints(max_length=20_000)]
Role = Literal["owner", "admin", "editor", "viewer"]
SurveyStatus = Literal["draft", "active", "closed"]
Country = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class Input(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored, and NUL
    characters, which PostgreSQL cannot store (SQLite would, so the engines would differ)."""

    model_config = ConfigDict(extra="forbid")

    _no_nul = model_validator(mode="before")(no_nul)


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


class MemberIn(Input):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)] = Field(
        examples=["colleague@example.org"]
    )
    role: Role = "editor"
    password: Annotated[str, StringConstraints(min_length=8, max_length=200)] | None = Field(
        default=None, description="Creates the account when no user has this e-mail yet."
    )


class MemberPatch(Input):
    role: Role


class MemberOut(Output):
    id: int
    role: Role
    user: UserOut
    created_at: datetime


# Industries ------------------------------------------------------------------------------------------------


class IndustryIn(Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = Field(
        examples=["Healthcare"]
    )


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


class ContactPatch(Input):
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
