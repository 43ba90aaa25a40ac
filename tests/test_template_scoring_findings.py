"""Review D findings 3, 11, 12: visible_if that can never be true, exact percent rounding,
grade bands without a 0 floor."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from inspections.scoring import DEFAULT_BANDS, check_answer, grade_for, score
from inspections.template_rules import TemplateInvalid, validate_template

LIBRARY = Path(__file__).resolve().parent.parent / "library" / "templates"


def it(key, kind="yes_no", **kw):
    return {"key": key, "type": kind, "label": {"zh": key, "en": key}, **kw}


def tpl(*items, bands=None):
    body = {"sections": [{"key": "s", "title": {"zh": "节", "en": "S"}, "items": list(items)}]}
    if bands is not None:
        body["grade_bands"] = bands
    return body


def doc(*items, bands=None):
    return {
        "template_key": "t_one",
        "title": {"zh": "模板", "en": "Template"},
        "body": tpl(*items, bands=bands),
    }


CHOICE = it(
    "a",
    "choice",
    options=[
        {"value": "ok", "label": {"zh": "好", "en": "ok"}, "score": 1},
        {"value": "bad", "label": {"zh": "差", "en": "bad"}, "score": 0, "fail": True},
    ],
)


# --- finding 11: percent rounded half-up from the exact ratio ----------------------------------


def test_percent_is_rounded_half_up_from_the_exact_ratio():
    # 16 items of weight 0.1, 13 yes, 3 no: 1.3 of 1.6 = exactly 81.25 % -> 81.3 (half up).
    items = [it(f"i{i}", weight=0.1) for i in range(16)]
    answers = {f"i{i}": ("yes" if i < 13 else "no") for i in range(16)}
    exact = Fraction(13, 16) * 100
    hand = float(
        Decimal(exact.numerator / exact.denominator).quantize(Decimal("0.1"), ROUND_HALF_UP)
    )
    assert hand == 81.3
    result = score(tpl(*items), 81.3, answers)
    assert result.score_percent == 81.3, result.score_percent
    assert result.passed  # exactly at the threshold passes
    assert result.score == 1.3 and result.max_score == 1.6, (result.score, result.max_score)
    assert result.sections["s"].percent == 81.3
    assert result.sections["s"].score == 1.3 and result.sections["s"].max_score == 1.6


def test_percent_rounding_with_choice_scores_and_fractional_weights():
    # weight 0.3 item, choice score 0.35 -> 0.105 of 0.3 ... plus two yes_no of weight 0.1:
    # (0.105 + 0.1) / 0.5 = 0.41 -> 41.0 exactly (float arithmetic gives 40.99999...).
    choice = it(
        "c",
        "choice",
        weight=0.3,
        options=[
            {"value": "x", "label": {"zh": "x", "en": "x"}, "score": 0.35},
            {"value": "y", "label": {"zh": "y", "en": "y"}, "score": 1},
        ],
    )
    body = tpl(choice, it("a", weight=0.1), it("b", weight=0.1))
    r = score(body, 41, {"c": "x", "a": "yes", "b": "no"})
    assert r.score_percent == 41.0
    assert r.passed


def test_hand_computed_mix_still_holds():
    body = tpl(
        it("a", weight=2),
        it("b", "score_1_5"),
        it("c", "grade"),
        it("d", "number", min=0, max=5),
        it("e", weight=5, visible_if={"item": "a", "equals": "no"}, critical=True),
        it("f", "count", expected=3, required=False),
        it("g", critical=True),
    )
    r = score(body, 80, {"a": "yes", "b": 4, "c": "良", "d": "na", "g": "yes"})
    assert r.score == pytest.approx(4.5)
    assert r.max_score == 6
    assert r.score_percent == 75.0
    assert r.grade == "中"
    assert not r.passed and not r.critical_failed


# --- finding 3: visible_if conditions that can never be true ---------------------------------


NEVER_TRUE = [
    pytest.param(it("a"), {"item": "a", "equals": "Yes"}, "'Yes'", id="yes_no-equals-Yes"),
    pytest.param(it("a", "score_1_5"), {"item": "a", "equals": "5"}, "'5'", id="score-string"),
    pytest.param(it("a", "score_1_5"), {"item": "a", "in": [4, 6]}, "6", id="score-out-of-range"),
    pytest.param(CHOICE, {"item": "a", "in": ["broken"]}, "'broken'", id="choice-not-an-option"),
    pytest.param(it("a", "grade"), {"item": "a", "equals": "A"}, "'A'", id="grade-unknown"),
    pytest.param(it("a", "photo"), {"item": "a", "equals": "yes"}, "photo", id="photo"),
    pytest.param(it("a", "signature"), {"item": "a", "in": ["yes"]}, "signature", id="signature"),
    pytest.param(it("a"), {"item": "a", "in": []}, "at least one", id="empty-in"),
]


@pytest.mark.parametrize("controller,cond,named", NEVER_TRUE)
def test_visible_if_that_can_never_be_true_is_refused(controller, cond, named):
    # A critical item behind such a condition is hidden for ever: never scored, never fails.
    dependent = it("b", critical=True, visible_if=cond)
    for value in (None, "yes", "no", "na", 5, "5", "ok", "bad", "Yes", "A"):
        if value is not None and check_answer(controller, value) is None:
            answers = {"a": value, "b": "no"}
            assert not score(tpl(controller, dependent), 80, answers).critical_failed
    with pytest.raises(TemplateInvalid) as info:
        validate_template(doc(controller, dependent))
    where = next(k for k in info.value.errors if "'b'" in k)
    message = " ".join(info.value.errors[where])
    assert "visible_if" in message and named in message, message
    assert "'a'" in message, message


@pytest.mark.parametrize(
    "controller,cond",
    [
        pytest.param(it("a"), {"item": "a", "equals": "no"}, id="yes_no-no"),
        pytest.param(it("a"), {"item": "a", "in": ["no", "na"]}, id="yes_no-na"),
        pytest.param(it("a", "score_1_5"), {"item": "a", "in": [1, 2]}, id="score-ints"),
        pytest.param(CHOICE, {"item": "a", "equals": "bad"}, id="choice-option"),
        pytest.param(it("a", "grade"), {"item": "a", "in": ["差", "很差"]}, id="grade"),
        pytest.param(it("a", "count", expected=3), {"item": "a", "in": [1, 2]}, id="count"),
        pytest.param(it("a", "number", min=0), {"item": "a", "equals": 2.5}, id="number"),
        pytest.param(it("a", "text"), {"item": "a", "equals": "x"}, id="text"),
    ],
)
def test_visible_if_that_can_be_true_is_accepted(controller, cond):
    validate_template(doc(controller, it("b", critical=True, visible_if=cond)))


def test_visible_if_on_a_broken_controller_reports_the_controller_not_a_crash():
    broken = it("a", "choice", options="nope")
    with pytest.raises(TemplateInvalid) as info:
        validate_template(doc(broken, it("b", visible_if={"item": "a", "equals": "x"})))
    assert any("'a'" in k for k in info.value.errors)


# --- finding 12: grade bands need a 0 floor ---------------------------------------------------


def test_bands_without_a_floor_do_not_grade_a_score_below_every_band():
    bands = [{"grade": "A", "min": 90}, {"grade": "B", "min": 80}]
    r = score(tpl(it("a"), bands=bands), 80, {"a": "no"})
    assert r.score_percent == 0.0
    assert r.grade is None, r.grade
    assert grade_for(79.9, bands) is None
    assert grade_for(80.0, bands) == "B"


def test_bands_without_a_floor_are_refused_at_publish():
    bands = [{"grade": "A", "min": 90}, {"grade": "B", "min": 80}]
    with pytest.raises(TemplateInvalid) as info:
        validate_template(doc(it("a"), bands=bands))
    messages = " ".join(m for v in info.value.errors.values() for m in v)
    assert "min" in messages and "0" in messages and "lowest" in messages, messages


def test_default_and_floored_bands_validate():
    validate_template(doc(it("a"), bands=[dict(b) for b in DEFAULT_BANDS]))
    validate_template(doc(it("a"), bands=[{"grade": "A", "min": 95}, {"grade": "B", "min": 0}]))
    assert grade_for(0.0, None) == "很差"


# --- the shipped library still validates ------------------------------------------------------


@pytest.mark.parametrize("path", sorted(LIBRARY.glob("*.json")), ids=lambda p: p.stem)
def test_library_templates_validate(path):
    validate_template(json.loads(path.read_text(encoding="utf-8")))
