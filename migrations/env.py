"""Alembic environment: the URL comes from the caller (invitelink.migrate) or from the settings."""

from __future__ import annotations

import logging.config
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import JSON, Connection

from invitelink.config import Settings
from invitelink.db import make_engine
from invitelink.models import Base
from invitelink.models.base import UtcDateTime

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return str(config.attributes.get("database_url") or Settings().database_url)


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render our column types as plain SQLAlchemy ones, so migrations never import model code."""
    if type_ != "type":
        return False
    if isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, JSON) and obj._variant_mapping:
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # SQLite can roll DDL back too: one transaction for the whole upgrade, so a failed foreign key check after
        # it (see _run) leaves the database as it was.
        transactional_ddl=True,
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
    )


def _run(connection: Connection) -> None:
    """Run the migrations on ``connection``. On SQLite, with foreign keys off: batch mode rebuilds a table by
    copying it and dropping the original, and with foreign keys on that DROP deletes (ON DELETE CASCADE) every row
    of every table that references it. The check after the run, in the same transaction, refuses (and rolls back)
    an upgrade that left a reference dangling."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _pragma(connection, "foreign_keys=OFF")
    try:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if dangling:
                    raise RuntimeError(f"migration left rows pointing at missing rows: {dangling[:5]}")
    finally:
        if sqlite:
            _pragma(connection, "foreign_keys=ON")  # the transaction has ended, so SQLite takes it


def _pragma(connection: Connection, setting: str) -> None:
    """On the driver's connection: SQLite ignores this PRAGMA inside a transaction, and SQLAlchemy would open one
    (our engines issue BEGIN IMMEDIATE) before running it."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA {setting}")


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), pool_size=1)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
