"""The ``invitelink`` command line. Mistakes in the configuration or the arguments end in one line that says what to
change (exit 2); a database that cannot be reached ends in one line too (exit 1), never a traceback."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from invitelink import __version__
from invitelink.config import Settings
from invitelink.db import Database
from invitelink.logs import configure_logging, log_config
from invitelink.migrate import upgrade_to_head
from invitelink.services.contacts import ImportReport
from invitelink.services.errors import DomainError, NotFound

T = TypeVar("T")
P = ParamSpec("P")
PASSWORD_ENV = "INVITELINK_ADMIN_PASSWORD"  # noqa: S105 - the variable's name
# The long-running commands, whose logs an operator collects; the others print for a person at a terminal.
LOGGING_COMMANDS = ("serve", "worker", "migrate")


class CommandError(Exception):
    """What the user must change, said in one line."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _unreachable(settings: Settings, exc: Exception) -> CommandError:
    url = make_url(settings.database_url).render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CommandError(
        f"cannot reach the database at {url}: {reason}. Is it running, and is INVITELINK_DATABASE_URL right?", 1
    )


def _migrate(settings: Settings) -> None:
    try:
        upgrade_to_head(settings.database_url)
    except (OperationalError, InterfaceError) as exc:
        raise _unreachable(settings, exc) from None


