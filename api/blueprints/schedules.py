"""Schedules (HQ), occurrences, and compliance reports (JSON or CSV)."""

from __future__ import annotations

from api import db
from api.blueprints.common import (
    binary_content,
    csv_alternative,
    csv_response,
    documented,
    make_blueprint,
    page,
    wants_csv,
)
from api.downloads import compliance_chart_response
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


@report_blp.route("/compliance")
@report_blp.arguments(ReportQuery, location="query")
@report_blp.response(200, ComplianceRow(many=True), description="JSON, or CSV with format=csv")
@csv_alternative(report_blp)
@documented(report_blp, 401, 422)
@login_required
def compliance(query):
    """Compliance summary for a period, filtered and grouped (JSON, or CSV)."""
    start, end = reports.period(query["start"], query["end"])
    rows = reports.compliance(
        db.session(), current_scope(), start, end, query["group_by"], query, utcnow()
    )
    if wants_csv(query):
        return csv_response(rows, [*query["group_by"], *reports.METRICS], "compliance")
    return rows


@report_blp.route("/compliance.<any(png, svg):fmt>")
# The chart's format is its extension: no json/csv `format` parameter here.
@report_blp.arguments(ReportQuery(exclude=("format",)), location="query")
@report_blp.response(
    200, description="A chart of pass rate and average score over time", content_type="image/png"
)
@binary_content(report_blp, "image/png", "image/svg+xml")
@documented(report_blp, 401, 422)
@login_required
def compliance_chart(query, fmt):
    """Pass rate and average score over time per group, as a PNG or SVG chart."""
    start, end = reports.period(query["start"], query["end"])
    return compliance_chart_response(
        current_scope(), start, end, query["group_by"], query, fmt, utcnow()
    )


@report_blp.route("/failing-items")
@report_blp.arguments(FailingQuery, location="query")
@report_blp.response(200, FailingRow(many=True), description="JSON, or CSV with format=csv")
@csv_alternative(report_blp)
@documented(report_blp, 401, 422)
@login_required
def failing_items(query):
    """The most-failed checklist items in the period."""
    start, end = reports.period(query["start"], query["end"])
    rows = reports.failing_items(db.session(), current_scope(), start, end, query, query["limit"])
    if wants_csv(query):
        return csv_response(rows, ["template_key", "item_key", "failures"], "failing-items")
    return rows


def blueprints():
    """This module's blueprints."""
    return [schedules, occurrences, report_blp]
