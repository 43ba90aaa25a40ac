"""Corrective actions."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import Id, Instant, Out, Strict
from schemas.inspections import AttachmentOut, _iso_ms
from store.enums import ACTION_PRIORITIES, ACTION_STATUSES


class ActionQuery(Strict):
    """Ledger filters."""

    site_id = Id()
    region_id = Id()
    inspection_id = Id()
    assignee_id = Id()
    status = fields.String(validate=validate.OneOf(ACTION_STATUSES))
    priority = fields.String(validate=validate.OneOf(ACTION_PRIORITIES))
    source = fields.String(validate=validate.OneOf(("auto", "manual")))
    overdue = fields.Boolean()
    format = fields.String(validate=validate.OneOf(("json", "csv")))


class ActionIn(Strict):
    """Raise an action by hand."""

    site_id = Id()
    inspection_id = Id()
    response_id = Id()
    title = fields.String(required=True, validate=validate.Length(min=1, max=300))
    description = fields.String(validate=validate.Length(max=20000), allow_none=True)
    priority = fields.String(validate=validate.OneOf(ACTION_PRIORITIES))
    assignee_id = Id(allow_none=True)
    due_at = Instant(allow_none=True)


class TransitionIn(Strict):
    """Move an action: start, resolve (note + evidence), verify, reopen."""

    status = fields.String(
        required=True, validate=validate.OneOf(("in_progress", "resolved", "verified", "reopened"))
    )
    note = fields.String(validate=validate.Length(max=20000), allow_none=True)


class ActionOut(Out):
    """A corrective action with its derived overdue flag."""

    id = fields.String()
    site_id = fields.String()
    inspection_id = fields.String(allow_none=True)
    response_id = fields.String(allow_none=True)
    title = fields.String()
    description = fields.String(allow_none=True)
    priority = fields.String()
    status = fields.String()
    assignee_id = fields.String(allow_none=True)
    due_at = fields.Method("_due", allow_none=True)
    overdue = fields.Boolean()
    resolution_note = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    created_by = fields.String(allow_none=True)
    verified_by = fields.String(allow_none=True)
    verified_at = fields.Method("_verified", allow_none=True)
    source = fields.String()
    evidence = fields.List(fields.Nested(AttachmentOut))

    def _due(self, obj):
        return _iso_ms(obj.due_at)

    def _verified(self, obj):
        return _iso_ms(obj.verified_at)
