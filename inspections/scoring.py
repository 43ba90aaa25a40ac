"""Scoring as domain.md defines it; the server computes it and never accepts it from a device.

- Each scorable answered item gets a fraction: yes_no yes=1 no=0; score_1_5 (n-1)/4;
  grade 优1 良.75 中.5 差.25 很差0; number/count 1 inside the limits else 0; choice its score.
- `na` answers and hidden items (visible_if) leave both score and max.
- Unanswered applicable scorable items count 0 of their weight. A text of whitespace alone
  answers nothing (a required one stays unanswered).
- score_percent = 100 x score / max_score, rounded half up to one decimal. Sums are floats
  cleaned of binary noise (to 9 decimals) before they are rounded or stored, so weights of 0.1
  add up to the decimals they are written as: 81.25 % is 81.3, not 81.2 (1.3/1.6000000000000003
  is 81.24999...). Floats, not exact fractions: scoring runs for every inspection of a push, and
  Fraction arithmetic made a 3000-answer push about 30 ms slower. When max_score is 0
  (everything na, hidden or unscored) there is no percentage and no grade; passed then depends
  only on critical failures, since nothing scorable was wrong.
- A percentage below every grade band (only possible for bands published without a 0 floor,
  which validation now refuses) gets no grade rather than the last band's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from inspections.template_rules import GRADES, NA, iter_items

GRADE_FRACTIONS = {"优": 1.0, "良": 0.75, "中": 0.5, "差": 0.25, "很差": 0.0}
DEFAULT_BANDS = (
    {"grade": "优", "min": 90},
    {"grade": "良", "min": 80},
    {"grade": "中", "min": 70},
    {"grade": "差", "min": 60},
    {"grade": "很差", "min": 0},
)
SCORABLE = ("yes_no", "score_1_5", "grade", "number", "count", "choice")
EVIDENCE_TYPES = ("photo", "signature")

__all__ = [
    "ItemResult",
    "ScoreResult",
    "ScoringPlan",
    "check_answer",
    "iter_items",
    "plan_of",
    "score",
]


@dataclass(slots=True)
class ItemResult:
    """One item's outcome."""

    key: str
    applicable: bool
    answered: bool
    fraction: float | None = None
    item_score: float | None = None
    weight: float = 0.0
    failed: bool = False


@dataclass
class SectionResult:
    """A section's subtotal."""

    score: float = 0.0
    max_score: float = 0.0
    percent: float | None = None


@dataclass
class ScoreResult:
    """The whole inspection's outcome."""

    score: float
    max_score: float
    score_percent: float | None
    grade: str | None
    passed: bool
    critical_failed: bool
    failed_items: list[str] = field(default_factory=list)
    unanswered_required: list[str] = field(default_factory=list)
    items: dict[str, ItemResult] = field(default_factory=dict)
    sections: dict[str, SectionResult] = field(default_factory=dict)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_answer(item: dict[str, Any], value: Any) -> str | None:
    """None when `value` is a valid answer for the item, else what is wrong with it."""
    kind = item["type"]
    if value is None:
        return None
    if value == NA and kind in SCORABLE:
        return None
    if kind == "yes_no":
        return None if value in ("yes", "no") else "answer yes, no or na"
    if kind == "score_1_5":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5
        return None if ok else "answer a whole number from 1 to 5, or na"
    if kind == "grade":
        return None if value in GRADES else f"answer one of {' '.join(GRADES)}, or na"
    if kind == "number":
        return None if _number(value) else "answer a number, or na"
    if kind == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else "answer a whole number >= 0, or na"
    if kind == "choice":
        values = [o["value"] for o in item.get("options", [])]
        return None if value in values else f"answer one of {', '.join(values)}, or na"
    if kind == "text":
        return None if isinstance(value, str) else "answer text"
    if kind == "date_time":
        ok = _number(value) and value >= 0
        return None if ok else "answer a time in epoch milliseconds"
    return "photo and signature items are answered with attachments, not a value"


def _fraction(item: dict[str, Any], value: Any) -> tuple[float, bool]:
    """(fraction, failed) of a valid, applicable, non-na answer to a scorable item."""
    kind = item["type"]
    if kind == "yes_no":
        return (1.0, False) if value == "yes" else (0.0, True)
    if kind == "score_1_5":
        return (value - 1) / 4, value <= 2
    if kind == "grade":
        return GRADE_FRACTIONS[value], value in ("差", "很差")
    if kind == "number":
        lo, hi = item.get("min"), item.get("max")
        inside = (lo is None or value >= lo) and (hi is None or value <= hi)
        return (1.0, False) if inside else (0.0, True)
    if kind == "count":
        return (1.0, False) if value == item.get("expected") else (0.0, True)
    option = next(o for o in item["options"] if o["value"] == value)
    return float(option["score"]), bool(option.get("fail", False))


def _visible(item: dict[str, Any], answers: dict[str, Any], hidden: set[str]) -> bool:
    cond = item.get("visible_if")
    if not cond:
        return True
    if cond["item"] in hidden:
        return False  # an item controlled by a hidden item is hidden too
    answer = answers.get(cond["item"])
    if "equals" in cond:
        return answer == cond["equals"]
    return answer in cond.get("in", [])