def _write(settings: Settings, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """One unit of work of a command, through the write seam, on a small pool that is closed afterwards."""
    database = Database(settings.database_url, pool_size=1)
    try:
        return database.write_blocking(fn, *args, **kwargs)
    except (OperationalError, InterfaceError) as exc:
        raise _unreachable(settings, exc) from None
    finally:
        database.dispose()


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return int(value)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if not args.no_migrate:
        _migrate(settings)
    if "public_url" not in settings.model_fields_set:
        # Links carry PUBLIC_URL: unset, it follows the port served here rather than claiming :8000. uvicorn's
        # worker processes read the settings again, so the environment carries it to them.
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104 - compared, not bound
        os.environ["INVITELINK_PUBLIC_URL"] = f"http://{host}:{args.port}"
    if args.workers > 1:
        from invitelink.metrics import share_metrics_between_workers

        # Each worker process counts its own requests: prometheus-client's multiprocess mode lets any of them answer
        # /metrics with the sum (invitelink.metrics).
        share_metrics_between_workers(settings)
    uvicorn.run(
        "invitelink.app:serving_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        # Access logs carry full URLs, and personal links are secrets: the app writes its own, redacted
        # (invitelink.access_log).
        access_log=False,
        # Every worker process configures its logging from this, uvicorn's loggers included (invitelink.logs).
        log_config=log_config(settings),
    )
    return 0


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    _migrate(settings)
    print("database is at head", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from invitelink.worker.runner import run_forever

    if not args.no_migrate:
        _migrate(settings)
    run_forever(settings)
    return 0


def _admin_password(args: argparse.Namespace) -> str:
    """--password, else the environment variable, else a prompt (so it need not show in ``ps`` or the history)."""
    if args.password:
        return str(args.password)
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise CommandError(f"give the password with {PASSWORD_ENV}=… or --password, or run this in a terminal")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise CommandError("the two passwords differ; nothing was created")
    return first


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> int:
    from invitelink.services.accounts import create_admin

    if not args.no_migrate:
        _migrate(settings)
    password = _admin_password(args)
    try:
        workspace, user = _write(
            settings, create_admin, args.email, password, args.workspace, add_workspace=args.add_workspace
        )
    except DomainError as exc:
        raise CommandError(exc.message) from None
    print(f"created owner {user.email} of workspace {workspace.id} ({workspace.name})")
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
        print(f"  token:   {result['admin']['token']}  (for scripts: Authorization: Bearer <token>)")
        print(f"  survey:  {result['survey']['id']} (project {result['survey']['project']})")
        print(f"  codes:   {', '.join(result['serial_codes'])}")
        print(f"  docs:    {result['docs']}")
        print("  Authorize → OAuth2PasswordBearer (the first scheme): the e-mail as username and the password above.")
        print("  HTTPBearer (the second) is the questionnaire callback's secret (scb_…): admin tokens do not go there.")
    return 0


IMPORT_BATCH = 1000


def _import_batch(session: Session, survey_id: int, rows: list[Any]) -> ImportReport:
    from invitelink.models import Survey
    from invitelink.services.contacts import import_contacts

    survey = session.get(Survey, survey_id)
    if survey is None:
        raise NotFound(f"no survey {survey_id}: see GET /admin/v1/surveys for the ids")
    return import_contacts(session, survey, rows)


def cmd_import_contacts(args: argparse.Namespace, settings: Settings) -> int:
    """A contact file of any size, in batches (each its own transaction through the write seam), with a progress
    bar on a terminal. Rows already in the survey are skipped, so an interrupted import can simply be run again."""
    from tqdm import tqdm

    from invitelink.services.contacts import parse_csv, parse_json

    if not args.no_migrate:
        _migrate(settings)
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {exc}") from None
    try:
        rows = parse_json(text) if args.file.lower().endswith(".json") else parse_csv(text)
    except DomainError as exc:
        raise CommandError(f"{args.file}: {exc.message}") from None
    created = skipped = 0
    errors: list[str] = []
    with tqdm(total=len(rows), unit="rows", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        for start in range(0, len(rows), IMPORT_BATCH):
            batch = rows[start : start + IMPORT_BATCH]
            try:
                report = _write(settings, _import_batch, args.survey, batch)
            except DomainError as exc:
                raise CommandError(f"rows {start + 1}-{start + len(batch)}: {exc.message}") from None
            created, skipped = created + report.created, skipped + report.skipped
            errors += [f"row {e['row'] + start}: {e['error']}" for e in report.errors]
            bar.update(len(batch))
    for line in errors[:20]:
        print(line, file=sys.stderr)
    if len(errors) > 20:
        print(f"… and {len(errors) - 20} more rows refused", file=sys.stderr)
    print(f"imported {created} contacts, skipped {skipped} already there, refused {len(errors)} rows")
    return 0 if not errors else 1


def build_parser() -> argparse.ArgumentParser:
    defaults = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="invitelink", description=__doc__)
    parser.add_argument("--version", action="version", version=f"invitelink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="migrate, then serve the API (and the embedded worker)", formatter_class=defaults
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port")
    serve.add_argument("--workers", type=_positive, default=1, help="uvicorn worker processes")
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate the database first")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run the delivery worker alone", formatter_class=defaults)
    worker.add_argument("--no-migrate", action="store_true", help="do not migrate the database first")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="alembic upgrade head", formatter_class=defaults).set_defaults(func=cmd_migrate)

    admin = sub.add_parser(
        "create-admin",
        help="create an owner account in a new workspace",
        description=f"The password comes from --password, else {PASSWORD_ENV}, else a prompt.",
        formatter_class=defaults,
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", default=None, help=f"visible to other users in ps: prefer {PASSWORD_ENV}")
    admin.add_argument("--workspace", default="Default", help="name of the new workspace")
    admin.add_argument(
        "--add-workspace", action="store_true", help="the account exists: give it another workspace it owns"
    )
    admin.add_argument("--no-migrate", action="store_true", help="do not migrate the database first")
    admin.set_defaults(func=cmd_create_admin)

    importer = sub.add_parser(
        "import-contacts",
        help="import contacts of a survey from a CSV or JSON file, with progress",
        description="CSV: a header naming email, mobile, uid, name, subgroup, anonymous (other columns become the "
        "contacts' attributes); comma, semicolon or tab separated. JSON: a list of such objects (a .json file).",
        formatter_class=defaults,
    )
    importer.add_argument("--survey", type=_positive, required=True, help="the survey's id")
    importer.add_argument("file", help="the file to import")
    importer.add_argument("--no-migrate", action="store_true", help="do not migrate the database first")
    importer.set_defaults(func=cmd_import_contacts)

    demo = sub.add_parser("demo", help="seed a demo workspace and print its credentials", formatter_class=defaults)
    demo.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    demo.set_defaults(func=cmd_demo)
    return parser


def _settings_error(exc: ValidationError) -> str:
    """One line per wrong setting, named as it is set: INVITELINK_WORKER='maybe': input should be …"""
    lines = []
    for error in exc.errors():
        name = "INVITELINK_" + "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"error: {name}={error.get('input')!r}: {message}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(_settings_error(exc), file=sys.stderr)
        return 2
    if args.command in LOGGING_COMMANDS:
        configure_logging(settings)
    try:
        result: int = args.func(args, settings)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    return result


if __name__ == "__main__":
    raise SystemExit(main())
