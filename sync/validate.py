"""Structural validation of a push body, hand-rolled: marshmallow per field costs more than
the database write on a 3000-record push (see bench/), and the rules here are few and flat."""

from __future__ import annotations

import math
import re
from itertools import repeat
from operator import itemgetter
from typing import Any

from store.errors import DomainError, Invalid
from sync.tables import CLIENT_META, PUSHABLE, TABLES, Col, TableSpec

# \Z, not $: "$" also matches before a final newline.
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
# Ids, each followed by a newline (which no valid id holds): see _all_ids.
_IDS = re.compile(r"(?:[A-Za-z0-9_.-]{1,64}\n)*")
_MAX_ERRORS = 50
# The last millisecond of 9999-12-31 UTC: later times cannot become datetimes, which the
# REST API and the reports make of them.
_MS_MAX = 253_402_300_799_999
# Per pushable table: columns a created record must carry, and NOT NULL columns a device
# may not set to null or '' (the database would refuse them mid-write).
REQUIRED = {
    name: tuple(c for c, col in spec.columns.items() if col.required)
    for name, spec in PUSHABLE.items()
}
_NOT_NULL = {
    name: frozenset(c for c, col in spec.columns.items() if not col.nullable) & spec.writable
    for name, spec in PUSHABLE.items()
}


class PushMalformed(DomainError):
    """The push is not shaped like a WatermelonDB push."""

    status = 400
    reason = "malformed_push"


class PushTooLarge(DomainError):
    """Too many records in one push."""

    status = 413
    reason = "push_too_large"


def check_value(col: Col, value: Any) -> str | None:
    """None when the value fits the column, else why not."""
    if value is None:
        return None
    kind = col.kind
    if kind in ("str", "text", "id"):
        if not isinstance(value, str):
            return "must be a string"
        if kind == "id":
            return None if (value == "" or _ID.match(value)) else "is not a valid id"
        if col.max_len and len(value) > col.max_len:
            return f"is longer than {col.max_len} characters"
        if col.choices and value not in col.choices:
            return f"must be one of {', '.join(col.choices)}"
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if kind in ("int", "ms"):
        if isinstance(value, float) and not value.is_integer():
            return "must be a whole number"
        if kind == "ms" and not 0 <= value <= _MS_MAX:
            return "must be epoch milliseconds"
    if col.lo is not None and value < col.lo:
        return f"must be at least {col.lo}"
    if col.hi is not None and value > col.hi:
        return f"must be at most {col.hi}"
    return None


def _quick(col: Col) -> Any:
    """A cheap test that a value certainly fits the column: most values of a big push pass
    it, and only the rest pay check_value's full walk (which also words the refusal)."""
    kind, top = col.kind, col.max_len
    if kind == "id":
        return lambda v: type(v) is str and (v == "" or _is_id(v))
    if kind in ("str", "text") and col.choices:
        choices = frozenset(col.choices)
        return lambda v: type(v) is str and v in choices
    if kind in ("str", "text"):
        return (lambda v: type(v) is str and len(v) <= top) if top else (lambda v: type(v) is str)
    if kind == "bool":
        return lambda v: type(v) is bool
    if kind == "ms":
        return lambda v: type(v) is int and 0 <= v <= _MS_MAX
    return None  # numbers with bounds and the rest: check_value decides


def _all_ids(values: list[str]) -> bool:
    """Whether every one of these strings is a valid id: one regex over them all, joined by
    newlines, instead of one per id. No valid id holds a newline, and counting them tells
    an id that does from two ids."""
    if not values:
        return True
    joined = "\n".join(values) + "\n"
    return joined.count("\n") == len(values) and _IDS.fullmatch(joined) is not None


def _is_id(value: str) -> bool:
    """A valid record id (_ID), the common all-alphanumeric case without the regex."""
    if value.isascii() and value.isalnum():
        return len(value) <= 64
    return _ID.match(value) is not None


# Client bookkeeping that is fine as it comes (the id is checked before the columns).
_META_FITS = {
    "id": lambda v: True,
    "_status": lambda v: True,
    "server_rev": lambda v: True,
    "_changed": lambda v: type(v) is str,
    "base_rev": lambda v: type(v) is int or type(v) is float,
}
# Per pushable table: key -> quick test (absent for columns check_value always decides).
_QUICK = {
    name: {c: q for c, col in spec.columns.items() if (q := _quick(col)) is not None} | _META_FITS
    for name, spec in PUSHABLE.items()
}