# Decimals kept when a float sum is cleaned of binary noise: far below any weight's precision,
# far above a double's noise for sums of up to millions.
_CLEAN = 9


def _round1(value: float) -> float:
    """Round half up to one decimal, after cleaning the float's binary noise."""
    clean = Decimal(repr(round(value, _CLEAN)))
    return float(clean.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def grade_for(percent: float | None, bands: Any) -> str | None:
    """The grade band a percentage falls in; None when it reaches no band (a template
    published before bands needed a 0 floor), rather than the last band's grade."""
    if percent is None:
        return None
    for band in bands or DEFAULT_BANDS:
        if percent >= band["min"]:
            return band["grade"]
    return None


@dataclass(frozen=True, slots=True)
class ScoringPlan:
    """A template body read once for scoring: per section, each item's fields as tuples
    (key, type, visible_if, required, weight, critical, item). A push scores many runs of one
    checklist; reading the item dicts once per version, not once per run, is what this saves."""

    sections: tuple[tuple[str, tuple[tuple, ...]], ...]
    grade_bands: Any
    # Whether any item can ask for a photo or signature (evidence.missing_evidence).
    asks_evidence: bool


def plan_of(body: dict[str, Any]) -> ScoringPlan:
    """The scoring plan of a template body (see ScoringPlan)."""
    sections = []
    for section in body.get("sections") or []:
        items = section.get("items")
        if not items:
            continue
        sections.append(
            (
                section["key"],
                tuple(
                    (
                        item["key"],
                        item["type"],
                        item.get("visible_if") or None,
                        item.get("required", True),
                        float(item.get("weight", 1)) if item["type"] in SCORABLE else 0.0,
                        bool(item.get("critical")),
                        item,
                    )
                    for item in items
                ),
            )
        )
    asks = any(
        item["type"] in EVIDENCE_TYPES or item.get("photo") is not None
        for _key, items in sections
        for *_fields, item in items
    )
    return ScoringPlan(tuple(sections), body.get("grade_bands"), asks)


_SCORABLE = frozenset(SCORABLE)
_YES_NO = frozenset({"yes", "no", NA})


def score(
    body: dict[str, Any],
    pass_threshold: float | None,
    answers: dict[str, Any],
    evidence: dict[str, int] | None = None,
    plan: ScoringPlan | None = None,
) -> ScoreResult:
    """Score answers (item_key -> decoded value; missing = unanswered) against a template
    (its body, or the plan already made of it)."""
    plan = plan or plan_of(body)
    evidence = evidence or {}
    threshold = 80.0 if pass_threshold is None else float(pass_threshold)
    hidden: set[str] = set()
    results: dict[str, ItemResult] = {}
    sections: dict[str, SectionResult] = {}
    total = maximum = 0.0
    critical_failed = False
    failed: list[str] = []
    unanswered: list[str] = []
    for section_key, items in plan.sections:
        sec = sections.setdefault(section_key, SectionResult())
        for key, kind, cond, required, weight, critical, item in items:
            if cond is not None and not _visible(item, answers, hidden):
                hidden.add(key)
                results[key] = ItemResult(key, applicable=False, answered=False)
                continue
            value = answers.get(key)
            if kind == "yes_no":  # check_answer and _fraction inlined for the commonest kind
                # A dict lookup needs a hashable value; validation kept answers JSON scalars.
                answered = type(value) is str and value in _YES_NO
            elif kind in EVIDENCE_TYPES:
                answered = evidence.get(key, 0) > 0
            elif kind == "text":
                # Valid but blank (a cleared field, an IME's full-width space) says nothing.
                answered = type(value) is str and value.strip() != ""
            else:
                answered = value is not None and check_answer(item, value) is None
            if not answered and required:
                unanswered.append(key)
            if kind not in _SCORABLE:
                results[key] = ItemResult(key, applicable=True, answered=answered)
                continue
            if answered and value == NA:
                results[key] = ItemResult(key, applicable=False, answered=True)
                continue
            if answered:
                if kind == "yes_no":
                    fraction, failed_item = (1.0, False) if value == "yes" else (0.0, True)
                else:
                    fraction, failed_item = _fraction(item, value)
                item_score = weight * fraction
            else:
                fraction, failed_item, item_score = None, False, 0.0
            results[key] = ItemResult(
                key, True, answered, fraction, item_score, weight, failed_item
            )
            total += item_score
            maximum += weight
            sec.score += item_score
            sec.max_score += weight
            if failed_item:
                failed.append(key)
                critical_failed = critical_failed or critical
    total, maximum = round(total, _CLEAN), round(maximum, _CLEAN)
    for sec in sections.values():
        sec.score, sec.max_score = round(sec.score, _CLEAN), round(sec.max_score, _CLEAN)
        sec.percent = _round1(100 * sec.score / sec.max_score) if sec.max_score else None
    percent = _round1(100 * total / maximum) if maximum else None
    passed = not critical_failed and (percent is None or percent >= threshold)
    return ScoreResult(
        score=total,
        max_score=maximum,
        score_percent=percent,
        grade=grade_for(percent, plan.grade_bands),
        passed=passed,
        critical_failed=critical_failed,
        failed_items=failed,
        unanswered_required=unanswered,
        items=results,
        sections=sections,
    )
