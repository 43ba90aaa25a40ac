"""Schedules (HQ), occurrences, and compliance reports (JSON or CSV)."""

from __future__ import annotations

from flask import Response

from api import db
from api.blueprints.common import csv_response, documented, make_blueprint, page, wants_csv
from api.security import current_scope, login_required
from inspections import reports, schedule_service
from org.paging import page_of
from schemas.schedules import (
    ComplianceRow,
    FailingQuery,
    FailingRow,
    OccurrenceOut,
    OccurrenceQuery,
    ReportQuery,
    ScheduleIn,
    ScheduleOut,
)
from store.errors import Invalid
from store.types import utcnow

schedules = make_blueprint("schedules", "/schedules", "Recurring inspection schedules (HQ)")
occurrences = make_blueprint("occurrences", "/occurrences", "Scheduled occurrences")
report_blp = make_blueprint("reports", "/reports", "Compliance summaries")


@schedules.route("")
@schedules.response(200, ScheduleOut(many=True))
@schedules.paginate()
@documented(schedules, 401)
@login_required
def list_schedules(pagination_parameters):
    """Schedules at sites in your scope."""
    stmt = schedule_service.list_schedules(current_scope())
    return page(pagination_parameters, lambda p, n: page_of(db.session(), stmt, p, n))


@schedules.route("", methods=["POST"])
@schedules.arguments(ScheduleIn)
@schedules.response(201, ScheduleOut)
@documented(schedules, 401, 403, 422)
@login_required
def create_schedule(body):
    """Schedule a template at a site (HQ); occurrences for two weeks are created."""
    row = schedule_service.create(db.session(), current_scope(), body)
    db.commit()
    return row


@schedules.route("/<schedule_id>", methods=["DELETE"])
@schedules.response(200, ScheduleOut)
@documented(schedules, 401, 403, 404)
@login_required
def stop_schedule(schedule_id):
    """Stop a schedule (HQ); its future occurrences are withdrawn from devices."""
    row = schedule_service.deactivate(db.session(), current_scope(), schedule_id)
    db.commit()
    return row


@occurrences.route("")
@occurrences.arguments(OccurrenceQuery, location="query")
@occurrences.response(200, OccurrenceOut(many=True))
@occurrences.paginate()
@documented(occurrences, 401, 422)
@login_required
def list_occurrences(query, pagination_parameters):
    """Occurrences in scope with their status now (upcoming, due, overdue, missed, done)."""
    stmt = schedule_service.occurrences(current_scope(), query)
    rows = page(pagination_parameters, lambda p, n: page_of(db.session(), stmt, p, n))
    return schedule_service.with_status(rows, utcnow())


def _period(query):
    if query["end"] <= query["start"]:
        raise Invalid("The period must end after it starts.", errors={"end": ["before start"]})
    return query["start"], query["end"]


@report_blp.route("/compliance")
@report_blp.arguments(ReportQuery, location="query")
@report_blp.response(200, ComplianceRow(many=True))
@report_blp.alt_response(
    200, description="CSV with a header row", content_type="text/csv", success=True
)
@documented(report_blp, 401, 422)
@login_required
def compliance(query):
    """Compliance summary for a period, filtered and grouped (JSON, or CSV)."""
    start, end = _period(query)
    rows = reports.compliance(
        db.session(), current_scope(), start, end, query["group_by"], query, utcnow()
    )
    if wants_csv(query):
        return csv_response(rows, [*query["group_by"], *reports.METRICS], "compliance")
    return rows


@report_blp.route("/compliance.<any(png, svg):fmt>")
@report_blp.arguments(ReportQuery, location="query")
@report_blp.response(
    200, description="A chart of pass rate and average score over time", content_type="image/png"
)
@documented(report_blp, 401, 422)
@login_required
def compliance_chart(query, fmt):
    """Pass rate and average score over time per group, as a PNG or SVG chart."""
    from sqlalchemy import select

    from api.documents import compliance_chart as draw
    from store.models import Region, Site, User

    start, end = _period(query)
    group_by = query["group_by"] or ["week"]
    rows = reports.compliance(db.session(), current_scope(), start, end, group_by, query, utcnow())
    session = db.session()
    names = {
        i: n
        for model in (Site, Region, User)
        for i, n in session.execute(select(model.id, model.name))
    }
    data = draw(rows, group_by, fmt, names)
    return Response(data, mimetype="image/png" if fmt == "png" else "image/svg+xml")


@report_blp.route("/failing-items")
@report_blp.arguments(FailingQuery, location="query")
@report_blp.response(200, FailingRow(many=True))
@documented(report_blp, 401, 422)
@login_required
def failing_items(query):
    """The most-failed checklist items in the period."""
    start, end = _period(query)
    rows = reports.failing_items(db.session(), current_scope(), start, end, query, query["limit"])
    if wants_csv(query):
        return csv_response(rows, ["template_key", "item_key", "failures"], "failing-items")
    return rows


def blueprints():
    """This module's blueprints."""
    return [schedules, occurrences, report_blp]
