"""The features that identify a contact (e-mail, mobile number in E.164, uid) and their normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from invitelink.services.errors import InvalidInput

MAX_UID_LENGTH = 255


def normalize_email(raw: str) -> str:
    """Trimmed, lower-cased, syntactically valid address (no DNS look-up: it must work offline and fast)."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"email is not a valid e-mail address: {exc}", field="email") from exc
    return result.normalized.lower()


def normalize_mobile(raw: str) -> str:
    """E.164 (``+491701234567``); the number must carry its country code (``+`` or ``00``)."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(
            "mobile must be an international number with country code, e.g. +491701234567", field="mobile"
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("mobile is not a valid phone number", field="mobile")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalize_uid(raw: str) -> str:
    """Printable ASCII only (SoSci), trimmed, 1 to 255 characters."""
    text = raw.strip()
    if not text or len(text) > MAX_UID_LENGTH or not all(" " <= ch <= "~" for ch in text):
        raise InvalidInput(f"uid must be 1 to {MAX_UID_LENGTH} printable ASCII characters", field="uid")
    return text


@dataclass(frozen=True)
class Features:
    """The identifying features of a contact, normalised (None where not given)."""

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
        """(name, value) of each feature present, in matching priority: e-mail, mobile, uid."""
        return [(k, v) for k, v in (("email", self.email), ("mobile", self.mobile), ("uid", self.uid)) if v]
