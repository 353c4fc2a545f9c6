"""The supplier's redirects: where supplier traffic goes when it ends, signed with the supplier's secret so the
supplier can tell a real outcome from a typed URL."""

from __future__ import annotations

import hmac
import re
from hashlib import sha256
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from invitelink.models import Participation, Supplier, Token
from invitelink.security import constant_time_equal
from invitelink.services.suppliers import REDIRECT_COLUMNS, hmac_secret

OUTCOME_REDIRECT = {
    "completed": "success",
    "terminated": "terminate",
    "quotafull": "quotafull",
    "security": "security_check",
}
REDIRECT_OUTCOME = {redirect: status for status, redirect in OUTCOME_REDIRECT.items()}


def sign_redirect(template: str, pid: str, secret: str) -> str:
    """``{uid}`` = the PID; ``{hmac}`` = hex HMAC-SHA256 (key: the supplier's secret) of the URL with ``{uid}``
    filled and ``{hmac}`` left empty."""
    unsigned = template.replace("{uid}", quote(pid, safe=""))
    signature = hmac.new(secret.encode(), unsigned.replace("{hmac}", "").encode(), sha256).hexdigest()
    return unsigned.replace("{hmac}", signature)


def verify_redirect(url: str, secret: str) -> bool:
    """What a supplier does on receipt: recompute the signature over the URL with ``hmac=`` emptied."""
    match = re.search(r"([?&]hmac=)([0-9a-f]{64})", url)
    if match is None:
        return False
    unsigned = url[: match.start(2)] + url[match.end(2) :]
    expected = hmac.new(secret.encode(), unsigned.encode(), sha256).hexdigest()
    return constant_time_equal(expected, match.group(2))


def redirect_url(server_secret: bytes, supplier: Supplier, outcome: str, pid: str) -> str | None:
    """The supplier's signed redirect for ``outcome`` (success, terminate, quotafull, security_check), or None when
    the supplier has not configured one."""
    template: str = getattr(supplier, REDIRECT_COLUMNS[outcome])
    return sign_redirect(template, pid, hmac_secret(server_secret, supplier)) if template else None


def end_redirect(session: Session, server_secret: bytes, token_code: str) -> str | None:
    """After the end redirect recorded the outcome: the supplier's signed redirect for it, if this is supplier
    traffic with an outcome and a configured redirect."""
    row = session.execute(
        select(Participation, Supplier)
        .join(Token, Token.id == Participation.token_id)
        .join(Supplier, Supplier.id == Participation.supplier_id)
        .where(Token.code == token_code)
    ).first()
    if row is None:
        return None
    participation, supplier = row
    if participation.status not in OUTCOME_REDIRECT or not participation.pid:
        return None
    return redirect_url(server_secret, supplier, OUTCOME_REDIRECT[participation.status], participation.pid)
