"""A supplier's inventory (its active allocations of active surveys, in id order), read once per change.

Suppliers poll ``allocated_survey`` page by page, over and over, while what it lists changes a few times a day.
Counting 10,000 allocations joined to their surveys costs milliseconds on every call, and an OFFSET deep into them
as much again, so a deep page cost more than the first. Instead each workspace carries ``inventory_version``,
raised in the same transaction as every change to anything a listed item shows: a survey, an allocation, its
limits (quotas), an industry. A process keeps each supplier's ordered allocation ids, and the pages it answered,
under the version they were read at. A call reads the version with its key (the supply API's authentication joins
the workspace row) and, while it is unchanged, answers the total and any page it answered before from memory.

The version is raised by a session listener, so no ORM write path can forget it: after every flush it looks at
what the flush inserted, deleted or changed among those tables. An ORM bulk UPDATE or DELETE of them (none exists
in the code today) raises every workspace's version, since which rows it touched is unknown. SQL written by hand
that changes these tables (text(), Table-level statements; the prebuilt ones of the worker and the events only
read them) goes unseen and must raise the version itself.
"""

from __future__ import annotations

import json
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, event, select, update
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from invitelink.models import Allocation, Industry, Quota, Supplier, Survey, Workspace

# Suppliers whose id lists a process keeps (10,000 ids take 80 kB), and the pages it keeps across all suppliers,
# bounded by their size as JSON (a page of ten ordinary items is about 4 kB; one of 100 items with the longest
# descriptions can be 1 MB, and is then not kept).
CACHED_SUPPLIERS = 256
CACHED_PAGE_BYTES = 16 * 1024 * 1024
LARGEST_PAGE_KEPT = CACHED_PAGE_BYTES // 64
WATCHED = (Allocation, Industry, Quota, Survey)
T = TypeVar("T")


# session.info key: the workspaces whose version this transaction raises when it commits.
TOUCHED = "invitelink.inventory.touched"


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _flush: UOWTransaction) -> None:
    """Note the workspaces whose suppliers' listings this flush changed (after_flush still shows the flush's new,
    dirty and deleted objects); their versions are raised when the transaction commits."""
    workspaces: set[int] = set()
    suppliers: set[int] = set()
    allocations: set[int] = set()
    changed = [*session.new, *session.deleted, *(o for o in session.dirty if session.is_modified(o))]
    for instance in changed:
        if isinstance(instance, Survey | Industry):
            workspaces.add(instance.workspace_id)
        elif isinstance(instance, Allocation):
            suppliers.add(instance.supplier_id)
        elif isinstance(instance, Quota):
            allocations.add(instance.allocation_id)
    # The owning workspaces are read now, while the rows exist (no lock is taken by reading them).
    connection = session.connection()
    if suppliers:
        workspaces.update(connection.scalars(select(Supplier.workspace_id).where(Supplier.id.in_(suppliers))))
    if allocations:
        owning = select(Supplier.workspace_id).join(Allocation, Allocation.supplier_id == Supplier.id)
        workspaces.update(connection.scalars(owning.where(Allocation.id.in_(allocations))))
    if workspaces:
        session.info.setdefault(TOUCHED, set()).update(workspaces)


@event.listens_for(Session, "before_commit")
def _raise_versions(session: Session) -> None:
    """Raise the noted workspaces' versions as the last statement before the commit, in the same transaction: the
    workspace rows are locked (PostgreSQL) only for the commit itself, never between a change and the next, where
    two transactions changing the same rows in another order could deadlock on them."""
    session.flush()  # the last changes are noted too
    workspaces: set[int] | None = session.info.pop(TOUCHED, None)
    if workspaces:
        session.connection().execute(
            update(Workspace)
            .where(Workspace.id.in_(sorted(workspaces)))
            .values(inventory_version=Workspace.inventory_version + 1)
        )


@event.listens_for(Session, "after_rollback")
def _forget_changes(session: Session) -> None:
    session.info.pop(TOUCHED, None)


@event.listens_for(Session, "do_orm_execute")
def _raise_all_on_bulk(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is not None and mapper.class_ in WATCHED:
        state.session.connection().execute(update(Workspace).values(inventory_version=Workspace.inventory_version + 1))


# Whose listing: the database, the supplier's id and when it was created (SQLite may give a deleted supplier's id
# to the next one; the new one's creation time differs).
Owner = tuple[str, int, datetime]


class Inventories:
    """This process's listings, each under the inventory version it was read at."""

    def __init__(self, suppliers: int = CACHED_SUPPLIERS, page_bytes: int = CACHED_PAGE_BYTES) -> None:
        self.suppliers, self.page_bytes = suppliers, page_bytes
        self._ids: OrderedDict[Owner, tuple[int, array[int]]] = OrderedDict()
        self._pages: OrderedDict[tuple[Owner, int, int, int], tuple[int, Any]] = OrderedDict()
        self._pages_size = 0
        self._lock = threading.Lock()  # reads run in the thread pool and the batch reader's threads

    @staticmethod
    def owner(session: Session, supplier: Supplier) -> Owner:
        """Whose listing: the database, the supplier and when it was created."""
        return (session.get_bind().engine.url.render_as_string(), supplier.id, supplier.created_at)

    def live_ids(self, session: Session, owner: Owner, version: int) -> array[int]:
        """The live allocation ids of ``owner``'s supplier in id order. ``version`` must have been read before this
        call, in the same transaction: a change committed in between then leaves a newer list under the older
        version (replaced by the next call), never an older list under the newer version."""
        with self._lock:
            held = self._ids.get(owner)
            if held is not None and held[0] == version:
                self._ids.move_to_end(owner)
                return held[1]
        ids = array("q", session.scalars(live_allocations(owner[1]).order_by(Allocation.id)))
        with self._lock:
            _put(self._ids, owner, (version, ids), self.suppliers)
        return ids

    def page(self, owner: Owner, version: int, page: tuple[int, int], build: Callable[[], T]) -> T:
        """``build()``'s answer for this page, kept under ``version`` (read as for :meth:`live_ids`). The answer is
        shared by every call that gets it: callers must not change it."""
        key = (owner, version, *page)
        with self._lock:
            if key in self._pages:
                self._pages.move_to_end(key)
                held: T = self._pages[key][1]
                return held
        answer = build()
        size = len(json.dumps(answer, default=str))
        if size > min(LARGEST_PAGE_KEPT, self.page_bytes):
            return answer
        with self._lock:
            if key not in self._pages:
                self._pages[key] = (size, answer)
                self._pages_size += size
            while self._pages_size > self.page_bytes:
                _key, (dropped, _answer) = self._pages.popitem(last=False)
                self._pages_size -= dropped
        return answer


def _put(cache: OrderedDict[Any, Any], key: Any, value: Any, bound: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > bound:
        cache.popitem(last=False)


def live_allocations(supplier_id: int) -> Select[tuple[int]]:
    """The ids of a supplier's active allocations of active surveys."""
    return (
        select(Allocation.id)
        .join(Survey, Survey.id == Allocation.survey_id)
        .where(Allocation.supplier_id == supplier_id, Allocation.status == "active", Survey.status == "active")
    )


INVENTORIES = Inventories()
