"""Message templates: four placeholders and the contact's attributes (``{{attr.name}}``) are filled; nothing else in
a message is evaluated."""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDERS = ("recipient_name", "workspace_name", "survey_title", "survey_link")
# {{attr.NAME}}: NAME as services/contacts.py allows it (letters, digits, "_", "-", spaces; 64 at most), so a
# template cannot reach anything but the contact's own attributes.
_PATTERN = re.compile(r"\{\{\s*(?:(" + "|".join(PLACEHOLDERS) + r")|attr\.([A-Za-z0-9_ -]{1,64}?))\s*\}\}")


def render(template: str, values: Mapping[str, str], attributes: Mapping[str, str] | None = None) -> str:
    """Replace ``{{name}}`` for the known names and ``{{attr.name}}`` for the contact's attributes in one pass (so a
    value is never expanded again); an attribute the contact does not have renders empty."""
    attributes = attributes or {}

    def fill(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return values.get(match.group(1), "")
        return str(attributes.get(match.group(2), ""))

    return _PATTERN.sub(fill, template)
