"""Scoring, table-driven, with the expected figures worked out by hand in each case."""

from __future__ import annotations

import pytest

from inspections.scoring import check_answer, plan_of, score


def tpl(*items, bands=None):
    body = {"sections": [{"key": "s", "title": {"zh": "节", "en": "S"}, "items": list(items)}]}
    if bands:
        body["grade_bands"] = bands
    return body


def it(key, kind, **kw):
    return {"key": key, "type": kind, "label": {"zh": key, "en": key}, **kw}


CHOICE = it(
    "c",
    "choice",
    options=[
        {"value": "good", "label": {"zh": "好", "en": "good"}, "score": 1, "fail": False},
        {"value": "meh", "label": {"zh": "中", "en": "meh"}, "score": 0.5, "fail": False},
        {"value": "bad", "label": {"zh": "差", "en": "bad"}, "score": 0.25, "fail": True},
    ],
)

# (case, body, answers, score, max, percent, passed, critical_failed, failed)
CASES = [
    ("yes_no yes", tpl(it("a", "yes_no")), {"a": "yes"}, 1, 1, 100.0, True, False, []),
    ("yes_no no fails", tpl(it("a", "yes_no")), {"a": "no"}, 0, 1, 0.0, False, False, ["a"]),
    # score_1_5: (n-1)/4 -> 4 gives .75, 2 gives .25 and fails (<= 2)
    ("score 4", tpl(it("a", "score_1_5")), {"a": 4}, 0.75, 1, 75.0, False, False, []),
    ("score 2 fails", tpl(it("a", "score_1_5")), {"a": 2}, 0.25, 1, 25.0, False, False, ["a"]),
    ("score 3 is not a fail", tpl(it("a", "score_1_5")), {"a": 3}, 0.5, 1, 50.0, False, False, []),
    # grade: 良 = .75; 差 = .25 fails
    ("grade 良", tpl(it("a", "grade")), {"a": "良"}, 0.75, 1, 75.0, False, False, []),
    ("grade 差 fails", tpl(it("a", "grade")), {"a": "差"}, 0.25, 1, 25.0, False, False, ["a"]),
    # number exactly on the limit is inside
    ("number on max", tpl(it("a", "number", max=5)), {"a": 5}, 1, 1, 100.0, True, False, []),
    (
        "number above max",
        tpl(it("a", "number", max=5)),
        {"a": 5.01},
        0,
        1,
        0.0,
        False,
        False,
        ["a"],
    ),
    (
        "number on min",
        tpl(it("a", "number", min=60, max=90)),
        {"a": 60},
        1,
        1,
        100.0,
        True,
        False,
        [],
    ),
    ("count matches", tpl(it("a", "count", expected=12)), {"a": 12}, 1, 1, 100.0, True, False, []),
    ("count short", tpl(it("a", "count", expected=12)), {"a": 11}, 0, 1, 0.0, False, False, ["a"]),
    ("choice meh", tpl(CHOICE), {"c": "meh"}, 0.5, 1, 50.0, False, False, []),
    ("choice flagged fail", tpl(CHOICE), {"c": "bad"}, 0.25, 1, 25.0, False, False, ["c"]),
    # weights: a (w3) yes, b (w1) no -> 3/4 = 75.0
    (
        "weights",
        tpl(it("a", "yes_no", weight=3), it("b", "yes_no")),
        {"a": "yes", "b": "no"},
        3,
        4,
        75.0,
        False,
        False,
        ["b"],
    ),
    # na leaves both score and max: b is na -> 1/1
    (
        "na leaves the max",
        tpl(it("a", "yes_no"), it("b", "yes_no")),
        {"a": "yes", "b": "na"},
        1,
        1,
        100.0,
        True,
        False,
        [],
    ),
    # all na: no percentage; passed because nothing failed
    (
        "all na",
        tpl(it("a", "yes_no"), it("b", "score_1_5")),
        {"a": "na", "b": "na"},
        0,
        0,
        None,
        True,
        False,
        [],
    ),
    # unanswered applicable item counts 0 of its weight: 1 of 2
    (
        "unanswered counts zero",
        tpl(it("a", "yes_no"), it("b", "yes_no")),
        {"a": "yes"},
        1,
        2,
        50.0,
        False,
        False,
        [],
    ),
    # zero weight items count for nothing but still fail
    (
        "zero weight",
        tpl(it("a", "yes_no"), it("z", "yes_no", weight=0)),
        {"a": "yes", "z": "no"},
        1,
        1,
        100.0,
        True,
        False,
        ["z"],
    ),
    # a critical item answered na is not failed
    (
        "critical na",
        tpl(it("a", "yes_no"), it("k", "yes_no", critical=True)),
        {"a": "yes", "k": "na"},
        1,
        1,
        100.0,
        True,
        False,
        [],
    ),
    # a critical failure fails the inspection whatever the percentage: 9/10 = 90.0
    (
        "critical fail",
        tpl(it("a", "yes_no", weight=9), it("k", "yes_no", critical=True)),
        {"a": "yes", "k": "no"},
        9,
        10,
        90.0,
        False,
        True,
        ["k"],
    ),
    # hidden by visible_if: b only when a == no; a is yes -> b hidden -> 1/1
    (
        "hidden item",
        tpl(it("a", "yes_no"), it("b", "yes_no", visible_if={"item": "a", "equals": "no"})),
        {"a": "yes", "b": "no"},
        1,
        1,
        100.0,
        True,
        False,
        [],
    ),
    # every item hidden: the controller is text (unscored), nothing scorable remains
    (
        "every item hidden",
        tpl(it("t", "text"), it("b", "yes_no", visible_if={"item": "t", "equals": "x"})),
        {"t": "y"},
        0,
        0,
        None,
        True,
        False,
        [],
    ),
    # chained: c depends on hidden b, so c is hidden too
    (
        "chained hidden",
        tpl(
            it("a", "yes_no"),
            it("b", "yes_no", visible_if={"item": "a", "equals": "no"}),
            it("c", "yes_no", visible_if={"item": "b", "in": ["no", "na"]}),
        ),
        {"a": "yes"},
        1,
        1,
        100.0,
        True,
        False,
        [],
    ),
    # text, date_time and photo are not scored
    (
        "unscored types",
        tpl(
            it("a", "yes_no"),
            it("t", "text"),
            it("d", "date_time"),
            it("p", "photo", required=False),
        ),
        {"a": "yes", "t": "ok", "d": 1},
        1,
        1,
        100.0,
        True,
        False,
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_scoring_table(case):
    _name, body, answers, s, mx, pct, passed, crit, failed = case
    r = score(body, 80, answers)
    assert (r.score, r.max_score, r.score_percent) == (s, mx, pct)
    assert r.passed is passed and r.critical_failed is crit and r.failed_items == failed


def test_threshold_and_rounding():
    # 2 of 3 = 66.666.. -> 66.7; with threshold 66 it passes, with 80 it does not
    body = tpl(it("a", "yes_no"), it("b", "yes_no"), it("c", "yes_no"))
    answers = {"a": "yes", "b": "yes", "c": "no"}
    assert score(body, 66, answers).score_percent == 66.7
    assert score(body, 66, answers).passed is True
    assert score(body, None, answers).passed is False  # default threshold 80


def test_grade_bands_default_and_custom():
    body = tpl(*(it(f"q{i}", "yes_no") for i in range(10)))
    nine = {f"q{i}": "yes" for i in range(9)} | {"q9": "no"}  # 90.0 -> 优 by default
    assert score(body, 80, nine).grade == "优"
    eight = nine | {"q8": "no"}  # 80.0 -> 良
    assert score(body, 80, eight).grade == "良"
    five = {f"q{i}": "yes" if i < 5 else "no" for i in range(10)}  # 50.0 -> 很差
    assert score(body, 80, five).grade == "很差"
    custom = tpl(
        *(it(f"q{i}", "yes_no") for i in range(10)),
        bands=[{"grade": "A", "min": 95}, {"grade": "B", "min": 0}],
    )
    assert score(custom, 80, nine).grade == "B"


def test_section_subtotals():
    body = {
        "sections": [
            {
                "key": "s1",
                "title": {"zh": "一", "en": "1"},
                "items": [it("a", "yes_no"), it("b", "yes_no")],
            },
            {"key": "s2", "title": {"zh": "二", "en": "2"}, "items": [it("c", "score_1_5")]},
        ]
    }
    r = score(body, 80, {"a": "yes", "b": "no", "c": 5})
    assert (r.sections["s1"].score, r.sections["s1"].max_score, r.sections["s1"].percent) == (
        1,
        2,
        50.0,
    )
    assert r.sections["s2"].percent == 100.0


def test_unanswered_required_and_evidence():
    body = tpl(
        it("a", "yes_no"), it("n", "text", required=False), it("p", "photo"), it("s", "signature")
    )
    r = score(body, 80, {})
    assert r.unanswered_required == ["a", "p", "s"]
    r = score(body, 80, {"a": "na"}, {"p": 1, "s": 2})
    assert r.unanswered_required == []


@pytest.mark.parametrize(
    "item,value,ok",
    [
        (it("a", "yes_no"), "maybe", False),
        (it("a", "yes_no"), "na", True),
        (it("a", "score_1_5"), 6, False),
        (it("a", "score_1_5"), 2.5, False),
        (it("a", "score_1_5"), True, False),
        (it("a", "grade"), "A+", False),
        (it("a", "number", max=5), "5", False),
        (it("a", "count", expected=1), -1, False),
        (CHOICE, "great", False),
        (CHOICE, "good", True),
        (it("a", "text"), 5, False),
        (it("a", "date_time"), 1795000000000, True),
        (it("a", "photo"), "x", False),
    ],
)
def test_answer_checks(item, value, ok):
    assert (check_answer(item, value) is None) is ok


@pytest.mark.parametrize("value", ["yes", "no", "na", "maybe", "YES", "", True, 1, 0, ["yes"]])
def test_yes_no_scored_as_checked(value):
    """score's inline yes_no path answers exactly what check_answer accepts, scored as before."""
    item = it("a", "yes_no")
    ok = check_answer(item, value) is None
    r = score(tpl(item), 80, {"a": value})
    assert r.items["a"].answered is ok
    assert r.unanswered_required == ([] if ok else ["a"])
    expected = {"yes": (1.0, False), "no": (0.0, True)}.get(value) if ok else (None, False)
    if value != "na":
        assert (r.items["a"].fraction, r.items["a"].failed) == expected
        assert (r.score, r.max_score) == ((expected[0] or 0.0), 1.0)
    else:
        assert not r.items["a"].applicable and r.max_score == 0


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_plan_made_once_scores_as_the_body_does(case):
    _name, body, answers, *_expected = case
    plan = plan_of(body)
    assert score(body, 80, answers, plan=plan) == score(body, 80, answers)
    assert score(body, 80, {}, plan=plan) == score(body, 80, {})  # and reused, unanswered


@pytest.mark.parametrize(
    ("items", "asks"),
    [
        ((it("a", "yes_no"), it("b", "number")), False),
        ((it("a", "yes_no", photo="on_fail"),), True),
        ((it("a", "yes_no"), it("p", "photo", required=False)), True),
        ((it("s", "signature"),), True),
    ],
)
def test_the_plan_knows_whether_any_item_asks_for_evidence(items, asks):
    assert plan_of(tpl(*items)).asks_evidence is asks
