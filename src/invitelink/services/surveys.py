"""Surveys: creation with their public ids and callback secret, updates, status transitions."""

from __future__ import annotations

import re
import secrets
import unicodedata
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from invitelink.models import Industry, Survey
from invitelink.security import digest, random_code
from invitelink.services.errors import Conflict, InvalidInput, get_owned, remove, save_or_conflict
from invitelink.services.pagination import Page, page_of

CALLBACK_SECRET_PREFIX = "scb_"  # noqa: S105 (a prefix)
PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
# First path segments the service itself uses; a project slug must not shadow them.
RESERVED_PROJECTS = frozenset(
    {
        "admin",
        "api",
        "docs",
        "redoc",
        "openapi",
        "openapi-json",
        "healthz",
        "readyz",
        "survey",
        "sandbox",
        "production",
        "static",
        "unsubscribe",
        "favicon-ico",
        "robots-txt",
    }
)
TRANSITIONS = {"draft": {"active"}, "active": {"closed"}, "closed": {"active"}}
PUBLIC_ID_ALPHABET = "0123456789ABCDEF"


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:40].strip("-") or "survey"


def validate_project(project: str) -> str:
    if not PROJECT_PATTERN.fullmatch(project):
        raise InvalidInput(
            "project must be 3-64 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
            field="project",
        )
    if project in RESERVED_PROJECTS:
        raise InvalidInput(f"project '{project}' is reserved by the service; choose another", field="project")
    return project


def get_survey(session: Session, workspace_id: int, survey_id: int) -> Survey:
    """The survey if it belongs to the workspace; otherwise NotFound (existence is not revealed)."""
    return get_owned(session, Survey, survey_id, "survey not found", workspace_id=workspace_id)


def _check_industry(session: Session, workspace_id: int, industry_id: int | None) -> None:
    if industry_id is None:
        return
    industry = session.get(Industry, industry_id)
    if industry is None or industry.workspace_id != workspace_id:
        raise InvalidInput("industry_id: no such industry in this workspace", field="industry_id")


def _apply(survey: Survey, fields: dict[str, Any]) -> None:
    cpi = fields.pop("cpi", None)
    if cpi is not None:
        survey.cpi_value = Decimal(str(cpi["value"]))
        survey.cpi_currency = cpi.get("currency") or "USD"
    for name, column in (("ir", "incidence_rate"), ("loi", "length_of_interview")):
        if name in fields:
            setattr(survey, column, fields.pop(name))
    for name, value in fields.items():
        setattr(survey, name, value)


def create_survey(session: Session, workspace_id: int, fields: dict[str, Any]) -> tuple[Survey, str]:
    """A new draft survey and its callback secret (returned once, stored as a digest)."""
    fields = dict(fields)
    status = fields.pop("status", "draft")
    if status != "draft" and status not in TRANSITIONS["draft"]:
        raise InvalidInput("a new survey starts as draft or active", field="status")
    project = fields.pop("project", None)
    if project:
        validate_project(project)
    else:
        project = f"{slugify(fields['title'])}-{random_code(4, '23456789abcdefghjkmnpqrstuvwxyz')}"
    _check_industry(session, workspace_id, fields.get("industry_id"))
    secret = CALLBACK_SECRET_PREFIX + secrets.token_urlsafe(24)
    survey = Survey(
        workspace_id=workspace_id,
        project=project,
        public_id="PROJ-" + random_code(8, PUBLIC_ID_ALPHABET),
        status=status,
        callback_secret_digest=digest(secret),
    )
    _apply(survey, fields)
    save_or_conflict(session, survey, f"project '{project}' is taken; choose another", field="project")
    return survey, secret


def update_survey(session: Session, survey: Survey, fields: dict[str, Any]) -> Survey:
    fields = dict(fields)
    if "status" in fields:
        change_status(survey, fields.pop("status"))
    if "project" in fields and fields["project"] != survey.project:
        validate_project(fields["project"])
    _check_industry(session, survey.workspace_id, fields.get("industry_id"))
    _apply(survey, fields)
    save_or_conflict(session, survey, "project is taken; choose another", field="project")
    return survey


def change_status(survey: Survey, status: str) -> None:
    """draft -> active -> closed, and closed -> active to reopen; anything else is a conflict."""
    if status == survey.status:
        return
    if status not in TRANSITIONS.get(survey.status, set()):
        raise Conflict(f"a {survey.status} survey cannot become {status}", field="status")
    survey.status = status


def rotate_callback_secret(session: Session, survey: Survey) -> str:
    secret = CALLBACK_SECRET_PREFIX + secrets.token_urlsafe(24)
    survey.callback_secret_digest = digest(secret)
    session.flush()
    return secret


def list_surveys(
    session: Session, workspace_id: int, status: str | None, cursor: str | None, limit: int
) -> Page[Survey]:
    where = [Survey.workspace_id == workspace_id]
    if status:
        where.append(Survey.status == status)
    return page_of(session, Survey, cursor, limit, *where)


def delete_survey(session: Session, workspace_id: int, survey_id: int) -> None:
    remove(session, get_survey(session, workspace_id, survey_id))
