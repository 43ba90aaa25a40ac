"""Template drafts and published versions."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.common import Bilingual, Out, Pattern, Strict

CATEGORIES = (
    "hygiene",
    "room_status",
    "food_safety",
    "grooming",
    "5s",
    "service",
    "actions",
    "safety",
    "other",
)
KEY = Pattern(r"^[a-z0-9_]{2,64}$", error="Use 2-64 lowercase letters, digits or '_'.")


class Title(Bilingual):
    """A template's title: stored in 200-character columns, so no longer than that."""

    zh = fields.String(required=True, validate=validate.Length(min=1, max=200))
    en = fields.String(required=True, validate=validate.Length(min=1, max=200))


class TemplateIn(Strict):
    """A new template draft."""

    template_key = fields.String(required=True, validate=KEY)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    title = fields.Nested(Title, required=True)
    description = fields.Nested(Bilingual, allow_none=True)
    pass_threshold = fields.Float(
        load_default=80.0, validate=validate.Range(0, 100), allow_nan=False
    )
    body = fields.Dict(required=True)


class TemplatePatch(Strict):
    """Changes to a draft."""

    category = fields.String(validate=validate.OneOf(CATEGORIES))
    title = fields.Nested(Title)
    description = fields.Nested(Bilingual, allow_none=True)
    pass_threshold = fields.Float(validate=validate.Range(0, 100), allow_nan=False)
    body = fields.Dict()


class TemplateQuery(Strict):
    """List options."""

    include_drafts = fields.Boolean(load_default=False)


def _title(obj) -> dict:
    return {"zh": obj.title_zh, "en": obj.title_en}


def _description(obj) -> dict | None:
    if not (obj.description_zh or obj.description_en):
        return None
    return {"zh": obj.description_zh, "en": obj.description_en}


class VersionOut(Out):
    """A published, immutable template version."""

    id = fields.String()
    template_id = fields.String(attribute="draft_id")
    template_key = fields.String()
    version = fields.Integer()
    category = fields.String()
    title = fields.Function(_title)
    description = fields.Function(_description, allow_none=True)
    pass_threshold = fields.Float()
    body = fields.Dict()
    created_at = fields.DateTime()


class VersionBrief(Out):
    """A version without its body."""

    id = fields.String()
    version = fields.Integer()
    created_at = fields.DateTime()


class TemplateOut(Out):
    """A template: its draft and its latest published version number."""

    id = fields.String()
    template_key = fields.String()
    category = fields.String()
    title = fields.Function(_title)
    description = fields.Function(_description, allow_none=True)
    pass_threshold = fields.Float()
    latest_version = fields.Integer()
    body = fields.Dict()
    updated_at = fields.DateTime()
