"""The SoSci mailing API's use cases: resolve an API URL's key and run its function (create_link, send_mail,
serial_status, address_status) over the shared model. Ok bodies are plain dicts in the API's shapes; errors are
domain errors, which the routes render with the function's error shape."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Select, bindparam, or_, select
from sqlalchemy.orm import Session

from invitelink.models import Contact, Delivery, Mailing, Participation, Token, utcnow
from invitelink.services import api_accesses
from invitelink.services.api_accesses import AccessInfo
from invitelink.services.contacts import CONTACT_INSERT_COLUMNS, new_serial
from invitelink.services.deliveries import enqueue
from invitelink.services.errors import DomainError, InvalidInput, NotFound
from invitelink.services.identity import Features
from invitelink.services.links import issue_token_code, personal_link
from invitelink.services.upsert import insert_ignore

MISSING_IDENTIFICATION = "Request must specify email, mobile, or uid"
LINK_FUNCTIONS = ("create_link", "send_mail")
ECHOED = ("serial", "email", "mobile", "uid")


class CallError(Exception):
    """A domain error while running ``function``: raised, not returned, so the job's savepoint rolls back, and
    carrying the function so the route answers in that function's error shape."""

    def __init__(self, function: str, error: DomainError) -> None:
        super().__init__(error.message)
        self.function = function
        self.error = error


def call_link_function(
    session: Session,
    project: str,
    key: str,
    public_url: str,
    features: Features | DomainError,
    send_mail_limited: bool = False,
) -> dict[str, Any] | AccessInfo:
    """Resolve ``key`` and, for create_link and send_mail, run the function: its ok body. For a status function,
    the access (the route reads it on the read engine). One job on the hot path: on SQLite the single writer is
    the bottleneck, and a second job for the key lookup would cost another hop to it.

    ``send_mail_limited``: a send_mail call is counted against its key's flood limit before it runs, so a valid
    send_mail call returns its access here (the route counts it, then runs ``call_send_mail``); a call that would be
    refused anyway (no or bad identification) is refused here, uncounted.

    ``features`` is the identification parsed before the writer, or the error parsing it gave."""
    access = api_accesses.resolve(session, project, key)
    if access.function not in LINK_FUNCTIONS:
        return access
    try:
        if isinstance(features, DomainError):
            raise features
        if access.function == "send_mail" and send_mail_limited:
            if not features.given():
                raise InvalidInput(MISSING_IDENTIFICATION)
            return access
        handler = create_link if access.function == "create_link" else send_mail
        return handler(session, public_url, access, features)
    except DomainError as exc:
        raise CallError(access.function, exc) from exc


def call_send_mail(session: Session, access: AccessInfo, public_url: str, features: Features) -> dict[str, Any]:
    """send_mail for an access resolved (and its call counted) before: its ok body."""
    try:
        return send_mail(session, public_url, access, features)
    except DomainError as exc:
        raise CallError(access.function, exc) from exc


def call_status_function(
    session: Session, access: AccessInfo, params: dict[str, str], features: Features | DomainError
) -> dict[str, Any]:
    """serial_status or address_status, read only."""
    if access.function == "serial_status":
        if not params.get("serial"):
            raise InvalidInput("Request must specify serial")
        return serial_status(session, access.survey_id, params["serial"])
    if isinstance(features, DomainError):
        raise features
    found = address_status(session, access.survey_id, params.get("serial"), features)
    return {"result": "ok", **{k: params.get(k) for k in ECHOED}, **found, "error": None}


@cache
def _match_stmt(keys: tuple[str, ...]) -> Select[Any]:
    columns = Contact.__table__.c
    return select(columns.id, columns.email, columns.mobile, columns.uid).where(
        columns.survey_id == bindparam("survey_id"), or_(*(columns[k] == bindparam(k) for k in keys))
    )


def _match(conn: Connection, survey_id: int, features: Features) -> int | None:
    """The id of the contact matching any given feature, preferring e-mail, then mobile, then uid."""
    given = features.given()
    rows = conn.execute(_match_stmt(tuple(k for k, _ in given)), {"survey_id": survey_id, **dict(given)}).all()
    for key, value in given:
        for row in rows:
            if getattr(row, key) == value:
                return int(row.id)
    return None


