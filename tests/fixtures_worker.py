"""Fixtures of the tests that run the worker: its database and one event loop a test.

Registered from conftest (``pytest_plugins``), so a test module asks for them by name without importing them; a
module that needs another ``database`` (the app's, say) defines its own, which wins there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from invitelink.config import Settings
from invitelink.db import Database

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    """The worker's own Database on the test's database (each engine under test, through ``settings``)."""
    db = Database(settings.database_url, pool_size=4)
    yield db
    db.dispose()


@pytest.fixture
def arun() -> Iterator[Run[Any]]:
    """Run coroutines on one event loop for the whole test, as a long-lived worker does."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()
