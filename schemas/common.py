"""Base schema and shared fields: strict inputs, read-only server fields."""

from __future__ import annotations

import datetime as dt
import re
from typing import ClassVar

import marshmallow as ma
from marshmallow import fields, validate

from store.types import MAX_EPOCH_MS, epoch_ms

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Pattern(validate.Regexp):
    """A regular expression the whole value must match. The pattern keeps ECMA-262 syntax
    for the OpenAPI document, but Python's `$` also matches before a final newline, so the
    check is a full match ("abc\\n" is not an id)."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


class Strict(ma.Schema):
    """Input schema: unknown fields are an error, not silently dropped."""

    class Meta:
        unknown = ma.RAISE


class Out(ma.Schema):
    """Output schema."""


def Id(**kwargs) -> fields.String:
    """A record id as the wire carries it."""
    return fields.String(validate=Pattern(ID_PATTERN, error="Not a valid id."), **kwargs)


def Text(max_len: int, **kwargs) -> fields.String:
    """A bounded string."""
    return fields.String(validate=validate.Length(max=max_len), **kwargs)


class Instant(fields.AwareDateTime):
    """An ISO 8601 time with an offset, between 1970-01-01 and 9999-12-31 UTC."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "out_of_range": "Use a time between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z.",
        "invalid": "Use an ISO 8601 time with its offset, such as 2026-11-01T00:00:00+08:00 "
        "(in a query string, write the + as %2B) or 2026-10-31T16:00:00Z.",
        # A plain date or local time names a different instant at every site.
        "invalid_awareness": "Add the offset from UTC (+08:00, or Z for UTC) to this time, "
        "such as 2026-11-01T00:00:00+08:00 (in a query string, write the + as %2B): a bare "
        "date or time is another instant in every time zone.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        # Times are stored and compared as epoch milliseconds in that range; outside it the
        # UTC conversion overflows (year 0 or 10000) and the request would end in a 500.
        if not 0 <= epoch_ms(moment) <= MAX_EPOCH_MS:
            raise self.make_error("out_of_range")
        return moment


class PeriodBound(Instant):
    """A report period's bound: a date (the calendar day at each site, in its time zone) or
    an ISO 8601 time with its offset."""

    # The last day has a day after it (where a period that includes it ends).
    FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(9999, 12, 30)
    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Use a date such as 2026-11-01 (that day at each site, in its time zone) "
        "or a time with its offset, such as 2026-11-01T00:00:00+08:00 (in a query string, "
        "write the + as %2B).",
        "invalid_awareness": "Add the offset from UTC (+08:00, or Z for UTC) to this time, "
        "such as 2026-11-01T00:00:00+08:00 (in a query string, write the + as %2B), or send "
        "the date alone (2026-11-01) for that day at each site.",
        "out_of_range_day": "Use a date between 1970-01-01 and 9999-12-30.",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and _DATE.fullmatch(value):
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                raise self.make_error("invalid") from None
            if not self.FIRST_DAY <= day <= self.LAST_DAY:
                raise self.make_error("out_of_range_day")
            return day
        return super()._deserialize(value, attr, data, **kwargs)


class Bilingual(Strict):
    """A label in Chinese and English."""

    zh = fields.String(required=True, validate=validate.Length(min=1, max=500))
    en = fields.String(required=True, validate=validate.Length(min=1, max=500))


class CommaList(fields.String):
    """A comma-separated list in a query string: "region,week" -> ["region", "week"]."""

    def __init__(self, choices: tuple[str, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.choices = choices

    def _deserialize(self, value, attr, data, **kwargs) -> list[str]:
        raw = super()._deserialize(value, attr, data, **kwargs)
        items = [part.strip() for part in raw.split(",") if part.strip()]
        bad = [i for i in items if i not in self.choices]
        if bad:
            raise ma.ValidationError(f"Unknown {', '.join(bad)}; use {', '.join(self.choices)}.")
        if len(set(items)) != len(items):
            raise ma.ValidationError("Each grouping may appear once.")
        return items
