"""Survey.is-style API triggers: one call queues one invitation batch (a trigger mailing) for its recipients.

The whole batch (contacts, personal tokens, deliveries, the token's cooldown stamp) is written in one transaction:
a refused call leaves nothing behind, an accepted one is complete.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session

from invitelink.models import Delivery, Mailing, TriggerToken, utcnow
from invitelink.services import idempotency, trigger_tokens
from invitelink.services.contacts import contacts_by_email
from invitelink.services.deliveries import enqueue_new_mailing
from invitelink.services.errors import InvalidInput, RateLimited
from invitelink.services.fields import check_single_line, whole_number
from invitelink.services.identity import normalize_email
from invitelink.services.links import issue_mailing_tokens
from invitelink.services.trigger_tokens import Caller

MAX_NAME_LENGTH = 200
MAX_SUBJECT_LENGTH = 300
MAX_MESSAGE_LENGTH = 20_000
MAX_METADATA_BYTES = 4096
MAX_DELAY = timedelta(days=365)
MAX_REMINDER_DAYS = 365
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger("invitelink.trigger")


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str


@dataclass(frozen=True)
class Limits:
    max_recipients: int
    batches_per_minute: int
    recipients_per_hour: int


@dataclass(frozen=True)
class TriggerRequest:
    """A validated trigger call. ``None`` means "use the token's default"."""

    recipients: list[Recipient]
    metadata: dict[str, Any] | None
    subject: str | None
    message: str | None
    reminder_days: int | None
    scheduled_at: datetime


def _text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string", field=key)
    if len(value) > limit:
        raise InvalidInput(f"{key} is longer than {limit} characters", field=key)
    return value


def _single_line(value: str | None, field: str) -> str | None:
    return None if value is None else check_single_line(value, field)


def _recipient(item: Any, where: str, default_name: str = "") -> Recipient:
    """One recipient: an address, or ``{email, name}``; ``default_name`` for one without a name of its own."""
    email: Any
    name: Any
    if isinstance(item, str):
        email, name = item, default_name
    elif isinstance(item, dict):
        email, name = item.get("email"), item.get("name") or default_name
        if not isinstance(email, str):
            raise InvalidInput(f"invalid recipient {where}: email is required", field="emails")
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
            raise InvalidInput(
                f"invalid recipient {where}: name must be a string of at most {MAX_NAME_LENGTH} characters"
            )
    else:
        raise InvalidInput(f"invalid recipient {where}: give an address or an object {{email, name}}", field="emails")
    check_single_line(name, f"name of recipient {where}")
    try:
        return Recipient(normalize_email(email), name.strip())
    except InvalidInput as exc:
        raise InvalidInput(f"invalid recipient {where}: {exc.message}", field="emails") from exc


def _recipients(body: dict[str, Any], max_recipients: int) -> list[Recipient]:
    single, many = body.get("email"), body.get("emails")
    if single is not None and many is not None:
        raise InvalidInput("send either email (one recipient) or emails (a list), not both")
    if single is None and many is None:
        raise InvalidInput("email is required (or emails, a list of recipients)", field="email")
    if single is not None:
        if not isinstance(single, str):
            raise InvalidInput("email must be a string; use emails for a list", field="email")
        name = _text(body, "name", MAX_NAME_LENGTH) or ""
        return [_recipient({"email": single, "name": name}, "email")]
    if not isinstance(many, list) or not many:
        raise InvalidInput("emails must be a non-empty list of addresses or {email, name} objects", field="emails")
    if len(many) > max_recipients:
        raise InvalidInput(f"at most {max_recipients} recipients per request; split the list", field="emails")
    # ``name`` is documented for a single recipient; next to a list, clients mean it for the recipients they give
    # as plain addresses (a one-element list is the common case), so it names every recipient without a name of
    # its own instead of refusing the call. A recipient's own name always wins.
    list_name = _text(body, "name", MAX_NAME_LENGTH) or ""
    recipients = [_recipient(item, f"emails[{i}]", list_name) for i, item in enumerate(many)]
    # One invitation per address: a repeated address keeps its last name.
    by_address = {r.email: r for r in recipients}
    return list(by_address.values())


def _metadata(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if isinstance(value, str):  # form posts carry it as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidInput("metadata must be a JSON object", field="metadata") from None
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object", field="metadata")
    if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON", field="metadata")
    return value


def parse_time(raw: str) -> datetime:
    """``now``, or a date/time read as UTC: ``2026-05-18 14:00:00 UTC``, ``2026-05-18T14:00:00Z``, with offset."""
    text = raw.strip()
    for suffix in (" UTC", "UTC", "Z", "z"):
        if text.endswith(suffix):
            text = text[: -len(suffix)].strip() + "+00:00"
            break
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            "send_at must be now or a UTC date/time such as 2026-05-18 14:00:00 UTC", field="send_at"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _schedule(body: dict[str, Any], now: datetime) -> datetime:
    delay, send_at = body.get("send_in_seconds"), body.get("send_at")
    if delay not in (None, "") and send_at not in (None, ""):
        raise InvalidInput("use only one timing field per request: send_in_seconds or send_at")
    seconds = whole_number(body, "send_in_seconds", 0, int(MAX_DELAY.total_seconds()))
    if seconds is not None:
        return now + timedelta(seconds=seconds)
    if send_at in (None, ""):
        return now
    if not isinstance(send_at, str):
        raise InvalidInput("send_at must be a string: now or a UTC date/time", field="send_at")
    if send_at.strip().lower() == "now":
        return now
    moment = parse_time(send_at)
    if moment > now + MAX_DELAY:
        raise InvalidInput("send_at is more than 365 days ahead", field="send_at")
    return moment


def parse_request(body: dict[str, Any], limits: Limits, now: datetime) -> TriggerRequest:
    """Validate a trigger call's fields; InvalidInput says which one is wrong and how."""
    return TriggerRequest(
        recipients=_recipients(body, limits.max_recipients),
        metadata=_metadata(body),
        subject=_single_line(_text(body, "subject", MAX_SUBJECT_LENGTH), "subject"),
        message=_text(body, "message", MAX_MESSAGE_LENGTH),
        reminder_days=whole_number(body, "reminder_days", 0, MAX_REMINDER_DAYS),
        scheduled_at=_schedule(body, now),
    )


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def _retry_after(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _claim_cooldown(session: Session, token: TriggerToken, now: datetime) -> None:
    """Stamp the token's use, or refuse while its cooldown runs.

    One conditional UPDATE: on PostgreSQL the row lock makes concurrent calls on any number of instances wait
    for each other and re-check the condition, so exactly one wins per cooldown; SQLite has a single writer.
    The stamp is taken even without a cooldown: the row lock also serialises the flood counts below.
    """
    cooldown = timedelta(seconds=token.cooldown_seconds)
    stamp = update(TriggerToken).where(TriggerToken.id == token.id)
    if cooldown:
        stamp = stamp.where(or_(TriggerToken.last_used_at.is_(None), TriggerToken.last_used_at <= now - cooldown))
    # Without a cooldown there is no condition: ``now`` was taken before this call waited for the row lock, so a
    # racing call that stamped meanwhile is "later" than it, and "at least 0 s apart" would refuse it.
    result = session.execute(stamp.values(last_used_at=now).execution_options(synchronize_session=False))
    if not cast("CursorResult[Any]", result).rowcount:
        last = session.scalar(select(TriggerToken.last_used_at).where(TriggerToken.id == token.id)) or now
        raise RateLimited(
            f"trigger token cooldown: one call per {token.cooldown_seconds} s",
            retry_after=_retry_after(last + cooldown, now),
        )


def _check_flood(session: Session, token_id: int, recipients: int, limits: Limits, now: datetime) -> None:
    """Refuse a call that would exceed the token's batches per minute or recipients per hour."""
    minute_ago, hour_ago = now - timedelta(minutes=1), now - timedelta(hours=1)
    batches, oldest = session.execute(
        select(func.count(), func.min(Mailing.created_at)).where(
            Mailing.trigger_token_id == token_id, Mailing.created_at > minute_ago
        )
    ).one()
    if batches >= limits.batches_per_minute:
        raise RateLimited(
            f"flood protection: at most {limits.batches_per_minute} batches per minute per trigger token",
            retry_after=_retry_after(oldest + timedelta(minutes=1), now),
        )
    sent, oldest = session.execute(
        select(func.count(Delivery.id), func.min(Mailing.created_at))
        .join(Delivery, Delivery.mailing_id == Mailing.id)
        .where(Mailing.trigger_token_id == token_id, Mailing.created_at > hour_ago, Delivery.sequence == 0)
    ).one()
    if sent + recipients > limits.recipients_per_hour:
        raise RateLimited(
            f"flood protection: at most {limits.recipients_per_hour} recipients per hour per trigger token",
            retry_after=_retry_after((oldest or now) + timedelta(hours=1), now),
        )


def queue_batch(session: Session, caller: Caller, request: TriggerRequest, limits: Limits, now: datetime) -> Mailing:
    """Queue one batch: the trigger mailing, and per recipient a contact, a personal token and a delivery."""
    if caller.workspace.status != "active":
        raise InvalidInput("the workspace is disabled; invitations cannot be queued")
    if caller.survey.status == "closed":
        raise InvalidInput("the survey is closed; reopen it to queue invitations")
    token = caller.token
    _claim_cooldown(session, token, now)
    _check_flood(session, token.id, len(request.recipients), limits, now)
    mailing = Mailing(
        survey_id=caller.survey.id,
        kind="trigger",
        channel="email",
        name=f"Trigger batch ({token.name})"[:200],
        subject=request.subject if request.subject is not None else token.default_subject,
        body=request.message if request.message is not None else token.default_message,
        reminder_days=request.reminder_days if request.reminder_days is not None else token.default_reminder_days,
        uuid=str(uuid.uuid4()),
        trigger_token_id=token.id,
        meta=request.metadata,
        scheduled_at=request.scheduled_at,
        created_at=now,
    )
    session.add(mailing)
    session.flush()
    # Bulk statements over the connection, none per recipient. The latest name a trigger gives is the one the
    # invitation greets, so an existing contact takes it.
    conn = session.connection()
    contacts = contacts_by_email(conn, caller.survey.id, {r.email: r.name for r in request.recipients}, now)
    tokens = issue_mailing_tokens(conn, caller.survey.id, mailing.id, contacts.values(), now)
    enqueue_new_mailing(conn, mailing, tokens, request.scheduled_at, now)
    return mailing


def batch_summary(mailing: Mailing) -> dict[str, Any]:
    """The seed's success body."""
    assert mailing.scheduled_at is not None
    return {
        "ok": True,
        "message": "Invitation queued.",
        "batch": {"uuid": mailing.uuid, "scheduled_at": format_time(mailing.scheduled_at), "status": "queued"},
    }


def trigger(
    session: Session,
    secret: str | None,
    parsed: TriggerRequest | InvalidInput,
    limits: Limits,
    keyed: idempotency.Keyed | None = None,
) -> idempotency.Stored:
    """One trigger call: authenticate the token, then queue the batch; the answer (status and body).

    ``parsed`` is the body validated before the writer, or its error, which is raised only after the token check,
    so a caller without a valid token learns about the token first. With an Idempotency-Key (``keyed``), a call
    made before is answered again from its record, before the cooldown or the flood limits are counted, and a new
    call's answer is recorded in its own transaction."""
    caller = trigger_tokens.authenticate(session, secret)

    def queue() -> idempotency.Stored:
        # After the replay: a repeated call is answered as it was, whatever its body's errors or the limits now.
        if isinstance(parsed, InvalidInput):
            raise parsed
        mailing = queue_batch(session, caller, parsed, limits, utcnow())
        # The token's prefix and the batch id only: never a link or a secret.
        log.info(
            "trigger %s queued batch %s (%d recipients)", caller.token.prefix, mailing.uuid, len(parsed.recipients)
        )
        return idempotency.Stored(200, batch_summary(mailing))

    return idempotency.once(session, idempotency.credential_of(f"trigger-token:{caller.token.id}"), keyed, queue)
