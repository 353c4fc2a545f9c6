"""A complete demo workspace: admin, active survey, mailing, serial codes, industries."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from invitelink.config import Settings
from invitelink.models import Industry, Question, QuestionOption, Survey
from invitelink.services import (
    accounts,
    api_accesses,
    industries,
    mailings,
    serials,
    suppliers,
    surveys,
    trigger_tokens,
)

DEMO_SERIAL_CODES = 5


def seed_demo(session: Session, settings: Settings) -> dict[str, Any]:
    """Seed one new, independent demo workspace and return its credentials (the keys README documents)."""
    suffix = secrets.token_hex(4)
    email = f"demo-{suffix}@example.org"
    password = secrets.token_urlsafe(12)
    workspace, user = accounts.create_admin(session, email, password, "Demo")
    token, _ = accounts.open_session(session, user, workspace.id, timedelta(days=30))
    listed = [Industry(workspace_id=workspace.id, name=name) for name in industries.DEFAULT_INDUSTRIES]
    session.add_all(listed)
    session.flush()
    survey, callback_secret = surveys.create_survey(
        session,
        workspace.id,
        {
            "title": "Demo customer survey",
            "project": f"demo-{suffix}",
            "questionnaire_url": "https://questionnaire.example.org/demo?token={token}",
            "status": "active",
            "segment": "B2C",
            "industry_id": listed[0].id,
            "cpi": {"value": 6, "currency": "USD"},
            "ir": 40,
            "loi": 12,
            "description": "A demo survey seeded by `invitelink demo`.",
            "countries": ["USA", "UK", "Germany"],
        },
    )
    mailing = mailings.create_mailing(
        session,
        survey,
        {
            "name": "Demo invitation",
            "channel": "email",
            "subject": "Your invitation to {{survey_title}}",
            "body": "Hello {{recipient_name}},\n\nplease take part in our survey: {{survey_link}}\n",
        },
    )
    codes = serials.generate_serial_codes(session, survey, DEMO_SERIAL_CODES, notice="demo")
    sosci = {}
    for function in ("create_link", "send_mail", "serial_status", "address_status"):
        _access, key = api_accesses.create_access(
            session, survey, function, mailing.id if function in api_accesses.NEEDS_MAILING else None, "", False
        )
        sosci[function] = api_accesses.api_url(settings.public_url, survey.project, key)
    _trigger, trigger_secret = trigger_tokens.create_token(
        session,
        survey,
        name="Demo workflow",
        cooldown_seconds=2,
        default_subject="{{workspace_name}}: {{survey_title}}",
        default_message="Hello {{recipient_name}},\n\nhow did your order go? Tell us:\n{{survey_link}}\n",
        default_reminder_days=3,
    )
    supplier_info = _demo_supplier(session, settings, workspace.id, survey)
    return {
        "workspace": {"id": workspace.id, "name": workspace.name},
        "admin": {"email": user.email, "password": password, "token": token},
        "survey": {
            "id": survey.id,
            "project": survey.project,
            "public_id": survey.public_id,
            "questionnaire_url": survey.questionnaire_url,
            "callback_secret": callback_secret,
            "mailing_id": mailing.id,
        },
        "sosci": sosci,
        "serial_codes": [t.code for t in codes],
        "trigger": {"url": trigger_tokens.trigger_url(settings.public_url), "secret": trigger_secret},
        "supplier": supplier_info,
        "admin_api": f"{settings.public_url}/admin/v1/",
        "docs": f"{settings.public_url}/docs",
    }


DEMO_QUESTIONS = (
    ("AGE_RANGE", "What is your age range?", "Numeric Range", "Demographic", ("18 - 24", "25 - 34", "35 - 54")),
    (
        "DEVICE_TYPE",
        "Which device(s) do you use most frequently?",
        "Multiple Choice",
        "Technology",
        ("Mobile", "Desktop", "Tablet"),
    ),
    ("GENDER", "What is your gender?", "Single Choice", "Demographic", ("Male", "Female", "Other")),
)


def _demo_supplier(session: Session, settings: Settings, workspace_id: int, survey: Survey) -> dict[str, Any]:
    """A supplier with keys for both environments, the demo survey allocated with country limits, targeting
    questions, and redirects to an example panel."""
    for position, (key, text, kind, category, options) in enumerate(DEMO_QUESTIONS):
        survey.questions.append(
            Question(
                position=position,
                key=key,
                text=text,
                type=kind,
                category=category,
                options=[QuestionOption(position=i, text=o) for i, o in enumerate(options)],
            )
        )
    panel = "https://panel.example.org/return"
    supplier = suppliers.create_supplier(
        session,
        workspace_id,
        {
            "name": "Demo panel",
            "email": "supply@panel.example.org",
            "redirect_success": f"{panel}?status=C&uid={{uid}}&hmac={{hmac}}",
            "redirect_terminate": f"{panel}?status=T&uid={{uid}}&hmac={{hmac}}",
            "redirect_quotafull": f"{panel}?status=Q&uid={{uid}}&hmac={{hmac}}",
            "redirect_security": f"{panel}?status=S&uid={{uid}}&hmac={{hmac}}",
        },
    )
    _sandbox, sandbox_key = suppliers.create_key(session, supplier, "sandbox")
    _production, production_key = suppliers.create_key(session, supplier, "production")
    suppliers.create_allocation(
        session, supplier, survey.public_id, None, "active", {"USA": 100, "UK": 50, "Germany": 25}
    )
    return {
        "supplier_id": supplier.public_id,
        "email": supplier.email,
        "sandbox_key": sandbox_key,
        "production_key": production_key,
        "sandbox_base": f"{settings.public_url}/sandbox/v1/",
        "production_base": f"{settings.public_url}/production/v1/",
        "survey_id": survey.public_id,
        "hmac_secret": suppliers.hmac_secret(settings.server_secret, supplier),
    }
