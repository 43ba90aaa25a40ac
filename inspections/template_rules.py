"""Validation of a template document (docs/template-format.md); every message names its item."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
TEMPLATE_KEY_RE = re.compile(r"^[a-z0-9_]{2,64}\Z")
ITEM_TYPES = (
    "yes_no",
    "score_1_5",
    "grade",
    "number",
    "count",
    "choice",
    "text",
    "date_time",
    "photo",
    "signature",
)
# Scores are rounded as decimals; a weight near 1e308 overflows them to infinity on the first
# answer, and no real checklist weighs one item a thousand times another.
MAX_WEIGHT = 1000
GRADES = ("优", "良", "中", "差", "很差")
# The answer "not applicable", which every item type accepts.
NA = "na"
# The characters an inspection stores its grade in (a grade band's name; Inspection.grade).
GRADE_MAX = 8
PHOTO_RULES = ("always", "on_fail")
_COMMON_FIELDS = {
    "key",
    "label",
    "help",
    "type",
    "required",
    "weight",
    "critical",
    "photo",
    "visible_if",
    "source",
}
_TYPE_FIELDS = {"number": {"unit", "min", "max"}, "count": {"expected"}, "choice": {"options"}}


class TemplateInvalid(Exception):
    """The template breaks a rule; `errors` maps a location to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {v[0]}" for k, v in errors.items()))
        self.errors = errors


