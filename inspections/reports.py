"""Compliance summaries for HQ and regional managers.

They read the per-inspection summary the sync engine keeps on every inspection row (score,
passed, critical_failed, times) plus occurrences and actions, never the responses, so a
summary over a million answers reads tens of thousands of rows, not a million.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from store.models import Action, Inspection, Occurrence, Response, Site, TemplateVersion
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


_PG_FORMATS = {"day": "YYYY-MM-DD", "week": 'IYYY-"W"IW', "month": "YYYY-MM"}
_SQLITE_FORMATS = {"day": "%Y-%m-%d", "week": "%Y-%m-%d", "month": "%Y-%m"}


def _sql_keys(session: Session, group_by: list[str]) -> tuple[list[Any], list[str]]:
    """SQL expressions producing each group key as the report shows it; SQLite has no ISO
    week, so weeks come as days there and are folded in Python (`kinds` says which)."""
    postgres = session.get_bind().dialect.name == "postgresql"
    when = Inspection.completed_received_at
    columns, kinds = [], []
    for g in group_by:
        if g in _PG_FORMATS:
            if postgres:
                columns.append(func.to_char(func.timezone("UTC", when), _PG_FORMATS[g]))
                kinds.append(g)
            else:
                columns.append(func.strftime(_SQLITE_FORMATS[g], when))
                kinds.append("day" if g == "week" else g)
        else:
            columns.append(
                {
                    "region": Site.region_id,
                    "site": Inspection.site_id,
                    "template": TemplateVersion.template_key,
                    "inspector": Inspection.inspector_id,
                }[g]
            )
            kinds.append(g)
    return columns, kinds


def _as_date(value: Any) -> dt.datetime:
    """A day from either database, as a UTC datetime at midnight."""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def _bucket(when: dt.datetime, unit: str) -> str:
    if unit == "day":
        return when.date().isoformat()
    if unit == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{when.year}-{when.month:02d}"


def _key(group_by: list[str], row: dict[str, Any], when: dt.datetime | None) -> tuple:
    out = []
    for g in group_by:
        if g in ("day", "week", "month"):
            out.append(_bucket(when, g) if when else None)
        else:
            out.append(row.get(g))
    return tuple(out)


def _filters(
    stmt, model, scope: Scope, f: dict[str, Any], site_col, template_col=None, inspector_col=None
):
    stmt = stmt.where(scope.site_clause(site_col))
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


def compliance(
    session: Session,
    scope: Scope,
    start: dt.datetime,
    end: dt.datetime,
    group_by: list[str],
    filters: dict[str, Any],
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Per group: the metrics of domain.md for inspections, occurrences and actions in
    [start, end)."""
    regions, templates = _lookups(session)
    groups: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {
            "score_sum": 0.0,
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

    # Inspections are the big table: the database groups them by exactly the requested keys,
    # so Python only sees one row per output group (per day for weeks on SQLite).
    columns, keys = _sql_keys(session, group_by)
    n_passed = func.sum(case((Inspection.passed.is_(True), 1), else_=0))
    n_critical = func.sum(case((Inspection.critical_failed.is_(True), 1), else_=0))
    stmt = (
        select(
            *columns,
            func.count(),
            n_passed,
            n_critical,
            func.sum(Inspection.score_percent),
            func.count(Inspection.score_percent),
        )
        .select_from(Inspection)
        .join(Site, Site.id == Inspection.site_id)
        .join(TemplateVersion, TemplateVersion.id == Inspection.template_id)
        .where(
            Inspection.deleted_at.is_(None),
            Inspection.status.in_(("completed", "approved", "archived")),
            Inspection.completed_received_at >= start,
            Inspection.completed_received_at < end,
        )
    )
    stmt = _filters(
        stmt,
        Inspection,
        scope,
        filters,
        Inspection.site_id,
        Inspection.template_id,
        Inspection.inspector_id,
    )
    if columns:
        stmt = stmt.group_by(*columns)
    for row in session.execute(stmt):
        values = list(row[: len(columns)])
        n, passed, crit, score_sum, score_n = row[len(columns) :]
        if not n:
            continue  # an aggregate without GROUP BY answers one row even when nothing matched
        key = tuple(
            _bucket(_as_date(v), g) if g == "week" and k == "day" else v
            for v, g, k in zip(values, group_by, keys, strict=True)
        )
        g = groups[key]
        g["completed"] += n
        g["passed"] += passed or 0
        g["critical"] += crit or 0
        g["score_sum"] += score_sum or 0.0
        g["score_n"] += score_n or 0
    stmt = select(
        Occurrence.site_id,
        Occurrence.template_id,
        Occurrence.assignee_id,
        Occurrence.due_at,
        Occurrence.miss_at,
        Occurrence.status,
    ).where(Occurrence.deleted_at.is_(None), Occurrence.due_at >= start, Occurrence.due_at < end)
    stmt = _filters(
        stmt,
        Occurrence,
        scope,
        filters,
        Occurrence.site_id,
        Occurrence.template_id,
        Occurrence.assignee_id,
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
        stmt, Action, scope, filters, Action.site_id, Inspection.template_id, Action.assignee_id
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
                "average_score": round(g["score_sum"] / g["score_n"], 1) if g["score_n"] else None,
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
            and_(Inspection.completed_received_at >= start, Inspection.completed_received_at < end),
        )
        .group_by(TemplateVersion.template_key, Response.item_key)
        .order_by(func.count().desc(), TemplateVersion.template_key, Response.item_key)
        .limit(limit)
    )
    stmt = _filters(
        stmt,
        Inspection,
        scope,
        filters,
        Inspection.site_id,
        Inspection.template_id,
        Inspection.inspector_id,
    )
    return [{"template_key": t, "item_key": k, "failures": n} for t, k, n in session.execute(stmt)]
