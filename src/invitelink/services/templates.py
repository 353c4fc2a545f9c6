"""Message templates: exactly four placeholders are filled; nothing else in a message is evaluated."""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDERS = ("recipient_name", "workspace_name", "survey_title", "survey_link")
_PATTERN = re.compile(r"\{\{\s*(" + "|".join(PLACEHOLDERS) + r")\s*\}\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{{name}}`` for the known names in one pass (so a value is never expanded again)."""
    return _PATTERN.sub(lambda m: values.get(m.group(1), ""), template)
