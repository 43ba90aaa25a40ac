"""Schedules: recurrences (python-dateutil rrule) in a site's own time zone, and occurrence
windows and statuses.

A recurrence is a dict:
  {"freq": "daily", "times": ["08:00", "14:00", "18:00"]}
  {"freq": "weekly", "weekdays": ["MO", "TH"], "times": ["09:00"]}
  {"freq": "monthly", "monthday": 1, "times": ["10:00"]}
  {"freq": "quarterly", "monthday": 1, "times": ["10:00"]}   # Jan, Apr, Jul, Oct
Times are local wall-clock times, so 08:00 stays 08:00 across daylight-saving changes.
On the two days a year when the wall clock jumps, a time is read with fold=0 (zoneinfo's
default, made explicit below): a time that happens twice (01:30 when clocks fall back) is due
at its first instant, and a time that does not exist (02:30 when clocks spring forward) is
read with the offset from before the jump, so it falls that far after (03:30). Two times can
then name one instant (02:00 and 03:00 on spring-forward day): that instant is one slot.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

from dateutil import rrule

WEEKDAYS = {
    "MO": rrule.MO,
    "TU": rrule.TU,
    "WE": rrule.WE,
    "TH": rrule.TH,
    "FR": rrule.FR,
    "SA": rrule.SA,
    "SU": rrule.SU,
}
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)\Z")


class RecurrenceInvalid(Exception):
    """The recurrence cannot be used; `errors` names the fields."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {v[0]}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Slot:
    """One occurrence: opens at window_start, is due at due_at, missed at miss_at (UTC)."""

    window_start: dt.datetime
    due_at: dt.datetime
    miss_at: dt.datetime


_FREQS = ("daily", "weekly", "monthly", "quarterly")


def parse(recurrence: dict, timezone: str) -> rrule.rrule | rrule.rruleset:
    """Validate a recurrence and build its rule (dtstart is supplied per expansion)."""
    errors: dict[str, list[str]] = {}
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = ["not a known IANA time zone"]
    freq = recurrence.get("freq")
    if freq not in _FREQS:
        errors["recurrence.freq"] = ["one of daily, weekly, monthly, quarterly"]
    times = recurrence.get("times")
    if (
        not isinstance(times, list)
        or not times
        or not all(isinstance(t, str) and _TIME.match(t) for t in times)
    ):
        errors["recurrence.times"] = ["a non-empty list of HH:MM local times"]
    if freq == "weekly":
        days = recurrence.get("weekdays")
        if (
            not isinstance(days, list)
            or not days
            or not all(isinstance(d, str) and d in WEEKDAYS for d in days)
        ):
            errors["recurrence.weekdays"] = ["a non-empty list of MO TU WE TH FR SA SU"]
    if freq in ("monthly", "quarterly"):
        day = recurrence.get("monthday", 1)
        if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 28:
            errors["recurrence.monthday"] = ["a day of the month from 1 to 28"]
    unknown = set(recurrence) - {"freq", "times", "weekdays", "monthday"}
    if unknown:
        errors["recurrence"] = [f"unknown field(s) {', '.join(sorted(unknown))}"]
    # A field another frequency reads would be silently ignored: "daily" with weekdays makes
    # every day, not the days listed. Say so instead.
    for name, meant in (("weekdays", ("weekly",)), ("monthday", ("monthly", "quarterly"))):
        if name in recurrence and freq in _FREQS and freq not in meant:
            errors[f"recurrence.{name}"] = [f"only for {' or '.join(meant)} schedules"]
    if errors:
        raise RecurrenceInvalid(errors)
    return recurrence  # the validated dict; rules are built per expansion window


def _rule(recurrence: dict, start: dt.datetime) -> rrule.rrule:
    hours = sorted({int(t[:2]) for t in recurrence["times"]})
    minutes = sorted({int(t[3:]) for t in recurrence["times"]})
    kwargs = {"dtstart": start, "byhour": hours, "byminute": minutes, "bysecond": 0}
    freq = recurrence["freq"]
    if freq == "daily":
        return rrule.rrule(rrule.DAILY, **kwargs)
    if freq == "weekly":
        days = [WEEKDAYS[d] for d in recurrence["weekdays"]]
        return rrule.rrule(rrule.WEEKLY, byweekday=days, **kwargs)
    day = recurrence.get("monthday", 1)
    if freq == "monthly":
        return rrule.rrule(rrule.MONTHLY, bymonthday=day, **kwargs)
    return rrule.rrule(rrule.MONTHLY, bymonth=(1, 4, 7, 10), bymonthday=day, **kwargs)


def slots(
    recurrence: dict,
    timezone: str,
    start: dt.datetime,
    end: dt.datetime,
    window: dt.timedelta,
    grace: dt.timedelta,
) -> list[Slot]:
    """Occurrences due in [start, end), computed on the local wall clock, returned in UTC."""
    parse(recurrence, timezone)
    tz = zoneinfo.ZoneInfo(timezone)
    wanted = set(recurrence["times"])
    # Expand on naive local time (so DST never shifts 08:00), then attach the zone.
    local_start = start.astimezone(tz).replace(tzinfo=None) - dt.timedelta(days=1)
    local_end = end.astimezone(tz).replace(tzinfo=None) + dt.timedelta(days=1)
    out: dict[dt.datetime, Slot] = {}
    for local in _rule(recurrence, local_start).between(local_start, local_end, inc=True):
        if local.strftime("%H:%M") not in wanted:
            continue  # byhour x byminute makes combinations the times list did not ask for
        due = local.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)  # see the module docstring
        # Keyed by instant: two local times meeting in a spring-forward gap are one slot, and
        # a second slot would break the one-occurrence-per-assignee-and-instant rule.
        if start <= due < end and due not in out:
            out[due] = Slot(window_start=due - window, due_at=due, miss_at=due + grace)
    return list(out.values())


def status(
    slot_start: dt.datetime, due_at: dt.datetime, miss_at: dt.datetime, done: bool, now: dt.datetime
) -> str:
    """upcoming before the window, due in it, overdue after due until missed, then missed."""
    if done:
        return "done"
    if now < slot_start:
        return "upcoming"
    if now <= due_at:
        return "due"
    if now < miss_at:
        return "overdue"
    return "missed"
