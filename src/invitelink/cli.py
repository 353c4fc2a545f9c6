"""The ``invitelink`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session

from invitelink.config import Settings
from invitelink.db import Database
from invitelink.migrate import upgrade_to_head
from invitelink.services.errors import DomainError

T = TypeVar("T")
P = ParamSpec("P")


def _migrate(settings: Settings) -> None:
    upgrade_to_head(settings.database_url)


def _write(settings: Settings, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """One unit of work of a command, through the write seam, on a small pool that is closed afterwards."""
    database = Database(settings.database_url, pool_size=1)
    try:
        return database.write_blocking(fn, *args, **kwargs)
    finally:
        database.dispose()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    _migrate(settings)
    uvicorn.run(
        "invitelink.app:serving_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        # Access logs carry full URLs, and personal links are secrets: keep them out of logs.
        access_log=False,
    )
    return 0


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    _migrate(settings)
    print("database is at head", file=sys.stderr)
    return 0


def cmd_worker(_args: argparse.Namespace, settings: Settings) -> int:
    from invitelink.worker.runner import run_forever

    _migrate(settings)
    run_forever(settings)
    return 0


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    from invitelink.services.accounts import create_admin

    _migrate(settings)
    try:
        workspace, user = _write(settings, create_admin, args.email, args.password, args.workspace)
        print(f"created owner {user.email} of workspace {workspace.id} ({workspace.name})")
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from invitelink.services.demo import seed_demo

    _migrate(settings)
    result = _write(settings, seed_demo, settings)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Demo workspace {result['workspace']['id']} is ready.")
        print(f"  admin:   {result['admin']['email']} / {result['admin']['password']}")
        print(f"  token:   {result['admin']['token']}")
        print(f"  survey:  {result['survey']['id']} (project {result['survey']['project']})")
        print(f"  codes:   {', '.join(result['serial_codes'])}")
        print(f"  docs:    {result['docs']}  (Authorize with the e-mail and password above)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invitelink", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, then serve the API (and the embedded worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("worker", help="run the delivery worker alone").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="alembic upgrade head").set_defaults(func=cmd_migrate)

    admin = sub.add_parser("create-admin", help="create an owner account in a new workspace")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument("--workspace", default="Default")
    admin.set_defaults(func=cmd_create_admin)

    demo = sub.add_parser("demo", help="seed a demo workspace and print its credentials")
    demo.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    result: int = args.func(args, settings)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
