"""The bounce family's use case: mark the quoted delivery bounced, and suppress the address for good failures."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from invitelink.families.bounces.dsn import Bounce
from invitelink.services import deliveries, unsubscribe
from invitelink.services.errors import NotFound


def record_bounce(session: Session, bounce: Bounce) -> dict[str, Any]:
    """The delivery that sent ``bounce.message_id`` becomes bounced (an event records it once); a permanent failure
    (5.x.x) puts its address on the workspace's suppression list."""
    found = deliveries.mark_bounced(session, bounce.message_id, f"{bounce.status} {bounce.diagnostic}".strip())
    if found is None:
        raise NotFound("no delivery of this service sent a message with that Message-ID")
    delivery_id, workspace_id, address = found
    suppressed = bool(bounce.permanent and address) and unsubscribe.suppress(session, workspace_id, address)
    return {
        "ok": True,
        "delivery_id": delivery_id,
        "status": "bounced",
        "permanent": bounce.permanent,
        "suppressed": suppressed,
    }
