"""The four SoSci mailing-API functions over the shared model: create_link, send_mail, serial_status,
address_status. Plain dicts in the seed's shapes; the adapter only adds HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import ApiAccess, Contact, Delivery, Mailing, Participation, Survey, Token
from invitelink.services.contacts import new_serial
from invitelink.services.deliveries import enqueue
from invitelink.services.errors import InvalidInput, NotFound
from invitelink.services.identity import normalize_email, normalize_mobile, normalize_uid
from invitelink.services.links import issue_token, personal_link

MISSING_IDENTIFICATION = "Request must specify email, mobile, or uid"


@dataclass(frozen=True)
class Features:
    email: str | None = None
    mobile: str | None = None
    uid: str | None = None

    @classmethod
    def parse(cls, email: str | None, mobile: str | None, uid: str | None) -> Features:
        """Normalised features; InvalidInput naming the field that is malformed."""
        return cls(
            email=normalize_email(email) if email else None,
            mobile=normalize_mobile(mobile) if mobile else None,
            uid=normalize_uid(uid) if uid else None,
        )

    def given(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in (("email", self.email), ("mobile", self.mobile), ("uid", self.uid)) if v]


def _match(session: Session, survey_id: int, features: Features) -> Contact | None:
    """The contact matching any given feature, preferring e-mail, then mobile, then uid."""
    given = features.given()
    rows = session.scalars(
        select(Contact).where(Contact.survey_id == survey_id, or_(*(getattr(Contact, k) == v for k, v in given)))
    ).all()
    for key, value in given:
        for contact in rows:
            if getattr(contact, key) == value:
                return contact
    return None


def find_or_create_contact(session: Session, access: ApiAccess, features: Features) -> Contact:
    """Reuse the survey's contact with a given feature, else create it; concurrent callers get the same one."""
    if not features.given():
        raise InvalidInput(MISSING_IDENTIFICATION)
    for _attempt in range(3):
        contact = _match(session, access.survey_id, features)
        if contact is not None:
            return contact
        contact = Contact(
            survey_id=access.survey_id,
            email=features.email,
            mobile=features.mobile,
            uid=features.uid,
            subgroup=access.subgroup,
            anonymous=access.anonymous,
            serial=None if access.anonymous else new_serial(),
        )
        try:
            with session.begin_nested():
                session.add(contact)
                session.flush()
        except IntegrityError:
            continue  # another request created it first: fetch theirs
        return contact
    raise InvalidInput("these features belong to different contacts of the survey; send only one of them")


def create_link(
    session: Session, public_url: str, access: ApiAccess, survey: Survey, features: Features
) -> dict[str, Any]:
    contact = find_or_create_contact(session, access, features)
    token = issue_token(session, contact, api_access_id=access.id)
    return {
        "result": "ok",
        "token": token.code,
        "url": personal_link(public_url, survey.project, token.code),
        "error": None,
    }


def send_mail(
    session: Session, public_url: str, access: ApiAccess, survey: Survey, features: Features
) -> dict[str, Any]:
    """create_link, and queue the access's mailing to the contact in the same transaction (once)."""
    contact = find_or_create_contact(session, access, features)
    token = issue_token(session, contact, api_access_id=access.id)
    mailing = session.get(Mailing, access.mailing_id) if access.mailing_id else None
    if mailing is None:
        raise InvalidInput("this API access has no mailing to send")
    if enqueue(session, mailing, contact, token) is None:
        raise InvalidInput(
            f"the contact has no {'mobile number' if mailing.channel == 'sms' else 'address'} "
            "this mailing can be sent to",
            field="email",
        )
    return {
        "result": "ok",
        "token": token.code,
        "url": personal_link(public_url, survey.project, token.code),
        "error": None,
    }


def serial_status(session: Session, survey: Survey, code: str) -> dict[str, Any]:
    row = session.execute(
        select(Token, Participation)
        .outerjoin(Participation, Participation.token_id == Token.id)
        .where(Token.code == code.strip().upper(), Token.survey_id == survey.id, Token.kind == "serial_code")
    ).first()
    if row is None:
        raise NotFound("not found")
    token, participation = row
    return {
        "result": "ok",
        "code": token.code,
        "started": participation is not None and participation.started_at is not None,
        "completed": participation is not None and participation.status == "completed",
        "notice": token.notice,
        "error": None,
    }


def _mail_status(delivery: Delivery) -> str:
    if delivery.status in ("queued", "sending"):
        return "queued"
    if delivery.status == "sent":
        return "delivered"
    if delivery.status == "failed":
        return "bounced" if delivery.transport_status == "bounced" else "failed"
    return "none"


def _send_date(delivery: Delivery) -> str | None:
    when: datetime | None = delivery.sent_at or (delivery.due_at if delivery.status in ("queued", "sending") else None)
    return when.strftime("%Y-%m-%d") if when else None


def address_status(session: Session, survey: Survey, serial: str | None, features: Features) -> dict[str, Any]:
    """The contact matching every given property, and each mailing attempted or queued for it as M{id}."""
    conditions = [getattr(Contact, k) == v for k, v in features.given()]
    if serial:
        conditions.append(Contact.serial == serial.strip())
    if not conditions:
        raise InvalidInput("Request must specify serial, email, mobile, or uid")
    contact = session.scalar(select(Contact).where(Contact.survey_id == survey.id, *conditions).limit(1))
    if contact is None:
        raise NotFound("not found")
    deliveries = session.scalars(
        select(Delivery).where(Delivery.contact_id == contact.id, Delivery.sequence == 0).order_by(Delivery.mailing_id)
    ).all()
    mailings: dict[str, dict[str, Any]] = {}
    for delivery in deliveries:
        entry = mailings.setdefault(
            f"M{delivery.mailing_id}",
            {"id": delivery.mailing_id, "status": "", "statusMail": "none", "statusSMS": "none", "sendTime": None},
        )
        entry["status"] = "queued" if delivery.status == "sending" else delivery.status
        entry["statusMail" if delivery.channel == "email" else "statusSMS"] = _mail_status(delivery)
        entry["sendTime"] = _send_date(delivery)
    return {"mailings": mailings}
