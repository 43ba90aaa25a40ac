"""Housekeeping: purge tombstones past the horizon, so old cursors get a full replacement."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, Table, delete, exists, func, select, update
from sqlalchemy.orm import Session

from store import rollups
from store.models import Conflict, SyncCounter
from store.types import utcnow
from sync.push import ORDER
from sync.tables import TABLES, TableSpec


def purge_tombstones(session: Session, horizon: dt.timedelta) -> int:
    """Delete tombstones older than the horizon; record the highest purged rev (last).

    Safe while devices sync: purged_rev is raised in the same transaction as the deletes, so a
    puller's snapshot sees either both (and answers an old cursor with a replacement) or neither.
    """
    cutoff = utcnow() - horizon
    highest = 0
    for spec in TABLES.values():
        table = spec.table
        top = session.execute(
            select(func.max(table.c.server_rev)).where(table.c.deleted_at < cutoff)
        ).scalar()
        highest = max(highest, top or 0)
    if not highest:
        return 0
    sites = TABLES["sites"].table
    doomed = session.execute(
        select(sites.c.id, sites.c.region_id).where(
            sites.c.deleted_at < cutoff, sites.c.server_rev <= highest, *_unreferenced(sites)
        )
    ).all()
    removed = 0
    for spec in sorted(TABLES.values(), key=_lock_order):
        table = spec.table
        result = session.execute(
            delete(table).where(
                table.c.deleted_at < cutoff,
                table.c.server_rev <= highest,
                *_unreferenced(table),
                ~_disputed(spec.name, table),
            )
        )
        removed += result.rowcount or 0
    # Reports join inspections to their site: a purged site's live ones leave the regions.
    for site_id, region_id in doomed:
        rollups.move_site(session, site_id, region_id, None)
    # The counter's row last, as every writer takes it (right before COMMIT): taken first, it
    # made each push wait for the whole purge, and a writer holding a tombstone's row while
    # it waited for the counter deadlocked with the purge waiting for that row.
    session.execute(
        update(SyncCounter)
        .where(SyncCounter.id == 1, SyncCounter.purged_rev < highest)
        .values(purged_rev=highest)
    )
    return removed


def _lock_order(spec: TableSpec) -> int:
    """Tables in the order writers lock their rows (push.ORDER: inspections, answers, actions,
    then photos), after those no writer locks: a tombstone a writer holds is then waited for
    while the purge holds none that writer wants next."""
    return ORDER.index(spec.name) + 1 if spec.name in ORDER else 0


def _disputed(name: str, table: Table) -> ColumnElement[bool]:
    """Whether an unresolved conflict names the record: its tombstone is what tells the
    resolution that the record was deleted (without it, taking the device's value would
    create the deleted record again, as one the server never had)."""
    return exists().where(
        Conflict.table_name == name,
        Conflict.record_id == table.c.id,
        Conflict.resolved_at.is_(None),
    )


def _unreferenced(table: Table) -> list[ColumnElement[bool]]:
    """Conditions for rows of `table` no other row points at by a foreign key. A closed site
    keeps its tombstone while its history does (assignments, schedules, occurrences): deleting
    it would break those references, and fail the whole purge with them."""
    return [
        ~exists().where(fk.parent == fk.column)
        for other in table.metadata.tables.values()
        for fk in other.foreign_keys
        if fk.column.table is table
    ]
