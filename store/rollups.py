"""Daily rollups of the per-inspection summary, kept in the transaction that changes it.

Two tables (store/models.py), each equal at every commit to a rebuild from scratch:

- `inspection_daily` = the counted inspections (live; completed, approved or archived; with a
  completion time; at a known site) grouped by the calendar day of `completed_received_at` in
  their site's time zone x site x template version x inspector: how many, how many passed,
  with a critical failure, scored, and the score sum (archiving one that is not completed or
  approved clears its completion time, see inspections/review.py, so an inspection returned
  for rework never counts again that way); an inspection whose site is unknown (purged) has
  no local day, and no report shows it either;
- `region_daily` = `inspection_daily` joined to the existing sites, grouped by their current
  region instead of the site (so its day is each site's own local day).

The sync writer (the only writer of inspections) hands every inspection INSERT and UPDATE to
`record_writes`; a site changing region or being purged goes through `move_site`, one changing
time zone through `rezone_site`. Cells that fall to zero are deleted, so neither table keeps
rows a rebuild would not have.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Select,
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

from store.db import is_postgres, one_of
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


def local_day(when: dt.datetime, zone: str) -> dt.date:
    """The calendar day `when` (aware, or naive UTC) falls on in the IANA time zone `zone`."""
    aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    try:
        return aware.astimezone(ZoneInfo(zone)).date()
    except OverflowError:
        # Within hours of datetime's range the local day is not representable; the UTC day is
        # the nearest one that is.
        return aware.astimezone(dt.UTC).date()


def counts(row: Mapping[str, Any]) -> bool:
    """Whether an inspection row counts in the rollups (and in a report), wherever its site."""
    return (
        row.get("deleted_at") is None
        and row.get("status") in COUNTED_STATUSES
        and row.get("completed_received_at") is not None
    )


def cell(row: Mapping[str, Any], zones: Mapping[str, str]) -> tuple[Key, Measures] | None:
    """The inspection_daily cell an inspection row counts in (zones: site -> time zone), or
    None when it does not count or its site is unknown."""
    zone = zones.get(row.get("site_id"))
    if zone is None or not counts(row):
        return None
    day = local_day(row["completed_received_at"], zone)
    key = (day, row["site_id"], row.get("template_id"), row.get("inspector_id") or "")
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


def from_rows(rows: Iterable[Mapping[str, Any]], zones: Mapping[str, str]) -> dict[Key, list[int]]:
    """inspection_daily computed in Python from inspection rows and site -> time zone."""
    cells: dict[Key, list[int]] = {}
    for row in rows:
        found = cell(row, zones)
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
        pairs.extend(_updated_pairs(session, touched, updated))
    sites = {row.get("site_id") for pair in pairs for row in pair if row and counts(row)}
    if not sites:
        return
    regions, zones = _lock_sites(session, sites)
    deltas: dict[Key, list[int]] = {}
    for old, new in pairs:
        for row, sign in ((old, -1), (new, 1)):
            found = cell(row, zones) if row is not None else None
            if found:
                _add(deltas, found[0], found[1], sign)
    _apply(session, deltas, regions)


def _updated_pairs(
    session: Session, touched: list[str], updated: Mapping[str, Mapping]
) -> list[tuple[Mapping, Mapping]]:
    """(row as it is now, row as it will be) of each updated inspection that exists."""
    # Updated rows are locked and read as they are now, not as the plan loaded them: a
    # change committed in between (by a writer that read the row without locking it) is
    # neither lost nor counted twice, and the row stays as read until this transaction ends.
    table = Inspection.__table__
    columns = [table.c.id, *(table.c[c] for c in sorted(RELEVANT))]
    current: dict[str, dict] = {}
    for start in range(0, len(touched), 5000):
        stmt = select(*columns).where(one_of(session, table.c.id, touched[start : start + 5000]))
        for row in session.execute(stmt.order_by(table.c.id).with_for_update()).mappings():
            current[row["id"]] = dict(row)
    pairs = []
    for rid in touched:
        old = current.get(rid)
        if old is not None:
            changes = {k: v for k, v in updated[rid].items() if k in RELEVANT}
            pairs.append((old, {**old, **changes}))
    return pairs


def _lock_sites(session: Session, sites: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each known site's region and time zone, in one query, under a shared lock."""
    # Shared locks: a concurrent region or time zone change waits for this transaction, and
    # this one, if it comes second, sees the new values.
    stmt = (
        select(Site.id, Site.region_id, Site.timezone)
        .where(one_of(session, Site.id, sorted(sites)))
        .order_by(Site.id)
        .with_for_update(read=True)
    )
    regions: dict[str, str] = {}
    zones: dict[str, str] = {}
    for site, region, zone in session.execute(stmt):
        regions[site], zones[site] = region, zone
    return regions, zones


def _apply(
    session: Session, deltas: Mapping[Key, Iterable[int]], regions: Mapping[str, str]
) -> None:
    """Add per-cell differences to inspection_daily and, by each site's region, region_daily."""
    deltas = {k: list(v) for k, v in deltas.items() if any(v)}
    if not deltas:
        return
    _upsert(session, InspectionDaily.__table__, "site_id", deltas)
    by_region: dict[Key, list[int]] = {}
    for (day, site, template, inspector), values in deltas.items():
        _add(by_region, (day, regions[site], template, inspector), values, 1)
    _upsert(session, RegionDaily.__table__, "region_id", by_region)


def _stored(session: Session, site_id: str) -> dict[Key, list[int]]:
    """A site's inspection_daily cells as they are."""
    s = InspectionDaily.__table__
    stmt = select(s.c.day, s.c.template_id, s.c.inspector_id, *(s.c[m] for m in MEASURES))
    return {
        (day, site_id, template, inspector): list(values)
        for day, template, inspector, *values in session.execute(stmt.where(s.c.site_id == site_id))
    }