def _blank(value: Any) -> bool:
    """True for null and '' (a WatermelonDB id column's null)."""
    return value is None or value == ""


def _check_not_null(
    spec: TableSpec, rec: dict[str, Any], rid: str, created: bool, errors: dict[str, list[str]]
) -> None:
    """Required columns of a created record, and NOT NULL columns an update would empty."""
    not_null = _NOT_NULL.get(spec.name)
    if not not_null:
        return
    if created:
        for name in REQUIRED[spec.name]:
            if _blank(rec.get(name)):
                errors.setdefault(f"{spec.name}.{rid}.{name}", ["is required"])
        # Columns the server fills when missing (sync/push.py create) may be left out.
        return
    # Only the columns the update applies: `_changed` when present, else all it carries
    # (sync/push.py _changed_columns).
    raw = rec.get("_changed")
    names = [c.strip() for c in raw.split(",")] if raw and isinstance(raw, str) else rec
    for name in names:
        if name in not_null and name in rec and _blank(rec[name]):
            errors.setdefault(f"{spec.name}.{rid}.{name}", ["may not be null or empty"])


def _check_record(
    spec: TableSpec, rec: Any, errors: dict[str, list[str]], created: bool = False
) -> str | None:
    """Validate one pushed record; returns its id when usable."""
    if not isinstance(rec, dict):
        errors[f"{spec.name}[?]"] = ["each record must be an object"]
        return None
    rid = rec.get("id")
    if not isinstance(rid, str) or not rid or not _is_id(rid):
        errors[f"{spec.name}[{str(rid)[:64]!r}].id"] = [
            "id must be 1-64 letters, digits, '_', '-' or '.'"
        ]
        return None
    columns = spec.columns
    quick = _QUICK.get(spec.name, {})
    for key, value in rec.items():
        fits = quick.get(key)
        if fits is not None and (value is None or fits(value)):
            continue
        col = columns.get(key)
        if col is None:
            if key in CLIENT_META:
                if key == "_changed" and not isinstance(value, str | type(None)):
                    errors[f"{spec.name}.{rid}._changed"] = ["must be a comma-separated string"]
                if (
                    key == "base_rev"
                    and value is not None
                    and (isinstance(value, bool) or not isinstance(value, int | float))
                ):
                    errors[f"{spec.name}.{rid}.base_rev"] = ["must be a number"]
                continue
            errors[f"{spec.name}.{rid}.{key}"] = ["unknown column"]
            continue
        problem = check_value(col, value)
        if problem:
            errors[f"{spec.name}.{rid}.{key}"] = [problem]
        if len(errors) >= _MAX_ERRORS:
            break
    _check_not_null(spec, rec, rid, created, errors)
    return rid


_NONE = type(None)
# The value types a column's values may share for _all_fit to judge them a distinct value at a
# time (mixed with booleans, numbers would merge in a set: True == 1).
_TEXT_TYPES = frozenset({str, _NONE})
_NUMBER_TYPES = frozenset({int, float, _NONE})
_BOOL_TYPES = frozenset({bool, _NONE})
# Per pushable table: every key a record may carry.
_KNOWN = {name: frozenset(spec.columns) | CLIENT_META for name, spec in PUSHABLE.items()}


def _column_fits(col: Col, values: list[Any]) -> bool:
    """Whether every value fits the column, judged once per distinct value by check_value."""
    types = set(map(type, values))
    if not (types <= _TEXT_TYPES or types <= _NUMBER_TYPES or types <= _BOOL_TYPES):
        return False
    distinct = set(values)
    distinct.discard(None)
    if col.kind == "id":
        # Check_value's test for ids, without a call per value: a push's ids are all distinct.
        distinct.discard("")
        return all(type(v) is str for v in distinct) and _all_ids(list(distinct))
    return all(check_value(col, v) is None for v in distinct)