def iter_items(body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(section, item) pairs in template order."""
    for section in body.get("sections") or []:
        for item in section.get("items") or []:
            yield section, item


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bilingual(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(
        isinstance(value.get(lang), str) and value[lang].strip() for lang in ("zh", "en")
    ):
        return "needs non-empty 'zh' and 'en' text"
    return None


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, where: str, message: str) -> None:
        self.errors.setdefault(where, []).append(message)


def _condition_problem(cond: dict[str, Any], controller: Any) -> str | None:
    """Why a visible_if condition on `controller` (an earlier item) can never be true, if it
    cannot: the dependent item, perhaps critical, would be hidden for ever."""
    # Imported here: scoring imports this module. check_answer is the rule answers are held to,
    # so a condition is possible exactly when one of its values is an answer the item accepts.
    from inspections.scoring import check_answer

    name = cond["item"]
    kind = controller.get("type") if isinstance(controller, dict) else None
    if kind in ("photo", "signature"):
        return (
            f"visible_if refers to {name!r}, a {kind} item, which is answered with attachments "
            "and has no value to compare, so the condition could never be true"
        )
    values = [cond["equals"]] if "equals" in cond else cond["in"]
    if not values:
        return f"visible_if.in must list at least one possible answer of {name!r}"
    if kind not in ITEM_TYPES:
        return None  # the controlling item's own error says what is wrong with it
    for value in values:
        # JSON may write a whole number as 5.0; an answer of 5 still equals it.
        candidate = int(value) if isinstance(value, float) and value.is_integer() else value
        try:
            problem = check_answer(controller, candidate)
        except (AttributeError, KeyError, TypeError):
            return None  # a malformed controlling item, reported where it is
        if problem:
            return (
                f"visible_if value {value!r} can never be an answer of {name!r} "
                f"({problem}), so the condition could never be true"
            )
    return None


def _check_item(item: dict[str, Any], where: str, earlier: dict[str, Any], err: _Errors) -> None:
    kind = item.get("type")
    if kind not in ITEM_TYPES:
        err.add(where, f"unknown type {kind!r}; use one of {', '.join(ITEM_TYPES)}")
        return
    unknown = set(item) - _COMMON_FIELDS - _TYPE_FIELDS.get(kind, set())
    if unknown:
        err.add(where, f"unknown field(s) {', '.join(sorted(unknown))} for a {kind} item")
    problem = _bilingual(item.get("label"))
    if problem:
        err.add(where, f"label {problem}")
    weight = item.get("weight", 1)
    if not _is_number(weight) or weight < 0:
        err.add(where, "weight must be a number >= 0")
    elif weight > MAX_WEIGHT:
        err.add(where, f"weight must be at most {MAX_WEIGHT}")
    for flag in ("required", "critical"):
        if flag in item and not isinstance(item[flag], bool):
            err.add(where, f"{flag} must be true or false")
    if "photo" in item and item["photo"] not in PHOTO_RULES:
        err.add(where, "photo must be 'always' or 'on_fail'")
    cond = item.get("visible_if")
    if cond is not None:
        if (
            not isinstance(cond, dict)
            or not isinstance(cond.get("item"), str)
            or not (("equals" in cond) ^ ("in" in cond))
        ):
            err.add(where, "visible_if must be {item, equals} or {item, in: [...]}")
        elif cond["item"] not in earlier:
            err.add(where, f"visible_if refers to {cond['item']!r}, which is not an earlier item")
        elif "in" in cond and not isinstance(cond["in"], list):
            err.add(where, "visible_if.in must be a list")
        else:
            problem = _condition_problem(cond, earlier[cond["item"]])
            if problem:
                err.add(where, problem)
    if kind == "number":
        lo, hi = item.get("min"), item.get("max")
        if lo is None and hi is None:
            err.add(where, "a number item needs min or max (its pass limits)")
        for name, value in (("min", lo), ("max", hi)):
            if value is not None and not _is_number(value):
                err.add(where, f"{name} must be a number")
        if _is_number(lo) and _is_number(hi) and lo > hi:
            err.add(where, "min must not exceed max")
        if "unit" in item and not isinstance(item["unit"], str):
            err.add(where, "unit must be text")
    elif kind == "count":
        expected = item.get("expected")
        if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
            err.add(where, "a count item needs expected, a whole number >= 0")
    elif kind == "choice":
        _check_options(item.get("options"), where, err)


def _check_options(options: Any, where: str, err: _Errors) -> None:
    if not isinstance(options, list) or len(options) < 2:
        err.add(where, "a choice item needs at least 2 options")
        return
    values = set()
    for i, opt in enumerate(options):
        at = f"{where} option {i + 1}"
        if not isinstance(opt, dict):
            err.add(at, "must be an object")
            continue
        value = opt.get("value")
        if not isinstance(value, str) or not value:
            err.add(at, "value must be non-empty text")
        elif value == NA:
            # The answer "na" means not applicable for every item: an option by that name
            # would be scored as no answer at all, never as its own score or failure.
            err.add(at, f"value {NA!r} is reserved for 'not applicable'; name the option otherwise")
        elif value in values:
            err.add(at, f"duplicate value {value!r}")
        else:
            values.add(value)
        problem = _bilingual(opt.get("label"))
        if problem:
            err.add(at, f"label {problem}")
        if not _is_number(opt.get("score")) or not 0 <= opt["score"] <= 1:
            err.add(at, "score must be a number from 0 to 1")
        if not isinstance(opt.get("fail", False), bool):
            err.add(at, "fail must be true or false")


def _check_bands(bands: Any, err: _Errors) -> None:
    if not isinstance(bands, list) or not bands:
        err.add("body.grade_bands", "must be a non-empty list of {grade, min}")
        return
    last = math.inf
    for i, band in enumerate(bands):
        if (
            not isinstance(band, dict)
            or not isinstance(band.get("grade"), str)
            or not _is_number(band.get("min"))
        ):
            err.add(f"body.grade_bands[{i}]", "must be {grade: text, min: number}")
            continue
        if not 1 <= len(band["grade"].strip()) <= GRADE_MAX:
            # An inspection stores its grade in this many characters (优, 很差, A+, Good).
            err.add(f"body.grade_bands[{i}]", f"grade must be 1 to {GRADE_MAX} characters")
        if band["min"] >= last:
            err.add(f"body.grade_bands[{i}]", "mins must be in descending order")
        last = band["min"]
    lowest = bands[-1]
    if isinstance(lowest, dict) and _is_number(lowest.get("min")) and lowest["min"] != 0:
        err.add(
            f"body.grade_bands[{len(bands) - 1}]",
            "the lowest band's min must be 0, so that every score gets a grade",
        )


def validate_template(doc: dict[str, Any]) -> None:
    """Raise TemplateInvalid listing every problem with where it is."""
    err = _Errors()
    if not isinstance(doc.get("template_key"), str) or not TEMPLATE_KEY_RE.match(
        doc["template_key"]
    ):
        err.add("template_key", "use 2-64 lowercase letters, digits or '_'")
    problem = _bilingual(doc.get("title"))
    if problem:
        err.add("title", problem)
    threshold = doc.get("pass_threshold", 80)
    if not _is_number(threshold) or not 0 <= threshold <= 100:
        err.add("pass_threshold", "must be a number from 0 to 100")
    body = doc.get("body")
    if not isinstance(body, dict):
        err.add("body", "must be an object with sections")
        raise TemplateInvalid(err.errors)
    if "grade_bands" in body:
        _check_bands(body["grade_bands"], err)
    sections = body.get("sections")
    if not isinstance(sections, list) or not sections:
        err.add("body.sections", "needs at least one section")
        raise TemplateInvalid(err.errors)
    section_keys: set[str] = set()
    item_keys: set[str] = set()
    earlier_items: dict[str, Any] = {}
    for s_index, section in enumerate(sections):
        s_where = f"body.sections[{s_index}]"
        if not isinstance(section, dict):
            err.add(s_where, "must be an object")
            continue
        s_key = section.get("key")
        if not isinstance(s_key, str) or not KEY_RE.match(s_key):
            err.add(s_where, "key must be 1-64 letters, digits, '_', '-' or '.'")
        elif s_key in section_keys:
            err.add(s_where, f"duplicate section key {s_key!r}")
        else:
            section_keys.add(s_key)
        s_where = f"{s_where} (key {s_key!r})"
        problem = _bilingual(section.get("title"))
        if problem:
            err.add(s_where, f"title {problem}")
        items = section.get("items")
        if not isinstance(items, list) or not items:
            err.add(s_where, "needs at least one item")
            continue
        for i_index, item in enumerate(items):
            where = f"body.sections[{s_index}].items[{i_index}]"
            if not isinstance(item, dict):
                err.add(where, "must be an object")
                continue
            key = item.get("key")
            where = f"{where} (key {key!r})"
            if not isinstance(key, str) or not KEY_RE.match(key):
                err.add(where, "key must be 1-64 letters, digits, '_', '-' or '.'")
            elif key in item_keys:
                err.add(where, f"duplicate item key {key!r}: keys must be unique in a template")
            _check_item(item, where, earlier_items, err)
            if isinstance(key, str):
                item_keys.add(key)
                earlier_items.setdefault(key, item)
    if err.errors:
        raise TemplateInvalid(err.errors)
