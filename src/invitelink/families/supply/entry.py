"""Supplier traffic coming in: signed survey links (``sid`` + ``security_code``) and admission at
/survey/letdosurvey with per-country limits. The signed redirects back to the supplier are a shared service
(services/supplier_redirects.py), since the end redirect of every participant uses them too.

The security code covers the survey and the supplier only: one link per survey is handed out with ``[%%pid%%]`` for
the supplier to fill in, so the PID cannot be signed, and whoever holds a link can type any PID into it. A PID the
supplier registered (``add_participant``, authenticated) brings its country; one it did not gets no place that a
country limit would refuse (see ``_unregistered_has_room``)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass
from hashlib import sha256
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Allocation, Panelist, Participation, Quota, Supplier, Survey, Token
from invitelink.security import constant_time_equal, derive_key, random_code
from invitelink.services import events, supplier_redirects
from invitelink.services.links import TOKEN_LENGTH, questionnaire_redirect
from invitelink.services.participation import record_click
from invitelink.services.supplier_redirects import OUTCOME_REDIRECT, REDIRECT_OUTCOME

SECURITY_CODE_LENGTH = 16
PID_PLACEHOLDER = "[%%pid%%]"
MAX_PID_LENGTH = 128
# Participations that hold a place under a country limit: in progress or completed.
COUNTED = ("clicked", "started", "completed")
_PID = re.compile(r"^[\x21-\x7e]{1,128}$")


def sid_for(survey_public_id: str, supplier_public_id: str, environment: str) -> str:
    return base64.b64encode(f"{survey_public_id}|{supplier_public_id}|{environment}".encode()).decode()


def security_code(server_secret: bytes, sid: str) -> str:
    mac = hmac.new(derive_key(server_secret, "supply-link"), sid.encode(), sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:SECURITY_CODE_LENGTH]


def survey_link(public_url: str, server_secret: bytes, survey: Survey, supplier: Supplier, environment: str) -> str:
    sid = sid_for(survey.public_id, supplier.public_id, environment)
    query = urlencode({"sid": sid, "security_code": security_code(server_secret, sid)})
    return f"{public_url}/survey/letdosurvey?{query}&PID={PID_PLACEHOLDER}"


@dataclass(frozen=True)
class Outcome:
    """Where the entrant goes: the questionnaire, a supplier redirect, or an error page (``page`` set)."""

    url: str | None = None
    # "missing" (404), "bad_pid" (400), or the participation status whose supplier redirect is not configured.
    page: str | None = None


def _supplier_redirect(server_secret: bytes, supplier: Supplier, outcome: str, pid: str) -> Outcome:
    url = supplier_redirects.redirect_url(server_secret, supplier, outcome, pid)
    return Outcome(url=url) if url is not None else Outcome(page=REDIRECT_OUTCOME[outcome])


def decode_sid(sid: str) -> tuple[str, str, str] | None:
    try:
        parts = base64.b64decode(sid.encode(), validate=True).decode().split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if len(parts) != 3 or parts[2] not in ("sandbox", "production"):
        return None
    return parts[0], parts[1], parts[2]


def _participation_for(
    session: Session, survey_id: int, supplier_id: int, environment: str, pid: str
) -> Participation | None:
    return session.scalar(
        select(Participation).where(
            Participation.survey_id == survey_id,
            Participation.supplier_id == supplier_id,
            Participation.environment == environment,
            Participation.pid == pid,
        )
    )


def _lock_quota(session: Session, allocation_id: int, country: str) -> Quota | None:
    """The country's limit row, locked on PostgreSQL so concurrent entrants of that country are admitted one at
    a time (SQLite has a single writer already)."""
    stmt = select(Quota).where(Quota.allocation_id == allocation_id, func.lower(Quota.country) == country.lower())
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def _admitted(session: Session, survey_id: int, supplier_id: int, environment: str, country: str) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Participation.survey_id == survey_id,
                Participation.supplier_id == supplier_id,
                Participation.environment == environment,
                func.lower(Participation.country) == country.lower(),
                Participation.status.in_(COUNTED),
            )
        )
        or 0
    )


def _unregistered_has_room(
    session: Session, allocation_id: int, survey_id: int, supplier_id: int, environment: str
) -> bool:
    """Room for an entrant whose PID the supplier never registered. It may be from any limited country, so it is
    admitted only while every one of them still has a free place, and entrants without a known country together
    never hold more places than the limits add up to. Without limits, there is nothing to skip."""
    stmt = select(Quota.country, Quota.limit).where(Quota.allocation_id == allocation_id).order_by(Quota.id)
    if session.get_bind().dialect.name == "postgresql":
        # Every limit row, in id order: an entrant of one country locks only its own row, so no cycle can form.
        stmt = stmt.with_for_update()
    limits: dict[str, int] = {country.lower(): limit for country, limit in session.execute(stmt).all()}
    if not limits:
        return True
    held: dict[str | None, int] = {
        country: int(count)
        for country, count in session.execute(
            select(func.lower(Participation.country), func.count())
            .where(
                Participation.survey_id == survey_id,
                Participation.supplier_id == supplier_id,
                Participation.environment == environment,
                Participation.status.in_(COUNTED),
            )
            .group_by(func.lower(Participation.country))
        ).all()
    }
    if any(held.get(country, 0) >= limit for country, limit in limits.items()):
        return False
    in_limited = sum(held.get(country, 0) for country in limits)
    return in_limited + held.get(None, 0) < sum(limits.values())


def _record(
    session: Session,
    survey: Survey,
    supplier: Supplier,
    environment: str,
    pid: str,
    country: str | None,
    status: str,
) -> Participation:
    """A new participation with its supplier token; a concurrent twin (same PID) wins and is returned."""
    token = Token(code=random_code(TOKEN_LENGTH), survey_id=survey.id, kind="supplier")
    participation = Participation(
        survey_id=survey.id,
        supplier_id=supplier.id,
        environment=environment,
        pid=pid,
        country=country,
        status=status,
        # Refused at admission (over a limit): the service decided, not a browser, so no callback reverses it.
        outcome_source=None if status == "clicked" else "admission",
    )
    try:
        with session.begin_nested():
            session.add(token)
            session.flush()
            participation.token_id = token.id
            session.add(participation)
            session.flush()
    except IntegrityError:
        winner = _participation_for(session, survey.id, supplier.id, environment, pid)
        assert winner is not None
        return winner
    if status != "clicked":  # recorded as ended at once (over a country limit); its click is recorded apart
        events.participation_changed(session, participation.id, f"participation.{status}")
    return participation


def _click(session: Session, participation: Participation, ip: str | None, user_agent: str | None) -> str:
    """Count the click like any participant link (one atomic UPDATE); returns the participation's token code."""
    token = session.get(Token, participation.token_id)
    assert token is not None
    record_click(session, token, ip, user_agent)
    return token.code


