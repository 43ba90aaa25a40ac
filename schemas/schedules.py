"""Schedules, occurrences and compliance reports."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import CommaList, Id, Instant, Out, PeriodBound, Strict

GROUPS = ("region", "site", "template", "inspector", "day", "week", "month")


class ScheduleIn(Strict):
    """A recurring inspection duty."""

    template_id = Id(required=True, metadata={"description": "The template (not a version)"})
    site_id = Id(required=True)
    assignee_ids = fields.List(Id(), load_default=list, validate=validate.Length(max=50))
    recurrence = fields.Dict(
        required=True,
        metadata={"description": 'e.g. {"freq": "daily", "times": ["08:00", "14:00", "18:00"]}'},
    )
    timezone = fields.String(validate=validate.Length(max=64))
    window_minutes = fields.Integer(
        strict=True, load_default=60, validate=validate.Range(0, 7 * 24 * 60)
    )
    grace_minutes = fields.Integer(
        strict=True, load_default=120, validate=validate.Range(0, 30 * 24 * 60)
    )


class ScheduleOut(Out):
    """A schedule."""

    id = fields.String()
    template_id = fields.String(attribute="draft_id")
    site_id = fields.String()
    assignee_ids = fields.List(fields.String())
    recurrence = fields.Dict()
    timezone = fields.String()
    window_minutes = fields.Integer()
    grace_minutes = fields.Integer()
    active = fields.Boolean()
    generated_until = fields.DateTime(allow_none=True)


class OccurrenceQuery(Strict):
    """Occurrence filters."""

    site_id = Id()
    schedule_id = Id()
    assignee_id = Id()
    due_from = Instant()
    due_to = Instant()


class OccurrenceOut(Out):
    """An occurrence with its status right now."""

    id = fields.String()
    schedule_id = fields.String()
    template_id = fields.String()
    site_id = fields.String()
    assignee_id = fields.String(allow_none=True)
    window_start = fields.DateTime()
    due_at = fields.DateTime()
    miss_at = fields.DateTime()
    status = fields.String(attribute="current_status")
    inspection_id = fields.String(allow_none=True)


class ReportQuery(Strict):
    """Period, filters and grouping."""

    start = PeriodBound(
        required=True,
        metadata={
            "description": "The period's start: a date (that day at each site, in the site's "
            "time zone) or a time with its offset (2026-11-01T00:00:00+08:00)."
        },
    )
    end = PeriodBound(
        required=True,
        metadata={
            "description": "The period's end: a date (that day included, at each site) or a "
            "time with its offset (excluded). Both ends are dates or both are times."
        },
    )
    group_by = CommaList(GROUPS, load_default=list)
    region_id = Id()
    site_id = Id()
    template_key = fields.String(validate=validate.Length(max=64))
    inspector_id = Id()
    format = fields.String(validate=validate.OneOf(("json", "csv")))


class FailingQuery(ReportQuery):
    """Most-failed items."""

    limit = fields.Integer(strict=False, load_default=20, validate=validate.Range(1, 200))


class ComplianceRow(Out):
    """One group's figures."""

    region = fields.String(allow_none=True)
    site = fields.String(allow_none=True)
    template = fields.String(allow_none=True)
    inspector = fields.String(allow_none=True)
    day = fields.String(allow_none=True)
    week = fields.String(allow_none=True)
    month = fields.String(allow_none=True)
    inspections_completed = fields.Integer()
    occurrences_scheduled = fields.Integer()
    completion_rate = fields.Float(allow_none=True)
    occurrences_missed = fields.Integer()
    average_score = fields.Float(allow_none=True)
    pass_rate = fields.Float(allow_none=True)
    critical_failures = fields.Integer()
    actions_opened = fields.Integer()
    actions_closed = fields.Integer()
    actions_overdue = fields.Integer()
    closure_rate = fields.Float(allow_none=True)
    median_hours_to_close = fields.Float(allow_none=True)


class FailingRow(Out):
    """An item and how often it failed."""

    template_key = fields.String()
    item_key = fields.String()
    failures = fields.Integer()
