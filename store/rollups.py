"""Daily rollups of the per-inspection summary, kept in the transaction that changes it.

Two tables (store/models.py), each equal at every commit to a rebuild from scratch:

- `inspection_daily` = the counted inspections (live; completed, approved or archived; with a
  completion time) grouped by UTC day of `completed_received_at` x site x template version x
  inspector: how many, how many passed, with a critical failure, scored, and the score sum
  (archiving one that is not completed or approved clears its completion time, see
  inspections/review.py, so an inspection returned for rework never counts again that way);
- `region_daily` = `inspection_daily` joined to the existing sites, grouped by their current
  region instead of the site.

The sync writer (the only writer of inspections) hands every inspection INSERT and UPDATE to
`record_writes`; a site changing region or being purged goes through `move_site`. Cells that
fall to zero are deleted, so neither table keeps rows a rebuild would not have.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import Date

from store.db import one_of
from store.models import Inspection, InspectionDaily, RegionDaily, Site

COUNTED_STATUSES = ("completed", "approved", "archived")
# Inspection columns a cell depends on: an UPDATE touching none of them changes no rollup.
RELEVANT = frozenset(
    {
        "status",
        "deleted_at",
        "completed_received_at",
        "site_id",
        "template_id",
        "inspector_id",
        "passed",
        "critical_failed",
        "score_percent",
    }
)
MEASURES = ("completed", "passed", "critical_failed", "scored", "score_tenths")

Key = tuple[dt.date, str, str, str]  # day, site or region, template version, inspector or ''
Measures = tuple[int, int, int, int, int]


def measures(passed: Any, critical_failed: Any, score_percent: float | None) -> Measures:
    """What one counted inspection adds to its cell (and to a report group)."""
    return (
        1,
        1 if passed else 0,
        1 if critical_failed else 0,
        0 if score_percent is None else 1,
        0 if score_percent is None else round(score_percent * 10),
    )


def cell(row: Mapping[str, Any]) -> tuple[Key, Measures] | None:
    """The inspection_daily cell an inspection row counts in, or None when it does not count."""
    when = row.get("completed_received_at")
    if row.get("deleted_at") is not None or row.get("status") not in COUNTED_STATUSES:
        return None
    if when is None:
        return None
    day = (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date()
    key = (day, row["site_id"], row["template_id"], row.get("inspector_id") or "")
    return key, measures(row.get("passed"), row.get("critical_failed"), row.get("score_percent"))


def week_label(day: dt.date) -> str:
    """The ISO week as reports show it (PostgreSQL's IYYY-"W"IW)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def month_label(day: dt.date) -> str:
    """The month as reports show it."""
    return f"{day.year}-{day.month:02d}"


def _add(cells: dict[Key, list[int]], key: Key, values: Iterable[int], sign: int) -> None:
    total = cells.setdefault(key, [0] * len(MEASURES))
    for i, v in enumerate(values):
        total[i] += sign * v


def from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[Key, list[int]]:
    """inspection_daily computed in Python from inspection rows (tests compare with it)."""
    cells: dict[Key, list[int]] = {}
    for row in rows:
        found = cell(row)
        if found:
            _add(cells, found[0], found[1], 1)
    return cells


def record_writes(
    session: Session, inserted: list[Mapping], updated: Mapping[str, Mapping]
) -> None:
    """Fold inspections about to be INSERTed, and UPDATEd (id -> new values), into the rollups."""
    pairs: list[tuple[Mapping | None, Mapping]] = [(None, row) for row in inserted]
    touched = sorted(rid for rid, values in updated.items() if RELEVANT.intersection(values))
    if touched:
        # Updated rows are locked and read as they are now, not as the plan loaded them: a
        # change committed in between (review does not lock) is neither lost nor counted twice,
        # and the row stays as read until this transaction ends.
        table = Inspection.__table__
        columns = [table.c.id, *(table.c[c] for c in sorted(RELEVANT))]
        current: dict[str, dict] = {}
        for start in range(0, len(touched), 5000):
            stmt = select(*columns).where(
                one_of(session, table.c.id, touched[start : start + 5000])
            )
            for row in session.execute(stmt.order_by(table.c.id).with_for_update()).mappings():
                current[row["id"]] = dict(row)
        for rid in touched:
            old = current.get(rid)
            if old is not None:
                changes = {k: v for k, v in updated[rid].items() if k in RELEVANT}
                pairs.append((old, {**old, **changes}))
    deltas: dict[Key, list[int]] = {}
    for old, new in pairs:
        for row, sign in ((old, -1), (new, 1)):
            found = cell(row) if row is not None else None
            if found:
                _add(deltas, found[0], found[1], sign)
    apply(session, deltas)


def apply(session: Session, deltas: Mapping[Key, Iterable[int]]) -> None:
    """Add per-cell differences to inspection_daily and, by each site's region, region_daily."""
    deltas = {k: list(v) for k, v in deltas.items() if any(v)}
    if not deltas:
        return
    # Shared locks on the sites: a concurrent region move waits for this transaction, and
    # this one, if it comes second, sees the new region.
    sites = sorted({k[1] for k in deltas})
    regions: dict[str, str] = {}
    for start in range(0, len(sites), 5000):
        stmt = (
            select(Site.id, Site.region_id)
            .where(one_of(session, Site.id, sites[start : start + 5000]))
            .order_by(Site.id)
            .with_for_update(read=True)
        )
        regions.update(session.execute(stmt).all())
    _upsert(session, InspectionDaily.__table__, "site_id", deltas)
    by_region: dict[Key, list[int]] = {}
    for (day, site, template, inspector), values in deltas.items():
        region = regions.get(site)
        if region is not None:  # an unknown or purged site joins no region, as in a report
            _add(by_region, (day, region, template, inspector), values, 1)
    _upsert(session, RegionDaily.__table__, "region_id", by_region)


def move_site(session: Session, site_id: str, old: str | None, new: str | None) -> None:
    """Move a site's cells between regions in region_daily (None: none, as for a purged site)."""
    # Called after the site row is updated or deleted, so the row lock orders this against
    # writers, which read the site's region under a shared lock.
    if old == new:
        return
    s = InspectionDaily.__table__
    stmt = select(s.c.day, s.c.template_id, s.c.inspector_id, *(s.c[m] for m in MEASURES))
    deltas: dict[Key, list[int]] = {}
    for day, template, inspector, *values in session.execute(stmt.where(s.c.site_id == site_id)):
        if old is not None:
            _add(deltas, (day, old, template, inspector), values, -1)
        if new is not None:
            _add(deltas, (day, new, template, inspector), values, 1)
    _upsert(session, RegionDaily.__table__, "region_id", deltas)


def _upsert(session: Session, table: Table, place: str, cells: Mapping[Key, list[int]]) -> None:
    """Add to existing cells or create them, then delete the cells that fell to zero."""
    cells = {k: v for k, v in cells.items() if any(v)}
    if not cells:
        return
    keys = ("day", place, "template_id", "inspector_id")
    rows = []
    # Key order: concurrent writers then lock cells in the same order and cannot deadlock.
    for key in sorted(cells):
        row = dict(zip(keys, key, strict=True))
        row.update(week=week_label(key[0]), month=month_label(key[0]))
        row.update(zip(MEASURES, cells[key], strict=True))
        rows.append(row)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={m: table.c[m] + stmt.excluded[m] for m in MEASURES},
    )
    session.execute(stmt, rows)
    emptied = [{f"k_{k}": row[k] for k in keys} for row in rows if row["completed"] <= 0]
    if emptied:
        session.execute(
            delete(table).where(
                and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys)), table.c.completed == 0
            ),
            emptied,
        )


