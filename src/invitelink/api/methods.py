"""405 answers that list every method of the resource.

FastAPI registers one route per operation, so ``/admin/v1/surveys/{id}`` is three routes (GET, PATCH, DELETE).
Starlette answers another method with the ``Allow`` of the first route whose path matched (``Allow: GET``), which
tells a client that PATCH and DELETE do not exist. This handler answers instead with the union of the methods of
every route on that path (RFC 9110 §15.5.6), in the error format of the family that owns the path. It runs only on
a 405, so the request path pays nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

if TYPE_CHECKING:
    from invitelink.api.errors import Renderer


@dataclass(frozen=True)
class PathMethods:
    pattern: re.Pattern[str]
    methods: frozenset[str]
    wide: bool  # a route that matches almost anything (the slash-less /{project}): counted only when alone


def path_methods(app: FastAPI, wide: frozenset[str]) -> list[PathMethods]:
    """Every route's path pattern and methods, included routers flattened."""
    table = []
    for route in iter_route_contexts(app.router.routes):
        if route.path and route.methods:
            table.append(PathMethods(compile_path(route.path)[0], frozenset(route.methods), route.path in wide))
    return table


def allowed_methods(table: list[PathMethods], path: str) -> list[str]:
    """The methods of the routes whose path matches ``path`` most closely: fewest path parameters, so that
    ``/invitations/accept`` is not taken for ``/invitations/{invitation_id}``."""
    best: dict[tuple[bool, int], set[str]] = {}
    for entry in table:
        if entry.pattern.match(path):
            best.setdefault((entry.wide, entry.pattern.groups), set()).update(entry.methods)
    return sorted(best[min(best)]) if best else []


@dataclass
class Methods:
    """The app's path table, built at its first use, when every route is in place."""

    app: FastAPI
    wide: frozenset[str]
    table: list[PathMethods] = field(default_factory=list)

    def allowed(self, path: str) -> list[str]:
        if not self.table:
            self.table.extend(path_methods(self.app, self.wide))
        return allowed_methods(self.table, path)


def method_not_allowed(request: Request, render: Renderer) -> Response | None:
    """405 with the full Allow when another method would serve ``request``'s path, else None."""
    methods: Methods = request.app.state.methods
    allow = methods.allowed(request.url.path)
    if not allow or request.method in allow:
        return None
    response = render(405, f"method {request.method} is not allowed here; use {', '.join(allow)}", None)
    response.headers["Allow"] = ", ".join(allow)
    return response


def install_method_not_allowed(app: FastAPI, renderer_for: Callable[[str], Renderer], wide: frozenset[str]) -> None:
    """Answer every Starlette 405 with the full ``Allow``, rendered by ``renderer_for(path)``; other HTTP errors
    (a path no route matches) keep FastAPI's answer."""
    app.state.methods = Methods(app, wide)

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        answer = method_not_allowed(request, renderer_for(request.url.path)) if exc.status_code == 405 else None
        return answer if answer is not None else await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, handle)
