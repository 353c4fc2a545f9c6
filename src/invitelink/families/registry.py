"""The API families in the order their routes are matched. Adding a dialect: one package under families/ with a
``FAMILY`` (invitelink.api.family.Family), and one line here."""

from __future__ import annotations

from invitelink.api.admin import ADMIN
from invitelink.api.errors import Renderer
from invitelink.api.family import Family
from invitelink.families import bounces, participation, sosci, supply, trigger

# First: "/{project}/" is the hot path of shop integrations, and FastAPI tries routes in order (matching the admin
# API's 60 operations first cost a third of the event loop's time under create_link load). No other route has the
# shape "/<segment>/" (tests/test_routes.py), so this order shadows nothing. The admin API, which only people and
# back-office scripts call, comes after every machine-facing family.
FAMILIES: tuple[Family, ...] = (
    sosci.FAMILY,
    participation.FAMILY,
    trigger.FAMILY,
    supply.FAMILY,
    bounces.FAMILY,
    ADMIN,
)


def renderer_for(path: str) -> Renderer:
    """The error answer of the family owning ``path`` (its longest matching prefix)."""
    best, length = FAMILIES[0].render_error, -1
    for family in FAMILIES:
        for prefix in family.prefixes:
            if path.startswith(prefix) and len(prefix) > length:
                best, length = family.render_error, len(prefix)
    return best


def family_for(path: str) -> Family:
    """The family owning ``path`` (its longest matching prefix): whose counters a request adds to (/metrics)."""
    best, length = FAMILIES[0], -1
    for family in FAMILIES:
        for prefix in family.prefixes:
            if path.startswith(prefix) and len(prefix) > length:
                best, length = family, len(prefix)
    return best
