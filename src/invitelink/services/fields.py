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
