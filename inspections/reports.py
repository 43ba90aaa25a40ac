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

from sqlalchemy import and_, func, select
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
            "scores": [],
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

    stmt = select(
        Inspection.site_id,
        Inspection.template_id,
        Inspection.inspector_id,
        Inspection.completed_received_at,
        Inspection.score_percent,
        Inspection.passed,
        Inspection.critical_failed,
    ).where(
        Inspection.deleted_at.is_(None),
        Inspection.status.in_(("completed", "approved", "archived")),
        Inspection.completed_received_at >= start,
        Inspection.completed_received_at < end,
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
    for site, tpl, who, when, pct, passed, crit in session.execute(stmt):
        g = groups[_key(group_by, dims(site, tpl, who), when)]
        g["completed"] += 1
        g["passed"] += 1 if passed else 0
        g["critical"] += 1 if crit else 0
        if pct is not None:
            g["scores"].append(pct)

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
                "average_score": round(statistics.fmean(g["scores"]), 1) if g["scores"] else None,
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
