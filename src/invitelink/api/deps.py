"""What endpoints of every family take from the app: its settings and its database (the write seam), each as one
``Annotated`` dependency alias, so they are reached one way everywhere."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from invitelink.config import Settings
from invitelink.db import Database


# ``async``: FastAPI runs a plain ``def`` dependency in the thread pool, and two thread hops per request cost the
# create_link hot path a quarter of its throughput. These only read app state, so they never block.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
