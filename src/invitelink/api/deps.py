"""What endpoints of every family take from the app: its settings and its database (the write seam), each as one
``Annotated`` dependency alias, so they are reached one way everywhere."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from invitelink.config import Settings
from invitelink.db import Database


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