def enter(
    session: Session,
    server_secret: bytes,
    sid: str,
    code: str,
    pid: str | None,
    ip: str | None,
    user_agent: str | None,
) -> Outcome:
    """Open a supplier's survey link for one PID: check the signature, the allocation and the country limit."""
    decoded = decode_sid(sid)
    if decoded is None:
        return Outcome(page="missing")
    survey_public_id, supplier_public_id, environment = decoded
    row = session.execute(
        select(Survey, Supplier, Allocation)
        .join(Supplier, Supplier.workspace_id == Survey.workspace_id)
        .outerjoin(Allocation, (Allocation.survey_id == Survey.id) & (Allocation.supplier_id == Supplier.id))
        .where(Survey.public_id == survey_public_id, Supplier.public_id == supplier_public_id)
    ).first()
    if row is None:
        return Outcome(page="missing")
    survey, supplier, allocation = row
    if not pid or pid == PID_PLACEHOLDER or not _PID.fullmatch(pid):
        return Outcome(page="bad_pid")
    if not constant_time_equal(security_code(server_secret, sid), code or "") or allocation is None:
        # A forged or altered link (or one for a survey the supplier no longer has) goes back as a security fail.
        return _supplier_redirect(server_secret, supplier, "security_check", pid)
    existing = _participation_for(session, survey.id, supplier.id, environment, pid)
    if existing is not None:
        # After the end (or a completion reported and awaiting the callback), back to the supplier with the same
        # redirect the end gave.
        if existing.status in OUTCOME_REDIRECT:
            return _supplier_redirect(server_secret, supplier, OUTCOME_REDIRECT[existing.status], pid)
        if existing.reported_status is not None:
            url = supplier_redirects.outcome_redirect(server_secret, supplier, existing)
            return Outcome(url=url) if url is not None else Outcome(page=existing.reported_status)
        return Outcome(url=questionnaire_redirect(survey.questionnaire_url, _click(session, existing, ip, user_agent)))
    if survey.status != "active" or allocation.status != "active":
        return _supplier_redirect(server_secret, supplier, "quotafull", pid)
    registered = session.execute(
        select(Panelist.country).where(
            Panelist.supplier_id == supplier.id, Panelist.environment == environment, Panelist.pid == pid
        )
    ).first()
    country = (registered.country or None) if registered is not None else None
    if registered is None:
        if not _unregistered_has_room(session, allocation.id, survey.id, supplier.id, environment):
            _click(session, _record(session, survey, supplier, environment, pid, None, "quotafull"), ip, user_agent)
            return _supplier_redirect(server_secret, supplier, "quotafull", pid)
    elif country:
        quota = _lock_quota(session, allocation.id, country)
        if quota is not None and _admitted(session, survey.id, supplier.id, environment, country) >= quota.limit:
            _click(session, _record(session, survey, supplier, environment, pid, country, "quotafull"), ip, user_agent)
            return _supplier_redirect(server_secret, supplier, "quotafull", pid)
    participation = _record(session, survey, supplier, environment, pid, country, "clicked")
    return Outcome(url=questionnaire_redirect(survey.questionnaire_url, _click(session, participation, ip, user_agent)))
