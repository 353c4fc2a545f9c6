"""Swagger UI (/docs) and ReDoc (/redoc) served from files installed with the project, so both work on a machine
without internet: FastAPI's own pages load their JavaScript and CSS from a CDN and stay blank offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from invitelink.api.openapi_errors import document_errors

# The Swagger UI 5 and ReDoc 2 bundles that the fastapi-offline package ships (we use its files, not its FastAPI
# factory, which would build the app for us). Swagger UI 5 is needed: FastAPI writes OpenAPI 3.1, which 4.x cannot
# render.
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
# Two segments: "/{project}/" (matched first, families/registry.py) and the slash-less "/{project}" fallback only
# ever match one segment, so they cannot shadow these files.
ASSETS_URL = "/docs/assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

# The scheme people must use in the Authorize dialog. Swagger UI lists schemes in the order of
# components.securitySchemes, which FastAPI fills in route order, so the questionnaire callback's bearer (a route
# included before the admin API) came first, and admins pasted their token there and got 401 on every admin call.
ADMIN_SCHEME = "OAuth2PasswordBearer"


def install_docs(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and the asset mount to ``app``, built with ``docs_url=None`` and
    ``redoc_url=None``. Called before the slash-less fallback routes are included (they match every one-segment
    path, /docs and /redoc among them)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,  # a font CDN: offline it only delays the page
        )

    # GET and HEAD, as FastAPI's own docs routes answer (tests/test_routes.py: HEAD is answered where GET is).
    for path, endpoint in (("/docs", swagger_ui), (OAUTH2_REDIRECT_URL, oauth2_redirect), ("/redoc", redoc)):
        app.add_api_route(path, endpoint, methods=["GET", "HEAD"], include_in_schema=False)

    build = app.openapi

    def openapi_with_admin_scheme_first() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.get("components", {}).get("securitySchemes")
            if schemes and ADMIN_SCHEME in schemes:
                schema["components"]["securitySchemes"] = {ADMIN_SCHEME: schemes[ADMIN_SCHEME]} | {
                    name: scheme for name, scheme in schemes.items() if name != ADMIN_SCHEME
                }
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi_with_admin_scheme_first  # type: ignore[method-assign]