def _all_fit(spec: TableSpec, records: list[Any]) -> bool:
    """Whether every created record certainly passes _check_record, judged a column at a time
    over the whole list (a big push's thousands of records cost a few set operations per
    column, not a call per value). False sends the list to the per-record walk, which words
    the refusals."""
    if not records or set(map(type, records)) != {dict}:
        return False
    present = set().union(*records)
    columns = spec.columns
    if not present <= _KNOWN.get(spec.name, frozenset()) or "id" not in present:
        return False
    for key in present:
        values = list(map(dict.get, records, repeat(key)))
        if key == "id":
            # Every record names an id, a valid and distinct one.
            if set(map(type, values)) != {str} or len(set(values)) != len(values):
                return False
            if not _all_ids(values):
                return False
        elif key == "_changed":
            if not set(map(type, values)) <= _TEXT_TYPES:
                return False
        elif key == "base_rev":
            if not set(map(type, values)) <= _NUMBER_TYPES:
                return False
        elif key in columns:
            if not _column_fits(columns[key], values):
                return False
            if key in REQUIRED[spec.name] and (None in values or "" in values):
                return False
    # A required column no record carries.
    return all(c in present for c in REQUIRED[spec.name])


def validate_push(body: Any, max_records: int) -> tuple[dict[str, dict[str, list]], int | None]:
    """Check a push body; returns (changes per table, last_pulled_at) or raises naming the
    offending table, id and column."""
    if not isinstance(body, dict) or not isinstance(body.get("changes"), dict):
        raise PushMalformed("The body must be an object with 'changes' and 'last_pulled_at'.")
    unknown = set(body) - {"changes", "last_pulled_at"}
    if unknown:
        raise PushMalformed(f"Unknown field(s) in the push body: {', '.join(sorted(unknown))}.")
    last = body.get("last_pulled_at")
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 0):
        raise PushMalformed("'last_pulled_at' must be the cursor of your last pull (a number).")
    errors: dict[str, list[str]] = {}
    out: dict[str, dict[str, list]] = {}
    total = 0
    for name, table_changes in body["changes"].items():
        spec = TABLES.get(name)
        if spec is None:
            errors[name] = [f"unknown table; tables are {', '.join(TABLES)}"]
            continue
        if not isinstance(table_changes, dict) or set(table_changes) - {
            "created",
            "updated",
            "deleted",
        }:
            errors[name] = ["must be an object with 'created', 'updated' and 'deleted' lists"]
            continue
        lists = {k: table_changes.get(k) or [] for k in ("created", "updated", "deleted")}
        if not all(isinstance(v, list) for v in lists.values()):
            errors[name] = ["'created', 'updated' and 'deleted' must be lists"]
            continue
        count = sum(len(v) for v in lists.values())
        total += count
        if count and name not in PUSHABLE:
            errors[name] = ["this table is read-only for devices"]
            continue
        if total > max_records:
            raise PushTooLarge(f"A push may carry at most {max_records} records; split it.")
        ids: list[str] = []
        for kind in ("created", "updated"):
            records = lists[kind]
            if kind == "created" and _all_fit(spec, records):
                ids.extend(map(itemgetter("id"), records))
                continue
            for rec in records:
                rid = _check_record(spec, rec, errors, created=kind == "created")
                if rid:
                    ids.append(rid)
        for rid in lists["deleted"]:
            if not isinstance(rid, str) or not _ID.match(rid):
                errors[f"{name}.deleted"] = [f"{str(rid)[:64]!r} is not a valid id"]
            else:
                ids.append(rid)
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            for rid in ids:
                if rid in seen:
                    errors[f"{name}.{rid}"] = ["the same id appears twice in this push"]
                seen.add(rid)
        out[name] = lists
        if len(errors) >= _MAX_ERRORS:
            break
    if errors:
        first_key, first_msgs = next(iter(errors.items()))
        raise Invalid(
            f"The push was refused, nothing applied: {first_key}: {first_msgs[0]}.",
            errors=errors,
            reason="invalid_push",
        )
    for rec in (
        *out.get("attachments", {}).get("created", ()),
        *out.get("attachments", {}).get("updated", ()),
    ):
        _fold_case(rec)
    return out, last


# Columns whose letters' case means nothing (hex digests, media types): stored in lower case,
# as the upload compares them and the blob store keys bytes. A device writing hex in upper
# case (common on Android) could otherwise never upload its photo.
_CASELESS = ("sha256", "signed_content_sha256", "mime")


def _fold_case(rec: dict[str, Any]) -> None:
    for col in _CASELESS:
        value = rec.get(col)
        if type(value) is str:
            rec[col] = value.lower()
