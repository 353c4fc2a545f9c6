"""The ASGI application factory."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import text

from invitelink import __version__, metrics
from invitelink.access_log import RequestLog
from invitelink.api.methods import install_method_not_allowed
from invitelink.config import Settings
from invitelink.db import Database
from invitelink.docs import install_docs
from invitelink.families.registry import FAMILIES, renderer_for
from invitelink.limits import BodySizeLimit
from invitelink.migrate import is_at_head
from invitelink.rate_limits import RateLimits
from invitelink.security import PasswordWorkBusy, limit_password_work

DESCRIPTION = """
Personal survey invitation links behind three API families, over one data model:

* **SoSci-style mailing API**: personal links, serial mails, serial-code and address status.
* **Trigger API** (`POST /api/invitation-trigger`): bearer trigger tokens that queue invitation batches.
* **Supplier API** (`/sandbox/v1/`, `/production/v1/`): R4I-style inventory, participants, signed links, stats.
* **Admin API** (`/admin/v1/`): everything else. Use **Authorize** with your e-mail and password.

Limits: request bodies 1 MiB (contact imports 10 MiB); list pages hold at most 200 items (`limit`), continued
with `cursor`.
"""

TAGS = [
    {"name": "auth", "description": "Log in (OAuth2 password flow) and out."},
    {"name": "workspaces", "description": "Tenants. Every object belongs to one workspace."},
    {
        "name": "members",
        "description": "Who may do what: owner, admin, editor, viewer (read only). Accounts join by invitation only.",
    },
    {"name": "industries", "description": "Industry list used to classify surveys."},
    {"name": "surveys", "description": "Surveys, their status and questionnaire callback secret."},
    {"name": "mailings", "description": "Serial mailings (M{id}) and trigger batches."},
    {"name": "contacts", "description": "Contacts of a survey; single and bulk import."},
    {"name": "serial codes", "description": "Access codes typed by participants."},
    {"name": "sosci API accesses", "description": "API URLs of the SoSci-style mailing API (key shown once)."},
    {"name": "trigger tokens", "description": "Bearer secrets (sit_…) of the trigger API, with their defaults."},
    {"name": "results", "description": "Participations, responses, invitation metadata and contacts; CSV export."},
    {"name": "deliveries", "description": "What happened: deliveries, the funnel, the event log; requeue failures."},
    {"name": "suppressions", "description": "Addresses never mailed again (unsubscribed, bounced, or added)."},
    {"name": "bounces", "description": "Delivery status notifications piped in by the operator's mail server."},
    {"name": "webhooks", "description": "Endpoints that receive the workspace's events, signed (Standard Webhooks)."},
    {"name": "sosci mailing API", "description": "PUBLIC_URL/{project}/: the mailing API and participant links."},
    {"name": "trigger API", "description": "POST /api/invitation-trigger: queue an invitation batch."},
    {"name": "supplier API (sandbox)", "description": "R4I-style supply API on test keys (R4I_TEST_…)."},
    {"name": "supplier API (production)", "description": "R4I-style supply API on live keys (R4I_LIVE_…)."},
    {"name": "suppliers", "description": "Panel suppliers, their API keys, allocations and redirects."},
    {"name": "participation", "description": "Questionnaire callback and end redirect."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


def serving_app() -> FastAPI:
    """The app `invitelink serve` runs (uvicorn factory, once per worker process)."""
    return create_app(freeze_heap=True)


def create_app(settings: Settings | None = None, *, freeze_heap: bool = False) -> FastAPI:
    """The application. ``freeze_heap``: this app owns its process (see the lifespan); tests build many apps in one
    process and leave it off."""
    settings = settings or Settings()
    database = Database(settings.database_url)
    rate_limits = RateLimits(settings)
    # Per process (argon2's memory is the process's): the last app built in a process sets it.
    limit_password_work(settings.password_hash_concurrency, settings.password_hash_wait_seconds)
    engine = database.read_engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if settings.worker == "embedded":
            from invitelink.worker.runner import Worker

            # Same code as `invitelink worker`, in this process's event loop.
            task = asyncio.create_task(Worker(settings, database).run(stop))
        if freeze_heap:
            # Everything imported and built at startup lives as long as the process. Moved out of the collector's
            # reach, a full collection no longer walks those ~130,000 objects: it took 90 ms, stopping every
            # request at once, and set the p99 latency of create_link under load.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            database.dispose()
            await rate_limits.aclose()

    app = FastAPI(
        title="invitelink",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        # Served by install_docs from installed files instead of a CDN (docs.py).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.rate_limits = rate_limits

    @app.exception_handler(PasswordWorkBusy)
    async def password_work_busy(request: Request, exc: PasswordWorkBusy) -> Response:
        # Wherever a password is hashed or checked (login, accepting an invitation, …): the owning family's 503.
        response = renderer_for(request.url.path)(503, exc.message, None)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    app.add_middleware(
        BodySizeLimit,
        default=settings.max_body_bytes,
        overrides={"/contacts/import": settings.max_import_bytes},
        render=renderer_for,
        read_timeout=settings.body_read_timeout_seconds,
    )
    # Added last, so outermost: the request id is set before anything logs, and the access log times everything.
    app.add_middleware(RequestLog, write_lines=settings.access_log)
    # The families in the registry's order (families/registry.py says why the order matters).
    for family in FAMILIES:
        for router in family.routers:
            app.include_router(router)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The database answers and is migrated to head")
    async def readyz(request: Request) -> JSONResponse:
        def check() -> tuple[bool, str]:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                if not is_at_head(engine):
                    return False, "database is not migrated to head: run `invitelink migrate`"
            except Exception as exc:  # any driver error means "not ready", and says why
                return False, f"database unreachable: {type(exc).__name__}"
            return True, "ok"

        ready, detail = await run_in_threadpool(check)
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "detail": detail}, status_code=200 if ready else 503
        )

    # Load balancers probe with HEAD as often as with GET; not in the schema, where it would repeat GET's operation.
    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)

    install_docs(app)

    app.include_router(metrics.router)  # before the fallback: "/{project}" would take "/metrics"

    # Last: routes that match too widely (the slash-less "/{project}" redirect matches every one-segment path).
    wide: set[str] = set()
    for family in FAMILIES:
        for router in family.fallback_routers:
            app.include_router(router)
            wide.update(route.path for route in router.routes if isinstance(route, APIRoute))
    install_method_not_allowed(app, renderer_for, frozenset(wide))
    return app
