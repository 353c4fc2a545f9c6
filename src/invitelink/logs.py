"""Logging for every command: one configuration (``INVITELINK_LOG_FORMAT``, ``INVITELINK_LOG_LEVEL``) applied once per
process, so that invitelink's own lines, uvicorn's and alembic's come out alike: one JSON object per line in json
mode, and each line written while a request is handled names its request id."""

from __future__ import annotations

import logging
import logging.config
import re
from contextvars import ContextVar
from typing import Any

from invitelink.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# python-json-logger renames these record attributes to the keys log collectors expect; ``request_id`` comes from
# RequestIdFilter, the rest of a record's extra fields are added as they are.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
# The loggers uvicorn configures itself unless told otherwise: here they hand their lines to the root handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


# A caller's X-Request-ID is kept when it is short and plain (UUIDs, hex, load balancers' ids); anything else, which
# could forge or break log lines, is replaced by a new id.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_is_sane(value: str) -> bool:
    return SANE_REQUEST_ID.match(value) is not None


# The id of the request being handled, set by the access log middleware (access_log.RequestLog) for the request's
# task and the threads it hands work to; None outside a request.
correlation_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being handled (``correlation_id``), or None outside a request:
    the worker, startup, the group committer's thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = correlation_id.get()
        # Text lines show "-" rather than "None"; JSON lines get null and collectors can filter on it.
        record.request_id = request_id if request_id is not None or self.name == "json" else "-"
        return True


class QuietAlembicInRequests(logging.Filter):
    """/readyz asks alembic whether the database is at head, and alembic announces its context at INFO each time:
    two lines per probe. Its INFO lines are kept outside requests (``invitelink migrate``, migrating at startup)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("alembic"):
            return True
        return record.levelno >= logging.WARNING or correlation_id.get() is None


def log_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary; also what ``invitelink serve`` gives uvicorn (``log_config=``), so
    every worker process it starts configures itself the same way."""
    json_mode = settings.log_format == "json"
    formatter: dict[str, Any]
    if json_mode:
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": JSON_RENAMES,
            # One line per record: an exception's traceback goes into the object's exc_info field.
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        # Loggers created at import time (the worker's, sqlalchemy's) must keep working.
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "invitelink.logs.RequestIdFilter", "name": "json" if json_mode else "text"},
            "quiet_alembic": {"()": "invitelink.logs.QuietAlembicInRequests"},
        },
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                # On the handler, as a logger's filters do not see its children's records.
                "filters": ["request_id", "quiet_alembic"],
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        # uvicorn's loggers lose their own handlers and propagate to the root: the same format for every line.
        "loggers": {
            **{name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
            # httpx writes every request's full URL at INFO: a webhook endpoint's or SMS gateway's URL may carry
            # its key. Our own lines say where a request went, without the path and query.
            **{name: {"level": "WARNING"} for name in ("httpx", "httpcore")},
        },
    }


def configure_logging(settings: Settings) -> None:
    """Configure the process's logging once, at the start of a command."""
    logging.config.dictConfig(log_config(settings))
