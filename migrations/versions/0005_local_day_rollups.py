"""compliance rollups keyed by the day at each inspection's site, not the UTC day

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 17:00:00

An inspection completed at 07:30 on Monday in Shanghai is 23:30 UTC on Sunday: reports group by
the calendar day in the site's time zone, so both rollups are rebuilt from the inspections with
local days (store/rollups.py). An inspection whose site is gone (purged) has no local day and
is left out, as no report ever showed it. The downgrade rebuilds them by UTC day, as 0002 did.
PostgreSQL converts with AT TIME ZONE; SQLite has no time zone database, so Python does.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Self-contained (no application imports, so later code changes cannot change what this
# migration does); the same rebuild as store/rollups.py rebuild() at this revision.
MEASURES = ("completed", "passed", "critical_failed", "scored", "score_tenths")
COUNTED = ("completed", "approved", "archived")
KEYS = ("day", "site_id", "template_id", "inspector_id", "week", "month")

INSPECTIONS = sa.table(
    "inspections",
    *(
        sa.column(c)
        for c in (
            "site_id",
            "template_id",
            "inspector_id",
            "status",
            "deleted_at",
            "passed",
            "critical_failed",
            "score_percent",
        )
    ),
    sa.column("completed_received_at", sa.DateTime(timezone=True)),
)
SITES = sa.table("sites", sa.column("id"), sa.column("region_id"), sa.column("timezone"))


def _daily(name: str, place: str) -> sa.TableClause:
    return sa.table(
        name,
        sa.column("day", sa.Date()),
        *(sa.column(c) for c in (place, "template_id", "inspector_id", "week", "month")),
        *(sa.column(m) for m in MEASURES),
    )


BY_SITE = _daily("inspection_daily", "site_id")
BY_REGION = _daily("region_daily", "region_id")


def upgrade() -> None:
    _clear()
    if op.get_bind().dialect.name == "postgresql":
        when = INSPECTIONS.c.completed_received_at
        _by_site_in_sql(sa.cast(sa.func.timezone(SITES.c.timezone, when), sa.Date), True)
    else:
        _by_site_in_python()
    _labels()
    _by_region()


def downgrade() -> None:
    _clear()
    when = INSPECTIONS.c.completed_received_at
    if op.get_bind().dialect.name == "postgresql":
        _by_site_in_sql(sa.cast(sa.func.timezone("UTC", when), sa.Date), False)
    else:
        _by_site_in_sql(sa.func.date(when), False)
    _labels()
    _by_region()


def _clear() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        # Writers still running wait for the rebuild instead of adding to half of it.
        conn.execute(sa.text("LOCK TABLE inspection_daily, region_daily IN EXCLUSIVE MODE"))
    conn.execute(sa.delete(BY_REGION))
    conn.execute(sa.delete(BY_SITE))


def _counted(*columns, at_known_sites: bool) -> sa.Select:
    i = INSPECTIONS
    source = i.join(SITES, SITES.c.id == i.c.site_id) if at_known_sites else i
    return (
        sa.select(*columns)
        .select_from(source)
        .where(
            i.c.deleted_at.is_(None),
            i.c.status.in_(COUNTED),
            i.c.completed_received_at.is_not(None),
        )
    )


def _by_site_in_sql(day, at_known_sites: bool) -> None:
    """inspection_daily grouped by the database, by the day expression given."""
    i = INSPECTIONS
    percent = i.c.score_percent
    counted = _counted(
        day,
        i.c.site_id,
        i.c.template_id,
        sa.func.coalesce(i.c.inspector_id, ""),
        sa.literal_column("''"),
        sa.literal_column("''"),
        sa.func.count(),
        sa.func.count().filter(i.c.passed.is_(True)),
        sa.func.count().filter(i.c.critical_failed.is_(True)),
        sa.func.count(percent),
        sa.cast(sa.func.coalesce(sa.func.sum(sa.func.round(percent * 10)), 0), sa.BigInteger),
        at_known_sites=at_known_sites,
    ).group_by(day, i.c.site_id, i.c.template_id, i.c.inspector_id)
    op.get_bind().execute(sa.insert(BY_SITE).from_select([*KEYS, *MEASURES], counted))


def _by_site_in_python() -> None:
    """inspection_daily by local day, summed in Python (SQLite knows no time zones)."""
    i = INSPECTIONS
    conn = op.get_bind()
    rows = conn.execute(
        _counted(
            i.c.site_id,
            i.c.template_id,
            i.c.inspector_id,
            i.c.completed_received_at,
            i.c.passed,
            i.c.critical_failed,
            i.c.score_percent,
            SITES.c.timezone,
            at_known_sites=True,
        )
    )
    cells: dict[tuple, list[int]] = {}
    for site, template, inspector, when, passed, critical, percent, zone in rows:
        key = (_local_day(when, zone), site, template, inspector or "")
        total = cells.setdefault(key, [0] * len(MEASURES))
        scored = percent is not None
        values = (1, bool(passed), bool(critical), scored, round(percent * 10) if scored else 0)
        for n, v in enumerate(values):
            total[n] += int(v)
    out = [
        {**dict(zip(KEYS, (*key, "", ""), strict=True)), **dict(zip(MEASURES, v, strict=True))}
        for key, v in cells.items()
    ]
    for start in range(0, len(out), 5000):
        conn.execute(sa.insert(BY_SITE), out[start : start + 5000])


def _local_day(when: dt.datetime, zone: str) -> dt.date:
    aware = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    try:
        return aware.astimezone(ZoneInfo(zone)).date()
    except OverflowError:
        # Within hours of datetime's range the local day is not representable: the UTC day
        # is the nearest one that is (as store/rollups.py local_day).
        return aware.astimezone(dt.UTC).date()


def _labels() -> None:
    conn = op.get_bind()
    s = BY_SITE
    days = list(conn.execute(sa.select(s.c.day).distinct()).scalars())
    if days:
        conn.execute(
            sa.update(s).where(s.c.day == sa.bindparam("d")),
            [{"d": d, "week": _week(d), "month": f"{d.year}-{d.month:02d}"} for d in days],
        )


def _by_region() -> None:
    s = BY_SITE
    group = [s.c.day, SITES.c.region_id, s.c.template_id, s.c.inspector_id, s.c.week, s.c.month]
    by_region = (
        sa.select(*group, *(sa.func.sum(s.c[m]) for m in MEASURES))
        .select_from(s.join(SITES, SITES.c.id == s.c.site_id))
        .group_by(*group)
    )
    columns = ["day", "region_id", "template_id", "inspector_id", "week", "month", *MEASURES]
    op.get_bind().execute(sa.insert(BY_REGION).from_select(columns, by_region))


def _week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"