def find_or_create_contact(session: Session, access: AccessInfo, features: Features) -> tuple[int, bool]:
    """(contact id, created): reuse the survey's contact with a given feature, else create it.

    Insert-or-fetch on the unique constraints (ON CONFLICT DO NOTHING), so concurrent callers on any number of
    instances get one contact. Prebuilt Core statements: this is the hot path of every shop integration.
    """
    if not features.given():
        raise InvalidInput(MISSING_IDENTIFICATION)
    conn = session.connection()
    insert_contact = insert_ignore(Contact.__table__, CONTACT_INSERT_COLUMNS, "id")
    for _attempt in range(3):
        contact_id = _match(conn, access.survey_id, features)
        if contact_id is not None:
            return contact_id, False
        new_id = conn.execute(
            insert_contact,
            {
                "survey_id": access.survey_id,
                "email": features.email,
                "mobile": features.mobile,
                "uid": features.uid,
                "subgroup": access.subgroup,
                "anonymous": access.anonymous,
                "name": "",
                "serial": None if access.anonymous else new_serial(),
                "created_at": utcnow(),
            },
        ).scalar()
        if new_id is not None:
            return int(new_id), True
        # Another request created it first (or the random serial clashed): look again.
    raise InvalidInput("these features belong to different contacts of the survey; send only one of them")


def _link(session: Session, public_url: str, access: AccessInfo, features: Features) -> tuple[int, str, dict[str, Any]]:
    contact_id, created = find_or_create_contact(session, access, features)
    code = issue_token_code(session, access.survey_id, contact_id, api_access_id=access.id, known_new=created)
    body = {"result": "ok", "token": code, "url": personal_link(public_url, access.project, code), "error": None}
    return contact_id, code, body


def create_link(session: Session, public_url: str, access: AccessInfo, features: Features) -> dict[str, Any]:
    return _link(session, public_url, access, features)[2]


def send_mail(session: Session, public_url: str, access: AccessInfo, features: Features) -> dict[str, Any]:
    """create_link, and queue the access's mailing to the contact in the same transaction (once)."""
    contact_id, code, body = _link(session, public_url, access, features)
    mailing = session.get(Mailing, access.mailing_id) if access.mailing_id else None
    contact = session.get(Contact, contact_id)
    token = session.scalar(select(Token).where(Token.code == code))
    if mailing is None or contact is None or token is None:
        raise InvalidInput("this API access has no mailing to send")
    if enqueue(session, mailing, contact, token) is None:
        raise InvalidInput(
            f"the contact has no {'mobile number' if mailing.channel == 'sms' else 'address'} "
            "this mailing can be sent to",
            field="email",
        )
    return body


def serial_status(session: Session, survey_id: int, code: str) -> dict[str, Any]:
    row = session.execute(
        select(Token, Participation)
        .outerjoin(Participation, Participation.token_id == Token.id)
        .where(Token.code == code.strip().upper(), Token.survey_id == survey_id, Token.kind == "serial_code")
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


# The delivery's status as the API's ``status`` (queued | sent | skipped | failed). A message in the worker's hands is
# still queued; a bounce reported after sending means it did not arrive, shown like a refused send.
SENDING_STATUS = {"sending": "queued", "bounced": "failed"}


def _mail_status(delivery: Delivery) -> str:
    if delivery.status in ("queued", "sending"):
        return "queued"
    if delivery.status == "sent":
        return "delivered"
    if delivery.status == "bounced" or (delivery.status == "failed" and delivery.transport_status == "bounced"):
        return "bounced"
    if delivery.status == "failed":
        return "failed"
    return "none"


def _send_date(delivery: Delivery) -> str:
    """The day it was sent; otherwise the day it is or was due. The worker decides a delivery when it falls due:
    it sends it, skips it (no address for the channel, an unsubscribed address) or, after its last retry, gives up;
    each retry moves ``due_at`` to its own time. So for a skipped or failed message ``due_at`` is the day that was
    decided (it can be later only while the survey was not active and held its deliveries), and the decision needs
    no time column of its own."""
    when: datetime = delivery.sent_at or delivery.due_at
    return when.strftime("%Y-%m-%d")


def address_status(session: Session, survey_id: int, serial: str | None, features: Features) -> dict[str, Any]:
    """The contact matching every given property, and each mailing attempted or queued for it as M{id}."""
    conditions = [getattr(Contact, k) == v for k, v in features.given()]
    if serial:
        conditions.append(Contact.serial == serial.strip())
    if not conditions:
        raise InvalidInput("Request must specify serial, email, mobile, or uid")
    contact = session.scalar(select(Contact).where(Contact.survey_id == survey_id, *conditions).limit(1))
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
        entry["status"] = SENDING_STATUS.get(delivery.status, delivery.status)
        entry["statusMail" if delivery.channel == "email" else "statusSMS"] = _mail_status(delivery)
        entry["sendTime"] = _send_date(delivery)
    return {"mailings": mailings}
