"""Serial codes (SoSci access codes): anonymous tokens typed or handed out by hand."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from invitelink.models import Participation, Survey, Token
from invitelink.security import SERIAL_ALPHABET, random_code
from invitelink.services.errors import InvalidInput
from invitelink.services.pagination import Page, paginate

SERIAL_CODE_LENGTH = 8
MAX_CODES_PER_CALL = 10_000


def generate_serial_codes(session: Session, survey: Survey, count: int, notice: str = "") -> list[Token]:
    """``count`` new unique codes for the survey, each carrying ``notice``."""
    if not 1 <= count <= MAX_CODES_PER_CALL:
        raise InvalidInput(f"count must be between 1 and {MAX_CODES_PER_CALL}", field="count")
    for _attempt in range(3):
        codes: set[str] = set()
        while len(codes) < count:
            codes.add(random_code(SERIAL_CODE_LENGTH, SERIAL_ALPHABET))
        taken = set(session.scalars(select(Token.code).where(Token.code.in_(codes))))
        tokens = [Token(code=code, survey_id=survey.id, kind="serial_code", notice=notice) for code in codes - taken]
        try:
            # A race with another generator (31^8 codes) is rare; a retry draws a fresh batch.
            with session.begin_nested():
                session.add_all(tokens)
                session.flush()
        except IntegrityError:
            continue
        if len(tokens) < count:
            tokens += generate_serial_codes(session, survey, count - len(tokens), notice)
        return tokens
    raise InvalidInput("could not draw unique serial codes; try again")


def serial_codes_stmt(survey_id: int) -> Select[tuple[Token, Participation]]:
    return (
        select(Token, Participation)
        .outerjoin(Participation, Participation.token_id == Token.id)
        .where(Token.survey_id == survey_id, Token.kind == "serial_code")
    )


def list_serial_codes(
    session: Session, survey_id: int, cursor: str | None, limit: int
) -> Page[tuple[Token, Participation | None]]:
    return paginate(session, serial_codes_stmt(survey_id), Token.id, cursor, limit)
