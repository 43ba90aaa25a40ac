"""Compliance summaries for HQ and regional managers.

They read the per-inspection summary the sync engine keeps on every inspection row (score,
passed, critical_failed, times) through its daily rollups (store/rollups.py: a few rows per day
for HQ, one per site, template and inspector otherwise), plus occurrences and actions; never
the responses, so a summary over a million answers reads thousands of rows, not a million.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from store import rollups
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


def _bucket(when: dt.datetime, unit: str) -> str:
    day = when.astimezone(dt.UTC).date()
    if unit == "day":
        return day.isoformat()
    if unit == "week":
        return rollups.week_label(day)
    return rollups.month_label(day)


def _key(group_by: list[str], row: dict[str, Any], when: dt.datetime | None) -> tuple:
    out = []
    for g in group_by:
        if g in ("day", "week", "month"):
            out.append(_bucket(when, g) if when else None)
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


def _lookups(session: Session) -> tuple[dict[str, str], dict[str, str]]:
    regions = dict(session.execute(select(Site.id, Site.region_id)).all())
    templates = dict(
        session.execute(select(TemplateVersion.id, TemplateVersion.template_key)).all()
    )
    return regions, templates


def _whole_days(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date] | None:
    """The UTC days lying wholly inside [start, end), as [first, last), or None if none does."""
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    first, last = start.date(), end.date()
    # A ragged start's day is not whole; checked before stepping past it, as the day after
    # 9999-12-31 does not exist (and a period that starts on it holds no whole day anyway).
    if start != _midnight(first):
        if first >= last:
            return None
        first += dt.timedelta(days=1)
    return (first, last) if first < last else None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


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
    # Whole UTC days come from a daily rollup; the ragged ends of the period (and all of it
    # when use_rollups is off, the from-scratch reference) from the inspections themselves.
    days = _whole_days(start, end) if use_rollups else None
    if days is None:
        yield from _from_inspections(session, scope, start, end, group_by, filters)
        return
    first, last = _midnight(days[0]), _midnight(days[1])
    if start < first:
        yield from _from_inspections(session, scope, start, first, group_by, filters)
    yield from _from_rollup(session, scope, days[0], days[1], group_by, filters)
    if last < end:
        yield from _from_inspections(session, scope, last, end, group_by, filters)


def _from_inspections(
    session: Session,
    scope: Scope,
    start: dt.datetime,
    end: dt.datetime,
    group_by: list[str],
    filters: dict[str, Any],
) -> Iterator[tuple[tuple, rollups.Measures]]:
    """One entry per inspection, with the measures the rollups sum (store/rollups.py)."""
    stmt = (
        select(
            Site.region_id,
            Inspection.site_id,
            TemplateVersion.template_key,
            Inspection.inspector_id,
            Inspection.completed_received_at,
            Inspection.passed,
            Inspection.critical_failed,
            Inspection.score_percent,
        )
        .join(Site, Site.id == Inspection.site_id)
        .join(TemplateVersion, TemplateVersion.id == Inspection.template_id)
        .where(
            Inspection.deleted_at.is_(None),
            Inspection.status.in_(rollups.COUNTED_STATUSES),
            Inspection.completed_received_at >= start,
            Inspection.completed_received_at < end,
        )
    )
    stmt = _filters(
        stmt, scope, filters, Inspection.site_id, Inspection.template_id, Inspection.inspector_id
    )
    for region, site, template, inspector, when, passed, critical, percent in session.execute(stmt):
        dims = {"region": region, "site": site, "template": template, "inspector": inspector}
        yield _key(group_by, dims, when), rollups.measures(passed, critical, percent)


def _from_rollup(
    session: Session,
    scope: Scope,
    first: dt.date,
    last: dt.date,
    group_by: list[str],
    filters: dict[str, Any],
) -> Iterator[tuple[tuple, rollups.Measures]]:
    """Per group, the sums of the rollup cells of days [first, last), grouped in the database."""
    # region_daily has a few rows a day but no sites: it serves whoever sees every site and
    # neither filters nor groups by one (HQ); everyone else reads inspection_daily.
    by_region = scope.site_ids is None and not filters.get("site_id") and "site" not in group_by
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
    stmt = (
        select(*keys, *(func.sum(getattr(t, m)) for m in rollups.MEASURES))
        .select_from(t)
        .join(TemplateVersion, TemplateVersion.id == t.template_id)
        .where(t.day >= first, t.day < last)
    )
    if not by_region:
        stmt = stmt.join(Site, Site.id == InspectionDaily.site_id)
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
    start: dt.datetime,
    end: dt.datetime,
    group_by: list[str],
    filters: dict[str, Any],
    now: dt.datetime,
    use_rollups: bool = True,
) -> list[dict[str, Any]]:
    """Per group: domain.md's metrics for inspections, occurrences and actions in [start, end)."""
    regions, templates = _lookups(session)
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
    ).where(Occurrence.deleted_at.is_(None), Occurrence.due_at >= start, Occurrence.due_at < end)
    stmt = _filters(
        stmt, scope, filters, Occurrence.site_id, Occurrence.template_id, Occurrence.assignee_id
    )
    for site, tpl, who, due, miss, status in session.execute(stmt):
        g = groups[_key(group_by, dims(site, tpl, who), due)]
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
        .where(Action.deleted_at.is_(None), Action.created_at >= start, Action.created_at < end)
    )
    stmt = _filters(
        stmt, scope, filters, Action.site_id, Inspection.template_id, Action.assignee_id
    )
    for site, tpl, who, created, resolved, status, due in session.execute(stmt):
        g = groups[_key(group_by, dims(site, tpl, who), created)]
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
    start: dt.datetime,
    end: dt.datetime,
    filters: dict[str, Any],
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The items failed most often in completed inspections of the period (an index on the
    failed answers only, grouped in the database)."""
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
            and_(Inspection.completed_received_at >= start, Inspection.completed_received_at < end),
        )
        .group_by(TemplateVersion.template_key, Response.item_key)
        .order_by(func.count().desc(), TemplateVersion.template_key, Response.item_key)
        .limit(limit)
    )
    stmt = _filters(
        stmt, scope, filters, Inspection.site_id, Inspection.template_id, Inspection.inspector_id
    )
    return [{"template_key": t, "item_key": k, "failures": n} for t, k, n in session.execute(stmt)]
