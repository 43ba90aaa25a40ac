"""Compliance summaries for HQ and regional managers.

They read the per-inspection summary the sync engine keeps on every inspection row (score,
passed, critical_failed, times) through its daily rollups (store/rollups.py: a few rows per day
for HQ, one per site, template and inspector otherwise), plus occurrences and actions; never
the responses, so a summary over a million answers reads thousands of rows, not a million.
A day, week or month is the calendar one at the inspection's (occurrence's, action's) site, in
the site's time zone. A period is either instants [start, end) (datetimes), or calendar days
[start, end) (dates), each taken at each site in its own time zone: a day at a Shanghai site
begins eight hours before the same day at a London one.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, false, func, not_, or_, select
from sqlalchemy.orm import Session

from store import rollups
from store.errors import Invalid
from store.models import (
    Action,
    Inspection,
    InspectionDaily,
    Occurrence,
    RegionDaily,
    Response,
    Site,
    TemplateVersion,
)
from sync.scope import Scope

GROUPS = ("region", "site", "template", "inspector", "day", "week", "month")
METRICS = (
    "inspections_completed",
    "occurrences_scheduled",
    "completion_rate",
    "occurrences_missed",
    "average_score",
    "pass_rate",
    "critical_failures",
    "actions_opened",
    "actions_closed",
    "actions_overdue",
    "closure_rate",
    "median_hours_to_close",
)


# A site no longer known (purged) has no time zone left: its occurrences and actions fall on
# UTC days (its inspections leave the reports, see store/rollups.py).
NO_ZONE = "UTC"


def _bucket(when: dt.datetime, unit: str, zone: str) -> str:
    """The day, ISO week or month `when` falls in at a site in time zone `zone`."""
    day = rollups.local_day(when, zone)
    if unit == "day":
        return day.isoformat()
    if unit == "week":
        return rollups.week_label(day)
    return rollups.month_label(day)


def _key(group_by: list[str], row: dict[str, Any], when: dt.datetime | None, zone: str) -> tuple:
    out = []
    for g in group_by:
        if g in ("day", "week", "month"):
            out.append(_bucket(when, g, zone) if when else None)
        else:
            out.append(row.get(g))
    return tuple(out)


def _filters(
    stmt, scope: Scope, f: dict[str, Any], site_col, template_col=None, inspector_col=None
):
    stmt = stmt.where(scope.history_clause(site_col))
    if f.get("site_id"):
        stmt = stmt.where(site_col == f["site_id"])
    if f.get("region_id"):
        stmt = stmt.where(site_col.in_(select(Site.id).where(Site.region_id == f["region_id"])))
    if f.get("template_key") and template_col is not None:
        stmt = stmt.where(
            template_col.in_(
                select(TemplateVersion.id).where(TemplateVersion.template_key == f["template_key"])
            )
        )
    if f.get("inspector_id") and inspector_col is not None:
        stmt = stmt.where(inspector_col == f["inspector_id"])
    return stmt


def _lookups(session: Session) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Site -> region, site -> time zone, template version -> template key."""
    regions: dict[str, str] = {}
    zones: dict[str, str] = {}
    for site, region, zone in session.execute(select(Site.id, Site.region_id, Site.timezone)):
        regions[site], zones[site] = region, zone
    templates = dict(
        session.execute(select(TemplateVersion.id, TemplateVersion.template_key)).all()
    )
    return regions, zones, templates


@dataclass(frozen=True)
class _Span:
    """A time zone's local days lying wholly inside a period: [first, last), and the instants
    [begins, ends) they cover."""

    first: dt.date
    last: dt.date
    begins: dt.datetime
    ends: dt.datetime


Moment = dt.datetime | dt.date  # a period's bound: an instant, or a day at each site


def is_days(bound: Moment) -> bool:
    """Whether a period's bound is a calendar day (at each site), not an instant."""
    return not isinstance(bound, dt.datetime)


