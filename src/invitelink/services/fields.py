"""Reading fields of loosely typed JSON bodies (trigger and supply APIs), where integrations send numbers as
numbers or as strings."""

from __future__ import annotations

from typing import Any

from invitelink.services.errors import InvalidInput


def whole_number(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    """``body[key]`` as an int in ``low..high`` (``7``, ``7.0`` or ``"7"``); None when absent or empty."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{key} must be a whole number", field=key)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidInput(f"{key} must be a whole number", field=key) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise InvalidInput(f"{key} must be a whole number", field=key)
    if not low <= value <= high:
        raise InvalidInput(f"{key} must be between {low} and {high}", field=key)
    return value


def control_character(value: str) -> str | None:
    """The first control character (line breaks and tabs included) in ``value``, as ``\\u000d``, or None."""
    for char in value:
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char in "\u2028\u2029":
            return f"\\u{ord(char):04x}"
    return None


def check_single_line(value: str, field: str) -> str:
    """``value`` for a one-line field (a name, a title, a subject): these end up in mail headers, where a line
    break either cannot be encoded or splits the header."""
    found = control_character(value)
    if found is not None:
        raise InvalidInput(f"{field} must be one line without control characters (found {found})", field=field)
    return value
