"""Inspections for review: queue, full view, decisions; the audit trail."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import Id, Instant, Out, Strict
from store.enums import INSPECTION_STATUSES
from store.types import from_epoch_ms


def _file_url(attachment, variant: str) -> str:
    return f"/api/v1/attachments/{attachment.id}/file?variant={variant}"


class InspectionQuery(Strict):
    """Review queue filters."""

    status = fields.String(validate=validate.OneOf(INSPECTION_STATUSES))
    site_id = Id()
    region_id = Id()
    template_id = Id()
    template_key = fields.String(validate=validate.Length(max=64))
    inspector_id = Id()
    passed = fields.Boolean()
    critical_failed = fields.Boolean()
    has_conflicts = fields.Boolean()
    media_complete = fields.Boolean()
    completed_from = Instant(default_timezone=None)
    completed_to = Instant(default_timezone=None)


class InspectionOut(Out):
    """An inspection as reviewers see it (device times in ISO 8601)."""

    id = fields.String()
    template_id = fields.String()
    site_id = fields.String()
    occurrence_id = fields.String(allow_none=True)
    area = fields.String(allow_none=True)
    mode = fields.String(allow_none=True)
    status = fields.String()
    started_at = fields.Method("_started", allow_none=True)
    completed_at = fields.Method("_completed", allow_none=True)
    received_at = fields.DateTime(attribute="completed_received_at", allow_none=True)
    notes = fields.String(allow_none=True)
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    inspector_id = fields.String(allow_none=True)
    score = fields.Float(allow_none=True)
    max_score = fields.Float(allow_none=True)
    score_percent = fields.Float(allow_none=True)
    grade = fields.String(allow_none=True)
    passed = fields.Boolean(allow_none=True)
    critical_failed = fields.Boolean()
    media_complete = fields.Boolean()
    review_state = fields.String(allow_none=True)
    review_comment = fields.String(allow_none=True)
    reviewed_by = fields.String(allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    has_conflicts = fields.Boolean()
    server_rev = fields.Integer()

    def _started(self, obj):
        return _iso_ms(obj.started_at)

    def _completed(self, obj):
        return _iso_ms(obj.completed_at)


def _iso_ms(ms):
    if ms is None:
        return None
    return from_epoch_ms(ms).isoformat().replace("+00:00", "Z")


class AttachmentOut(Out):
    """A photo or signature with links to its variants."""

    id = fields.String()
    kind = fields.String()
    response_id = fields.String(allow_none=True)
    action_id = fields.String(allow_none=True)
    mime = fields.String(allow_none=True)
    byte_size = fields.Integer(allow_none=True)
    uploaded = fields.Boolean()
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    captured_at = fields.Method("_captured", allow_none=True)
    exif_captured_at = fields.DateTime(allow_none=True)
    exif_latitude = fields.Float(allow_none=True)
    exif_longitude = fields.Float(allow_none=True)
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    signer_name = fields.String(allow_none=True)
    signer_role = fields.String(allow_none=True)
    signed_at = fields.Method("_signed", allow_none=True)
    signature_stale = fields.Boolean()
    thumb_url = fields.Method("_thumb", allow_none=True)
    preview_url = fields.Method("_preview", allow_none=True)
    original_url = fields.Method("_original", allow_none=True)

    def _captured(self, obj):
        return _iso_ms(obj.captured_at)

    def _signed(self, obj):
        return _iso_ms(obj.signed_at)

    def _thumb(self, obj):
        return _file_url(obj, "thumb") if obj.uploaded else None

    def _preview(self, obj):
        return _file_url(obj, "preview") if obj.uploaded else None

    def _original(self, obj):
        return _file_url(obj, "original") if obj.uploaded else None


class ItemOut(Out):
    """One checklist item with its answer and evidence."""

    section = fields.String()
    section_title = fields.Dict(allow_none=True)
    key = fields.String()
    label = fields.Dict(allow_none=True)
    type = fields.String()
    critical = fields.Boolean()
    required = fields.Boolean()
    answer = fields.Raw(allow_none=True)
    note = fields.String(allow_none=True)
    failed = fields.Boolean()
    item_score = fields.Float(allow_none=True)
    response_id = fields.String(allow_none=True)
    evidence = fields.List(fields.Nested(AttachmentOut))


class ConflictBrief(Out):
    """A conflict on this inspection."""

    id = fields.String()
    kind = fields.String()
    table = fields.String(attribute="table_name")
    record_id = fields.String()
    column = fields.String(allow_none=True)
    server_value = fields.Raw(allow_none=True)
    device_value = fields.Raw(allow_none=True)
    detail = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    resolution = fields.String(allow_none=True)


class AuditOut(Out):
    """An audit trail entry."""

    at = fields.DateTime()
    actor_id = fields.String(allow_none=True)
    device_id = fields.String(allow_none=True)
    entity = fields.String()
    entity_id = fields.String()
    action = fields.String()
    changes = fields.Dict()


class ActionBrief(Out):
    """A corrective action of this inspection."""

    id = fields.String()
    title = fields.String()
    priority = fields.String()
    status = fields.String()
    due_at = fields.Method("_due", allow_none=True)
    response_id = fields.String(allow_none=True)

    def _due(self, obj):
        return _iso_ms(obj.due_at)


class TemplateBrief(Out):
    """The version the inspection was started on."""

    id = fields.String()
    template_key = fields.String()
    version = fields.Integer()
    title_zh = fields.String()
    title_en = fields.String()
    pass_threshold = fields.Float()


class SiteBrief(Out):
    """Where."""

    id = fields.String()
    name = fields.String()
    code = fields.String()
    region_id = fields.String()
    timezone = fields.String()


class UserBriefOut(Out):
    """Who."""

    id = fields.String()
    name = fields.String()
    email = fields.String()


class InspectionDetailOut(Out):
    """Everything a reviewer needs on one page."""

    inspection = fields.Nested(InspectionOut)
    site = fields.Nested(SiteBrief, allow_none=True)
    inspector = fields.Nested(UserBriefOut, allow_none=True)
    template = fields.Nested(TemplateBrief, allow_none=True)
    items = fields.List(fields.Nested(ItemOut))
    signatures = fields.List(fields.Nested(AttachmentOut))
    missing_evidence = fields.List(fields.Dict())
    conflicts = fields.List(fields.Nested(ConflictBrief))
    actions = fields.List(fields.Nested(ActionBrief))
    audit = fields.List(fields.Nested(AuditOut))


class ReturnIn(Strict):
    """Return for rework: say what to fix."""

    comment = fields.String(required=True, validate=validate.Length(min=1, max=4000))


class ApproveIn(Strict):
    """Approve, optionally with a comment."""

    comment = fields.String(validate=validate.Length(max=4000), allow_none=True)
