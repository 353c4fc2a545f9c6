"""Webhook endpoints as admins manage them, their signing secrets, and the messages and attempts they can inspect.

Signing follows the Standard Webhooks specification: ``webhook-signature: v1,<base64 HMAC-SHA256 of
"webhook-id.webhook-timestamp.body">``, keyed with the bytes behind the ``whsec_`` secret. The secret is derived from
the server secret, the endpoint id and ``secret_version`` (like the suppliers' redirect keys), so it is never
stored and every instance computes the same one. Supplier postbacks go through the same outbox, signed with the
supplier's redirect key instead (``postback_signature``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from invitelink.models import EVENT_TYPES, Event, WebhookAttempt, WebhookEndpoint, WebhookMessage, utcnow
from invitelink.security import derive_key, sign
from invitelink.services import idempotency
from invitelink.services.errors import Conflict, InvalidInput, get_owned, remove
from invitelink.services.pagination import Page, decode_cursor, encode_cursor, page_of
from invitelink.services.upsert import rowcount

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix)
# 24 bytes: 192 bits of key, and base64 without padding, as Standard Webhooks libraries generate them.
SECRET_BYTES = 24
# After a rotation the previous secret signs too, beside the new one, so receivers can switch without losing any.
ROTATION_GRACE = timedelta(hours=24)
# Every event is written once per subscribed endpoint in the transaction that causes it: a bound on endpoints is a
# bound on that work.
MAX_ENDPOINTS_PER_WORKSPACE = 20
MESSAGE_STATUSES = ("queued", "sending", "delivered", "failed")


def webhook_id(message_id: int) -> str:
    """The ``webhook-id`` header of every attempt of a message: receivers drop a repeat by it."""
    return f"msg_{message_id}"


def endpoint_key(server_secret: bytes, endpoint_id: int, version: int) -> bytes:
    return derive_key(server_secret, f"webhook-endpoint:{endpoint_id}:{version}")[:SECRET_BYTES]


def endpoint_secret(server_secret: bytes, endpoint: WebhookEndpoint) -> str:
    """The endpoint's current ``whsec_`` secret, shown to the admin at creation and at rotation only."""
    return SECRET_PREFIX + base64.b64encode(endpoint_key(server_secret, endpoint.id, endpoint.secret_version)).decode()


def signing_keys(
    server_secret: bytes, endpoint_id: int, version: int, previous_until: datetime | None, now: datetime
) -> tuple[bytes, ...]:
    """The keys that sign a message now: the current one, and during a rotation's grace period the previous one."""
    keys = [endpoint_key(server_secret, endpoint_id, version)]
    if version > 1 and previous_until is not None and previous_until > now:
        keys.append(endpoint_key(server_secret, endpoint_id, version - 1))
    return tuple(keys)


def standard_signature(keys: Sequence[bytes], message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per key, space-separated (receivers accept any)."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)


def postback_signature(supplier_secret: str, body: str) -> str:
    """The ``x-invitelink-signature`` header of a supplier postback: hex HMAC-SHA256 of the body, keyed with the
    supplier's redirect secret (``shs_…``, as the redirect signatures are)."""
    return "sha256=" + sign(supplier_secret.encode(), body)


def check_event_types(event_types: Sequence[str] | None) -> list[str] | None:
    """The subscribed types, duplicates dropped, or None for every type; InvalidInput names an unknown one."""
    if event_types is None:
        return None
    unknown = [t for t in event_types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            f"event_types: unknown event type {unknown[0]!r}; known types: {', '.join(EVENT_TYPES)}",
            field="event_types",
        )
    if not event_types:
        raise InvalidInput("event_types: an empty list would receive nothing; omit it (or null) for every type")
    return list(dict.fromkeys(event_types))


def create_endpoint(
    session: Session, workspace_id: int, url: str, event_types: Sequence[str] | None, description: str
) -> WebhookEndpoint:
    """A new endpoint; ``url`` has passed ``outbound.check_url`` already (it resolves names, so it runs before the
    transaction)."""
    types = check_event_types(event_types)
    count = session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)
    )
    if (count or 0) >= MAX_ENDPOINTS_PER_WORKSPACE:
        raise Conflict(f"a workspace has at most {MAX_ENDPOINTS_PER_WORKSPACE} webhook endpoints; delete one first")
    endpoint = WebhookEndpoint(workspace_id=workspace_id, url=url, event_types=types, description=description)
    session.add(endpoint)
    session.flush()
    return endpoint


def create_endpoint_once(
    session: Session,
    workspace_id: int,
    url: str,
    event_types: Sequence[str] | None,
    description: str,
    keyed: tuple[str, idempotency.Keyed] | None,
    answer_of: Callable[[WebhookEndpoint], dict[str, Any]],
) -> idempotency.Stored:
    """:func:`create_endpoint` under an optional Idempotency-Key (``keyed``: the credential's digest and the key):
    a retry within a day gets the first answer (its secret null) and creates nothing. The answer, built by
    ``answer_of`` (the admin API's body), is stored in the create's own transaction."""
    credential, key = keyed if keyed is not None else ("", None)
    return idempotency.once(
        session,
        credential,
        key,
        lambda: idempotency.Stored(
            201, answer_of(create_endpoint(session, workspace_id, url, event_types, description))
        ),
    )


def get_endpoint(session: Session, workspace_id: int, endpoint_id: int) -> WebhookEndpoint:
    return get_owned(session, WebhookEndpoint, endpoint_id, "webhook endpoint not found", workspace_id=workspace_id)


