"""Serial mailings of a survey (the admin-made kind; trigger batches are made by services/triggers.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from invitelink.models import Mailing, Survey
from invitelink.services.errors import NotFound


def get_mailing(session: Session, survey: Survey, mailing_id: int) -> Mailing:
    mailing = session.get(Mailing, mailing_id)
    if mailing is None or mailing.survey_id != survey.id:
        raise NotFound("mailing not found")
    return mailing


def create_mailing(session: Session, survey: Survey, fields: dict[str, Any]) -> Mailing:
    mailing = Mailing(survey_id=survey.id, kind="serial", **fields)
    session.add(mailing)
    session.flush()
    return mailing


def update_mailing(session: Session, mailing: Mailing, fields: dict[str, Any]) -> Mailing:
    for name, value in fields.items():
        setattr(mailing, name, value)
    session.flush()
    return mailing
