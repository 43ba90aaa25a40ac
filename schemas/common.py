"""Base schema and shared fields: strict inputs, read-only server fields."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class Strict(ma.Schema):
    """Input schema: unknown fields are an error, not silently dropped."""

    class Meta:
        unknown = ma.RAISE


class Out(ma.Schema):
    """Output schema."""


def Id(**kwargs) -> fields.String:
    """A record id as the wire carries it."""
    return fields.String(validate=validate.Regexp(ID_PATTERN, error="Not a valid id."), **kwargs)


def Int(**kwargs) -> fields.Integer:
    """A strict integer: 1.5 and "1" are refused."""
    return fields.Integer(strict=True, **kwargs)


def Text(max_len: int, **kwargs) -> fields.String:
    """A bounded string."""
    return fields.String(validate=validate.Length(max=max_len), **kwargs)


class Bilingual(Strict):
    """A label in Chinese and English."""

    zh = fields.String(required=True, validate=validate.Length(min=1, max=500))
    en = fields.String(required=True, validate=validate.Length(min=1, max=500))


class DeletedOut(Out):
    """Acknowledges a deletion."""

    id = fields.String()
    deleted = fields.Boolean()