def list_endpoints(session: Session, workspace_id: int, cursor: str | None, limit: int) -> Page[WebhookEndpoint]:
    return page_of(session, WebhookEndpoint, cursor, limit, WebhookEndpoint.workspace_id == workspace_id)


def update_endpoint(session: Session, workspace_id: int, endpoint_id: int, fields: dict[str, Any]) -> WebhookEndpoint:
    """Set ``url`` (checked before the transaction), ``event_types``, ``description``; ``enabled`` True re-enables
    a disabled endpoint (its failure history forgotten), False disables it."""
    endpoint = get_endpoint(session, workspace_id, endpoint_id)
    if "event_types" in fields:
        endpoint.event_types = check_event_types(fields["event_types"])
    if "description" in fields:
        endpoint.description = fields["description"]
    if "url" in fields and fields["url"] != endpoint.url:
        endpoint.url = fields["url"]
        # Messages still waiting go to the new URL: an admin changes it because the old one is wrong.
        session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.endpoint_id == endpoint.id, WebhookMessage.status.in_(("queued", "sending")))
            .values(url=endpoint.url)
        )
    enabled = fields.get("enabled")
    if enabled is True and endpoint.disabled_at is not None:
        endpoint.disabled_at = endpoint.disabled_reason = endpoint.failing_since = None
    elif enabled is False and endpoint.disabled_at is None:
        session.flush()
        disable(session, endpoint.id, "disabled by an admin", utcnow())
        session.refresh(endpoint)
    session.flush()
    return endpoint


def disable(session: Session, endpoint_id: int, reason: str, now: datetime) -> bool:
    """Disable the endpoint and fail its waiting messages: a disabled endpoint is sent nothing (events recorded
    meanwhile queue nothing for it either). False when it was disabled already."""
    changed = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.disabled_at.is_(None))
        .values(disabled_at=now, disabled_reason=reason[:500])
    )
    if rowcount(changed) != 1:
        return False
    session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.endpoint_id == endpoint_id, WebhookMessage.status.in_(("queued", "sending")))
        .values(status="failed", locked_until=None, last_error=f"endpoint disabled: {reason}"[:1000])
    )
    return True


def delete_endpoint(session: Session, workspace_id: int, endpoint_id: int) -> None:
    """Delete the endpoint with its messages and attempts (the database cascades)."""
    remove(session, get_endpoint(session, workspace_id, endpoint_id))


def rotate_secret(session: Session, endpoint: WebhookEndpoint) -> None:
    """A new secret; the one it replaces keeps signing (a second signature) for ``ROTATION_GRACE``. A second
    rotation within the grace period drops the oldest: two secrets sign at most."""
    endpoint.secret_version += 1
    endpoint.previous_secret_until = utcnow() + ROTATION_GRACE
    session.flush()


@dataclass(frozen=True)
class AttemptRow:
    id: int
    message_id: int
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    created_at: datetime


@dataclass(frozen=True)
class MessageRow:
    id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    due_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


def _newest_first(
    session: Session, stmt: Select[Any], id_column: InstrumentedAttribute[int], cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    """A page of a log, newest first (what an admin looking into a failure wants), continued by keyset."""
    if cursor:
        before = decode_cursor(cursor)
        if not 0 < before < 2**63:
            raise InvalidInput("invalid cursor: pass next_cursor from the previous page", field="cursor")
        stmt = stmt.where(id_column < before)
    rows = list(session.execute(stmt.order_by(id_column.desc()).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more and rows else None


def list_attempts(session: Session, endpoint: WebhookEndpoint, cursor: str | None, limit: int) -> Page[AttemptRow]:
    """The endpoint's delivery log, newest first."""
    stmt = (
        select(
            WebhookAttempt.id,
            WebhookAttempt.message_id,
            Event.type.label("event_type"),
            WebhookAttempt.attempt,
            WebhookAttempt.status_code,
            WebhookAttempt.error,
            WebhookAttempt.duration_ms,
            WebhookAttempt.created_at,
        )
        .join(WebhookMessage, WebhookMessage.id == WebhookAttempt.message_id)
        .join(Event, Event.id == WebhookMessage.event_id)
        .where(WebhookAttempt.endpoint_id == endpoint.id)
    )
    rows, next_cursor = _newest_first(session, stmt, WebhookAttempt.id, cursor, limit)
    return Page([AttemptRow(**row._asdict()) for row in rows], next_cursor)


def list_messages(
    session: Session, endpoint: WebhookEndpoint, status: str | None, cursor: str | None, limit: int
) -> Page[MessageRow]:
    """The endpoint's messages, newest first, optionally of one status."""
    where: list[ColumnElement[bool]] = [WebhookMessage.endpoint_id == endpoint.id]
    if status is not None:
        where.append(WebhookMessage.status == status)
    stmt = (
        select(
            WebhookMessage.id,
            WebhookMessage.event_id,
            Event.type.label("event_type"),
            WebhookMessage.status,
            WebhookMessage.attempts,
            WebhookMessage.due_at,
            WebhookMessage.last_status_code,
            WebhookMessage.last_error,
            WebhookMessage.delivered_at,
            WebhookMessage.created_at,
        )
        .join(Event, Event.id == WebhookMessage.event_id)
        .where(*where)
    )
    rows, next_cursor = _newest_first(session, stmt, WebhookMessage.id, cursor, limit)
    return Page([MessageRow(**row._asdict()) for row in rows], next_cursor)