def rebuild(session: Session) -> int:
    """Recompute both rollups from the inspections; returns the inspection_daily row count."""
    # The 0002 migration's backfill runs the same statements; benchmarks seed with this.
    i = Inspection.__table__
    s = InspectionDaily.__table__
    r = RegionDaily.__table__
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # Writers wait until the rebuild commits and then add their changes on top; changes
        # committed before the lock are in what the rebuild reads.
        session.execute(text("LOCK TABLE inspection_daily, region_daily IN EXCLUSIVE MODE"))
    session.execute(delete(r))
    session.execute(delete(s))
    if postgres:
        day = cast(func.timezone("UTC", i.c.completed_received_at), Date)
    else:
        day = func.date(i.c.completed_received_at)
    percent = i.c.score_percent
    counted = (
        select(
            day,
            i.c.site_id,
            i.c.template_id,
            func.coalesce(i.c.inspector_id, ""),
            # Labels start empty and are filled per distinct day: SQLite has no ISO week.
            literal_column("''"),
            literal_column("''"),
            func.count(),
            func.count().filter(i.c.passed.is_(True)),
            func.count().filter(i.c.critical_failed.is_(True)),
            func.count(percent),
            cast(func.coalesce(func.sum(func.round(percent * 10)), 0), BigInteger),
        )
        .where(
            i.c.deleted_at.is_(None),
            i.c.status.in_(COUNTED_STATUSES),
            i.c.completed_received_at.is_not(None),
        )
        .group_by(day, i.c.site_id, i.c.template_id, i.c.inspector_id)
    )
    columns = ["day", "site_id", "template_id", "inspector_id", "week", "month", *MEASURES]
    session.execute(insert(s).from_select(columns, counted))
    _fill_labels(session, s)
    written = session.execute(select(func.count()).select_from(s)).scalar_one()
    _rebuild_regions(session)
    return written


def _fill_labels(session: Session, table: Table) -> None:
    days = list(session.execute(select(table.c.day).distinct()).scalars())
    if days:
        session.execute(
            update(table).where(table.c.day == bindparam("d")),
            [{"d": d, "week": week_label(d), "month": month_label(d)} for d in days],
        )


def _rebuild_regions(session: Session) -> None:
    s = InspectionDaily.__table__
    r = RegionDaily.__table__
    keys = [s.c.day, Site.region_id, s.c.template_id, s.c.inspector_id, s.c.week, s.c.month]
    stmt = (
        select(*keys, *(func.sum(s.c[m]) for m in MEASURES))
        .join(Site, Site.id == s.c.site_id)
        .group_by(*keys)
    )
    columns = ["day", "region_id", "template_id", "inspector_id", "week", "month", *MEASURES]
    session.execute(insert(r).from_select(columns, stmt))
