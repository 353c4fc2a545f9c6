"""The supplier's redirects: where supplier traffic goes when it ends, signed with the supplier's secret so the
supplier can tell a real outcome from a typed URL. A completion that only the browser reported, on a survey that
trusts only the questionnaire's callback, goes to the success redirect unsigned and marked ``verified=0``."""

from __future__ import annotations

import hmac
import re
from hashlib import sha256
from urllib.parse import quote, urlsplit, urlunsplit

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
UNVERIFIED_MARK = "verified=0"


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


def unverified_redirect(template: str, pid: str) -> str:
    """``{uid}`` = the PID, ``{hmac}`` left empty (so no signature a supplier could accept) and ``verified=0`` added
    to the query: the participant reached the end, but the completion is not confirmed yet."""
    parts = urlsplit(template.replace("{uid}", quote(pid, safe="")).replace("{hmac}", ""))
    query = f"{parts.query}&{UNVERIFIED_MARK}" if parts.query else UNVERIFIED_MARK
    return urlunsplit(parts._replace(query=query))


def redirect_url(server_secret: bytes, supplier: Supplier, outcome: str, pid: str) -> str | None:
    """The supplier's signed redirect for ``outcome`` (success, terminate, quotafull, security_check), or None when
    the supplier has not configured one."""
    template: str = getattr(supplier, REDIRECT_COLUMNS[outcome])
    return sign_redirect(template, pid, hmac_secret(server_secret, supplier)) if template else None


def outcome_redirect(server_secret: bytes, supplier: Supplier, participation: Participation) -> str | None:
    """Where a participation of ``supplier`` that has ended goes: the signed redirect of its outcome, or the
    unverified success redirect while a browser-reported completion awaits the callback. None while it is in
    progress or when the supplier configured no such redirect."""
    if not participation.pid:
        return None
    if participation.status in OUTCOME_REDIRECT:
        return redirect_url(server_secret, supplier, OUTCOME_REDIRECT[participation.status], participation.pid)
    if participation.reported_status == "completed" and supplier.redirect_success:
        return unverified_redirect(supplier.redirect_success, participation.pid)
    return None


def end_redirect(session: Session, server_secret: bytes, token_code: str) -> str | None:
    """After the end redirect recorded the outcome: the supplier's redirect for it, if this is supplier traffic
    with an outcome (or a reported completion) and a configured redirect."""
    row = session.execute(
        select(Participation, Supplier)
        .join(Token, Token.id == Participation.token_id)
        .join(Supplier, Supplier.id == Participation.supplier_id)
        .where(Token.code == token_code)
    ).first()
    if row is None:
        return None
    participation, supplier = row
    return outcome_redirect(server_secret, supplier, participation)
