"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, TypeDecorator
from sqlalchemy.engine import Dialect

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Device times are epoch ms in 1970-01-01 .. 9999-12-31 UTC (sync/validate.py's bound too).
MAX_EPOCH_MS = 253_402_300_799_999
_MIN_MS = (dt.datetime.min.replace(tzinfo=dt.UTC) - EPOCH) // dt.timedelta(milliseconds=1)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime; SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:
            # Year 1 with a positive offset (or 9999 with a negative one) has no UTC datetime;
            # the nearest representable instant keeps a comparison right instead of a 500.
            edge = dt.datetime.min if value.year == 1 else dt.datetime.max
            return edge.replace(tzinfo=dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def epoch_ms(value: dt.datetime) -> int:
    """An aware datetime as epoch milliseconds (exact; never overflows)."""
    return (value - EPOCH) // dt.timedelta(milliseconds=1)


def from_epoch_ms(ms: int | float) -> dt.datetime:
    """Epoch milliseconds as an aware UTC datetime, clamped to what datetime can hold."""
    # A value stored before the range checks existed must not turn every read into a 500.
    ms = min(max(int(ms), _MIN_MS), MAX_EPOCH_MS)
    return EPOCH + dt.timedelta(milliseconds=ms)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    """A server-generated record id (devices generate their own)."""
    return uuid.uuid4().hex
