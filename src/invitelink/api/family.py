"""What the app needs to know of an API family: the paths it owns, its routes and its error answer."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from invitelink.api.errors import Renderer


@dataclass(frozen=True)
class Family:
    name: str
    # Path prefixes whose errors outside a route (a body over the size limit) are this family's; the longest
    # matching prefix of all families wins.
    prefixes: tuple[str, ...]
    routers: tuple[APIRouter, ...]
    render_error: Renderer
    # Routes that match too widely to come before any other family's (the slash-less /{project}): included last.
    fallback_routers: tuple[APIRouter, ...] = ()
