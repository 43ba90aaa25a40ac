"""Conflict records and their resolution."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import Id, Out, Strict
from store.enums import CONFLICT_KINDS


class ConflictQuery(Strict):
    """Filters for the conflict list."""

    site_id = Id()
    inspection_id = Id()
    record_id = Id()
    kind = fields.String(validate=validate.OneOf(CONFLICT_KINDS))
    resolved = fields.Boolean(allow_none=True, load_default=False)


class ConflictOut(Out):
    """A refused or overwritten device change, with both values."""

    id = fields.String()
    kind = fields.String()
    table = fields.String(attribute="table_name")
    record_id = fields.String()
    inspection_id = fields.String(allow_none=True)
    site_id = fields.String(allow_none=True)
    column = fields.String(allow_none=True)
    server_value = fields.Raw(allow_none=True)
    device_value = fields.Raw(allow_none=True)
    current_value = fields.Raw(allow_none=True)
    detail = fields.String(allow_none=True)
    user_id = fields.String(allow_none=True)
    device_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)
    resolved_by = fields.String(allow_none=True)
    resolution = fields.String(allow_none=True)


class ResolveIn(Strict):
    """How to settle a conflict."""

    resolution = fields.String(
        required=True, validate=validate.OneOf(("keep_server", "take_device", "edit"))
    )
    value = fields.Raw(allow_none=True, metadata={"description": "The edited value (for edit)"})