def move_site(session: Session, site_id: str, old: str | None, new: str | None) -> None:
    """Move a site's cells between regions in region_daily (None: none, as for a purged site,
    whose cells then leave inspection_daily too: without a site there is no local day)."""
    # Called after the site row is updated or deleted, so the row lock orders this against
    # writers, which read the site's region under a shared lock.
    if old == new:
        return
    deltas: dict[Key, list[int]] = {}
    for (day, _site, template, inspector), values in _stored(session, site_id).items():
        if old is not None:
            _add(deltas, (day, old, template, inspector), values, -1)
        if new is not None:
            _add(deltas, (day, new, template, inspector), values, 1)
    _upsert(session, RegionDaily.__table__, "region_id", deltas)
    if new is None:
        s = InspectionDaily.__table__
        session.execute(delete(s).where(s.c.site_id == site_id))


def rezone_site(session: Session, site_id: str, old_region: str | None = None) -> None:
    """Re-key a site's cells in both tables after its time zone changed (and move them from
    `old_region` when its region changed too)."""
    # Called after the site row is updated, like move_site: writers wait for this transaction
    # and then key their cells by the new zone. Cells cannot just be renamed: one old local
    # day straddles two new ones, so the site's cells are computed again from its inspections.
    region, zone = session.execute(
        select(Site.region_id, Site.timezone).where(Site.id == site_id)
    ).one()
    i = Inspection.__table__
    stmt = select(*(i.c[c] for c in sorted(RELEVANT))).where(
        i.c.site_id == site_id,
        i.c.deleted_at.is_(None),
        i.c.status.in_(COUNTED_STATUSES),
        i.c.completed_received_at.is_not(None),
    )
    fresh = from_rows(session.execute(stmt).mappings(), {site_id: zone})
    stored = _stored(session, site_id)
    deltas = {k: list(v) for k, v in fresh.items()}
    for key, values in stored.items():
        _add(deltas, key, values, -1)
    if old_region is None or old_region == region:
        _apply(session, deltas, {site_id: region})
        return
    _upsert(session, InspectionDaily.__table__, "site_id", deltas)
    # The old region loses the stored cells and the new one gains the fresh ones in one sorted
    # batch: in two (a move, then a re-key) a push adding to cells of both in between could
    # hold one the other batch waits for while waiting for one this transaction holds.
    by_region: dict[Key, list[int]] = {}
    for (day, _site, template, inspector), values in stored.items():
        _add(by_region, (day, old_region, template, inspector), values, -1)
    for (day, _site, template, inspector), values in fresh.items():
        _add(by_region, (day, region, template, inspector), values, 1)
    _upsert(session, RegionDaily.__table__, "region_id", by_region)


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
    # The 0005 migration's rebuild runs the same statements; benchmarks seed with this.
    s = InspectionDaily.__table__
    r = RegionDaily.__table__
    postgres = is_postgres(session)
    if postgres:
        # Writers wait until the rebuild commits and then add their changes on top; changes
        # committed before the lock are in what the rebuild reads.
        session.execute(text("LOCK TABLE inspection_daily, region_daily IN EXCLUSIVE MODE"))
    session.execute(delete(r))
    session.execute(delete(s))
    if postgres:
        _rebuild_sites_in_sql(session)
    else:
        _rebuild_sites_in_python(session)
    written = session.execute(select(func.count()).select_from(s)).scalar_one()
    _rebuild_regions(session)
    return written


def _counted_at_sites() -> Select:
    """The counted inspections joined to their (known) sites; no columns chosen yet."""
    i = Inspection.__table__
    return (
        select()
        .select_from(i.join(Site.__table__, Site.id == i.c.site_id))
        .where(
            i.c.deleted_at.is_(None),
            i.c.status.in_(COUNTED_STATUSES),
            i.c.completed_received_at.is_not(None),
        )
    )


def _rebuild_sites_in_sql(session: Session) -> None:
    """inspection_daily grouped by PostgreSQL, which knows the time zones."""
    i = Inspection.__table__
    s = InspectionDaily.__table__
    day = cast(func.timezone(Site.timezone, i.c.completed_received_at), Date)
    percent = i.c.score_percent
    counted = _counted_at_sites().add_columns(
        day,
        i.c.site_id,
        i.c.template_id,
        func.coalesce(i.c.inspector_id, ""),
        # Labels start empty and are filled per distinct day (as on SQLite, which has no ISO
        # week).
        literal_column("''"),
        literal_column("''"),
        func.count(),
        func.count().filter(i.c.passed.is_(True)),
        func.count().filter(i.c.critical_failed.is_(True)),
        func.count(percent),
        cast(func.coalesce(func.sum(func.round(percent * 10)), 0), BigInteger),
    )
    counted = counted.group_by(day, i.c.site_id, i.c.template_id, i.c.inspector_id)
    columns = ["day", "site_id", "template_id", "inspector_id", "week", "month", *MEASURES]
    session.execute(insert(s).from_select(columns, counted))
    _fill_labels(session, s)


def _rebuild_sites_in_python(session: Session) -> None:
    """inspection_daily summed in Python: SQLite has no time zone database."""
    i = Inspection.__table__
    stmt = _counted_at_sites().add_columns(
        *(i.c[c] for c in sorted(RELEVANT)), Site.timezone.label("zone")
    )
    cells: dict[Key, list[int]] = {}
    for row in session.execute(stmt, execution_options={"yield_per": 10_000}).mappings():
        found = cell(row, {row["site_id"]: row["zone"]})
        if found:
            _add(cells, found[0], found[1], 1)
    _upsert(session, InspectionDaily.__table__, "site_id", cells)


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