def period(start: Moment, end: Moment) -> tuple[Moment, Moment]:
    """A report's period from a request's bounds, as the reports take it: instants [start,
    end), or days from start to end, the end day included (Invalid if it is empty or mixes
    the two)."""
    if is_days(start) != is_days(end):
        raise Invalid(
            "Send both ends of the period as dates (2026-11-01: the day at each site) or both "
            "as times with their offsets (2026-11-01T00:00:00+08:00).",
            errors={"end": ["a date and a time"]},
        )
    if is_days(start):
        if end < start:
            raise Invalid(
                "The period must end on or after the day it starts.",
                errors={"end": ["before start"]},
            )
        return start, end + dt.timedelta(days=1)
    if end <= start:
        raise Invalid("The period must end after it starts.", errors={"end": ["before start"]})
    return start, end


def _instants(start: Moment, end: Moment, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """The instants [from, to) a period covers at a site in time zone `zone`."""
    if not is_days(start):
        return start, end
    tz = ZoneInfo(zone)
    return _midnight(start, tz), _midnight(end, tz)


def _within(start: Moment, end: Moment, when, zone_of, zones: set[str]):
    """A WHERE clause: `when` lies in the period at its site (whose time zone is `zone_of`,
    one of `zones`, when the period is days)."""
    if not is_days(start):
        return and_(when >= start, when < end)
    parts = []
    for zone in sorted(zones):
        begins, ends = _instants(start, end, zone)
        parts.append(and_(zone_of == zone, when >= begins, when < ends))
    return or_(*parts) if parts else false()


def _in_period(stmt, start: Moment, end: Moment, when, site_col, zones: set[str]):
    """The statement limited to rows whose `when` lies in the period at their site
    (`site_col`; a site no longer known, NO_ZONE's days). `zones`: those of the sites."""
    if is_days(start):
        stmt = stmt.outerjoin(Site, Site.id == site_col)
    return stmt.where(_within(start, end, when, func.coalesce(Site.timezone, NO_ZONE), zones))


def _day_span(start: dt.date, end: dt.date, zone: str) -> _Span:
    """A period of days as a time zone's whole days."""
    return _Span(start, end, *_instants(start, end, zone))


def _whole_days(start: dt.datetime, end: dt.datetime, zone: str) -> _Span | None:
    """The local days of `zone` lying wholly inside [start, end), or None if none does."""
    tz = ZoneInfo(zone)
    try:
        first = start.astimezone(tz).date()
        if _midnight(first, tz) < start:
            first += dt.timedelta(days=1)  # a ragged start's day is not whole
        last = end.astimezone(tz).date()
        if first >= last:
            return None
        return _Span(first, last, _midnight(first, tz), _midnight(last, tz))
    except OverflowError:
        # Within hours of datetime's range (9999-12-31) not every local day is representable:
        # such a period is read from the inspections alone.
        return None


def _midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The instant a local day begins (zoneinfo maps a midnight skipped by DST to the first
    instant of the day)."""
    return dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC)


def _zones(session: Session, scope: Scope, filters: dict[str, Any]) -> set[str]:
    """The time zones of the sites a report's rollup cells may come from."""
    stmt = select(Site.timezone).distinct().where(scope.history_clause(Site.id))
    if filters.get("site_id"):
        stmt = stmt.where(Site.id == filters["site_id"])
    if filters.get("region_id"):
        stmt = stmt.where(Site.region_id == filters["region_id"])
    return set(session.execute(stmt).scalars())


def _inspection_groups(
    session: Session,
    scope: Scope,
    start: dt.datetime,
    end: dt.datetime,
    group_by: list[str],
    filters: dict[str, Any],
    use_rollups: bool,
) -> Iterator[tuple[tuple, rollups.Measures]]:
    """(group key, counted, passed, critical, scored, score tenths) of the completed inspections."""
    # Per time zone of the sites in scope, the local days wholly inside the period come from a
    # daily rollup; the ragged ends of the period (and all of it when use_rollups is off, the
    # from-scratch reference) from the inspections themselves.
    days = is_days(start)
    zones = _zones(session, scope, filters) if use_rollups or days else set()
    if days:
        # Every zone's days are whole: all from the rollup (from the inspections, all of them,
        # for the from-scratch reference). The rollups are keyed by each site's own day, so
        # region_daily serves whatever the zones.
        spans = {z: _day_span(start, end, z) for z in sorted(zones)} if use_rollups else {}
        if not use_rollups:
            yield from _from_inspections(session, scope, start, end, group_by, filters, {}, zones)
        same_days = True
    else:
        spans = {z: span for z in sorted(zones) if (span := _whole_days(start, end, z))}
        for a, b in _raw_windows(start, end, spans, len(spans) < len(zones)):
            yield from _from_inspections(session, scope, a, b, group_by, filters, spans, zones)
        # region_daily sums sites of every zone day by day: it serves only when every zone in
        # scope has the same whole days at the same instants (one zone, or Shanghai with Hong
        # Kong and Singapore...).
        same_days = len(zones) == len(spans) and len(set(spans.values())) == 1
    if spans:
        yield from _from_rollup(session, scope, spans, group_by, filters, same_days)


def _raw_windows(
    start: dt.datetime, end: dt.datetime, spans: dict[str, _Span], zones_left: bool
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Stretches of the period holding every instant outside some zone's whole days."""
    if not spans or zones_left:
        return [(start, end)]
    head = max(s.begins for s in spans.values())
    tail = max(head, min(s.ends for s in spans.values()))
    return [(a, b) for a, b in ((start, head), (tail, end)) if a < b]


def _from_inspections(
    session: Session,
    scope: Scope,
    start: Moment,
    end: Moment,
    group_by: list[str],
    filters: dict[str, Any],
    spans: dict[str, _Span],
    zones: set[str],
) -> Iterator[tuple[tuple, rollups.Measures]]:
    """One entry per inspection in the period outside its site's zone's whole days (spans),
    with the measures the rollups sum (store/rollups.py); `zones`: those of the sites."""
    when = Inspection.completed_received_at
    stmt = (
        select(
            Site.region_id,
            Inspection.site_id,
            TemplateVersion.template_key,
            Inspection.inspector_id,
            Site.timezone,
            when,
            Inspection.passed,
            Inspection.critical_failed,
            Inspection.score_percent,
        )
        .join(Site, Site.id == Inspection.site_id)
        .join(TemplateVersion, TemplateVersion.id == Inspection.template_id)
        .where(
            Inspection.deleted_at.is_(None),
            Inspection.status.in_(rollups.COUNTED_STATUSES),
            _within(start, end, when, Site.timezone, zones),
        )
    )
    if spans:
        served = [
            and_(Site.timezone == z, when >= s.begins, when < s.ends) for z, s in spans.items()
        ]
        stmt = stmt.where(not_(or_(*served)))  # those come from a rollup
    stmt = _filters(
        stmt, scope, filters, Inspection.site_id, Inspection.template_id, Inspection.inspector_id
    )
    rows = session.execute(stmt)
    for region, site, template, inspector, zone, at, passed, critical, percent in rows:
        dims = {"region": region, "site": site, "template": template, "inspector": inspector}
        yield _key(group_by, dims, at, zone), rollups.measures(passed, critical, percent)


def _from_rollup(
    session: Session,
    scope: Scope,
    spans: dict[str, _Span],
    group_by: list[str],
    filters: dict[str, Any],
    same_days: bool,
) -> Iterator[tuple[tuple, rollups.Measures]]:
    """Per group, the sums of the rollup cells of each zone's whole days, grouped in the
    database (same_days: every zone in scope has the same whole days)."""
    # region_daily has a few rows a day but no sites: it serves whoever sees every site and
    # neither filters nor groups by one (HQ), when the days are the same in every zone;
    # otherwise inspection_daily, whose sites give each cell's zone.
    by_region = (
        same_days
        and scope.site_ids is None
        and not filters.get("site_id")
        and "site" not in group_by
    )
    t = RegionDaily if by_region else InspectionDaily
    region = RegionDaily.region_id if by_region else Site.region_id
    columns = {
        "region": region,
        "site": InspectionDaily.site_id,
        "template": TemplateVersion.template_key,
        "inspector": t.inspector_id,
        "day": t.day,
        "week": t.week,
        "month": t.month,
    }
    keys = [columns[g] for g in group_by]
    # The joins drop what a report's joins drop: unknown template versions (and, on
    # inspection_daily, unknown sites; region_daily only ever holds known ones).
    first = min(s.first for s in spans.values())
    last = max(s.last for s in spans.values())
    stmt = (
        select(*keys, *(func.sum(getattr(t, m)) for m in rollups.MEASURES))
        .select_from(t)
        .join(TemplateVersion, TemplateVersion.id == t.template_id)
        .where(t.day >= first, t.day < last)  # the range the primary key serves
    )
    if not by_region:
        stmt = stmt.join(Site, Site.id == InspectionDaily.site_id)
        whole = [
            and_(Site.timezone == z, t.day >= s.first, t.day < s.last) for z, s in spans.items()
        ]
        stmt = stmt.where(or_(*whole))
        stmt = stmt.where(scope.history_clause(InspectionDaily.site_id))
        if filters.get("site_id"):
            stmt = stmt.where(InspectionDaily.site_id == filters["site_id"])
    if filters.get("region_id"):
        stmt = stmt.where(region == filters["region_id"])
    if filters.get("template_key"):
        stmt = stmt.where(TemplateVersion.template_key == filters["template_key"])
    if filters.get("inspector_id"):
        stmt = stmt.where(t.inspector_id == filters["inspector_id"])
    if keys:
        stmt = stmt.group_by(*keys)
    width = len(keys)
    convert = "day" in group_by or "inspector" in group_by
    for row in session.execute(stmt):
        n, passed, critical, scored, tenths = row[width:]
        if not n:
            continue  # an aggregate without GROUP BY answers one row even when nothing matched
        key = tuple(row[:width])
        if convert:
            key = tuple(_rollup_key(g, v) for g, v in zip(group_by, key, strict=True))
        yield key, (int(n), int(passed), int(critical), int(scored), int(tenths))


def _rollup_key(group: str, value: Any) -> Any:
    """A rollup column's value as the report shows it."""
    if group == "day":
        return value.isoformat()
    if group == "inspector":
        return value or None  # the rollups hold '' for no inspector
    return value


def compliance(
    session: Session,
    scope: Scope,
    start: Moment,
    end: Moment,
    group_by: list[str],
    filters: dict[str, Any],
    now: dt.datetime,
    use_rollups: bool = True,
) -> list[dict[str, Any]]:
    """Per group: domain.md's metrics for inspections, occurrences and actions in the period
    (instants [start, end), or days [start, end) at each site)."""
    regions, zones, templates = _lookups(session)
    # A site no longer known (purged) has its records' days in UTC, as _key buckets them.
    known_zones = {*zones.values(), NO_ZONE}
    groups: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {
            "score_tenths": 0,
            "score_n": 0,
            "completed": 0,
            "passed": 0,
            "critical": 0,
            "scheduled": 0,
            "missed": 0,
            "done": 0,
            "opened": 0,
            "closed": 0,
            "overdue": 0,
            "hours": [],
        }
    )

    def dims(site_id, template_id, inspector_id):
        return {
            "site": site_id,
            "region": regions.get(site_id),
            "template": templates.get(template_id),
            "inspector": inspector_id,
        }

    for key, (n, passed, critical, scored, tenths) in _inspection_groups(
        session, scope, start, end, group_by, filters, use_rollups
    ):
        g = groups[key]
        g["completed"] += n
        g["passed"] += passed
        g["critical"] += critical
        g["score_tenths"] += tenths
        g["score_n"] += scored
    stmt = select(
        Occurrence.site_id,
        Occurrence.template_id,
        Occurrence.assignee_id,
        Occurrence.due_at,
        Occurrence.miss_at,
        Occurrence.status,
    ).where(Occurrence.deleted_at.is_(None))
    stmt = _in_period(stmt, start, end, Occurrence.due_at, Occurrence.site_id, known_zones)
    stmt = _filters(
        stmt, scope, filters, Occurrence.site_id, Occurrence.template_id, Occurrence.assignee_id
    )
    for site, tpl, who, due, miss, status in session.execute(stmt):
        g = groups[_key(group_by, dims(site, tpl, who), due, zones.get(site, NO_ZONE))]
        g["scheduled"] += 1
        g["done"] += 1 if status == "done" else 0
        g["missed"] += 1 if status != "done" and miss <= now else 0

    now_ms = int(now.timestamp() * 1000)
    stmt = (
        select(
            Action.site_id,
            Inspection.template_id,
            Action.assignee_id,
            Action.created_at,
            Action.resolved_at,
            Action.status,
            Action.due_at,
        )
        .outerjoin(Inspection, Inspection.id == Action.inspection_id)
        .where(Action.deleted_at.is_(None))
    )
    stmt = _in_period(stmt, start, end, Action.created_at, Action.site_id, known_zones)
    stmt = _filters(
        stmt, scope, filters, Action.site_id, Inspection.template_id, Action.assignee_id
    )
    for site, tpl, who, created, resolved, status, due in session.execute(stmt):
        g = groups[_key(group_by, dims(site, tpl, who), created, zones.get(site, NO_ZONE))]
        g["opened"] += 1
        closed = status in ("resolved", "verified")
        g["closed"] += 1 if closed else 0
        g["overdue"] += 1 if not closed and due is not None and due < now_ms else 0
        if closed and resolved:
            g["hours"].append((resolved - created).total_seconds() / 3600)

    rows = []
    for key, g in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        row: dict[str, Any] = dict(zip(group_by, key, strict=True))
        row.update(
            {
                "inspections_completed": g["completed"],
                "occurrences_scheduled": g["scheduled"],
                "completion_rate": _ratio(g["done"], g["scheduled"]),
                "occurrences_missed": g["missed"],
                "average_score": round(g["score_tenths"] / (10 * g["score_n"]), 1)
                if g["score_n"]
                else None,
                "pass_rate": _ratio(g["passed"], g["completed"]),
                "critical_failures": g["critical"],
                "actions_opened": g["opened"],
                "actions_closed": g["closed"],
                "actions_overdue": g["overdue"],
                "closure_rate": _ratio(g["closed"], g["opened"]),
                "median_hours_to_close": round(statistics.median(g["hours"]), 1)
                if g["hours"]
                else None,
            }
        )
        rows.append(row)
    return rows


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def failing_items(
    session: Session,
    scope: Scope,
    start: Moment,
    end: Moment,
    filters: dict[str, Any],
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The items failed most often in completed inspections of the period (an index on the
    failed answers only, grouped in the database)."""
    zones: set[str] = set()
    if is_days(start):
        zones = {*session.execute(select(Site.timezone).distinct()).scalars(), NO_ZONE}
    stmt = (
        select(TemplateVersion.template_key, Response.item_key, func.count().label("n"))
        .join(Inspection, Inspection.id == Response.inspection_id)
        .join(TemplateVersion, TemplateVersion.id == Inspection.template_id)
        .where(
            Response.failed.is_(True),
            Response.deleted_at.is_(None),
            Inspection.deleted_at.is_(None),
            # The statuses compliance counts: a returned or reopened inspection is not done.
            Inspection.status.in_(rollups.COUNTED_STATUSES),
        )
        .group_by(TemplateVersion.template_key, Response.item_key)
        .order_by(func.count().desc(), TemplateVersion.template_key, Response.item_key)
        .limit(limit)
    )
    received = Inspection.completed_received_at
    stmt = _in_period(stmt, start, end, received, Inspection.site_id, zones)
    stmt = _filters(
        stmt, scope, filters, Inspection.site_id, Inspection.template_id, Inspection.inspector_id
    )
    return [{"template_key": t, "item_key": k, "failures": n} for t, k, n in session.execute(stmt)]
