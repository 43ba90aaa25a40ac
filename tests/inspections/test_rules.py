"""Template validation, lifecycle and corrective-action rules, without Flask or a database."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

from inspections import actions, lifecycle
from inspections.canonical import canonical_content, content_sha256
from inspections.scoring import score
from inspections.template_rules import TemplateInvalid, validate_template

LIBRARY = Path(__file__).resolve().parents[2] / "library" / "templates"


def doc(*items):
    return {
        "template_key": "t_one",
        "title": {"zh": "模板", "en": "Template"},
        "body": {
            "sections": [{"key": "s", "title": {"zh": "节", "en": "S"}, "items": list(items)}]
        },
    }


def it(key, kind="yes_no", **kw):
    return {"key": key, "type": kind, "label": {"zh": key, "en": key}, **kw}


@pytest.mark.parametrize("path", sorted(LIBRARY.glob("*.json")), ids=lambda p: p.stem)
def test_library_templates_are_valid_and_bilingual(path):
    template = json.loads(path.read_text(encoding="utf-8"))
    validate_template(template)
    assert template["description"]["zh"] and template["description"]["en"]
    assert sum(len(s["items"]) for s in template["body"]["sections"]) >= 8


def test_library_covers_the_required_checklists():
    keys = {p.stem for p in LIBRARY.glob("*.json")}
    assert {
        "hotel_room_hygiene",
        "room_status_check",
        "canteen_food_handler_hygiene",
        "staff_grooming_conduct",
        "five_s",
        "reception_service",
        "corrective_action_follow_up",
        "safety_walkthrough",
    } <= keys
    safety = json.loads((LIBRARY / "safety_walkthrough.json").read_text(encoding="utf-8"))
    assert "common practice" in safety["description"]["en"]


BAD = {
    "duplicate key": (doc(it("a"), it("a")), "duplicate item key 'a'"),
    "unknown type": (doc(it("a", "slider")), "unknown type 'slider'"),
    "negative weight": (doc(it("a", weight=-1)), "weight must be a number >= 0"),
    "bool weight": (doc(it("a", weight=True)), "weight must be a number >= 0"),
    "visible_if missing": (
        doc(it("a", visible_if={"item": "zz", "equals": "yes"})),
        "not an earlier item",
    ),
    "visible_if forward": (
        doc(it("a", visible_if={"item": "b", "equals": "yes"}), it("b")),
        "not an earlier item",
    ),
    "visible_if shape": (doc(it("a"), it("b", visible_if={"item": "a"})), "visible_if must be"),
    "choice one option": (
        doc(
            it("c", "choice", options=[{"value": "x", "label": {"zh": "x", "en": "x"}, "score": 1}])
        ),
        "at least 2 options",
    ),
    "choice duplicate": (
        doc(
            it(
                "c",
                "choice",
                options=[
                    {"value": "x", "label": {"zh": "x", "en": "x"}, "score": 1},
                    {"value": "x", "label": {"zh": "y", "en": "y"}, "score": 0},
                ],
            )
        ),
        "duplicate value 'x'",
    ),
    "choice score range": (
        doc(
            it(
                "c",
                "choice",
                options=[
                    {"value": "x", "label": {"zh": "x", "en": "x"}, "score": 2},
                    {"value": "y", "label": {"zh": "y", "en": "y"}, "score": 0},
                ],
            )
        ),
        "score must be",
    ),
    "number without limits": (doc(it("n", "number")), "needs min or max"),
    "count without expected": (doc(it("n", "count")), "needs expected"),
    "label missing en": (
        doc({"key": "a", "type": "yes_no", "label": {"zh": "仅中文"}}),
        "label needs",
    ),
    "choice option named na": (
        doc(
            it(
                "c",
                "choice",
                options=[
                    {"value": "ok", "label": {"zh": "好", "en": "OK"}, "score": 1},
                    {"value": "na", "label": {"zh": "无", "en": "None"}, "score": 0, "fail": True},
                ],
            )
        ),
        "reserved for 'not applicable'",
    ),
    "choice value a list": (
        doc(
            it(
                "c",
                "choice",
                options=[
                    {"value": ["x"], "label": {"zh": "x", "en": "x"}, "score": 1},
                    {"value": ["x"], "label": {"zh": "y", "en": "y"}, "score": 0},
                ],
            )
        ),
        "value must be non-empty text",
    ),
    "unknown field": (doc(it("a", wieght=2)), "unknown field(s) wieght"),
    "bad photo rule": (doc(it("a", photo="sometimes")), "photo must be"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_rule_is_refused_naming_the_item(name):
    template, message = BAD[name]
    with pytest.raises(TemplateInvalid) as info:
        validate_template(template)
    found = [
        (where, msg) for where, msgs in info.value.errors.items() for msg in msgs if message in msg
    ]
    assert found, info.value.errors
    assert "key '" in found[0][0] or "option" in found[0][0]


def test_malformed_keys_and_long_grades_are_refused_not_a_crash():
    """A list where a section key belongs, or a grade band name longer than an inspection can
    store (publishing it made every completion a 500 on PostgreSQL)."""
    bad = doc(it("a"))
    bad["body"]["sections"].append({**bad["body"]["sections"][0], "key": ["s"]})
    bad["body"]["sections"][1]["items"] = [it("b")]
    bad["body"]["grade_bands"] = [{"grade": "Excellent", "min": 90}, {"grade": " ", "min": 0}]
    with pytest.raises(TemplateInvalid) as info:
        validate_template(bad)
    errors = info.value.errors
    assert any("key must be" in m for m in errors["body.sections[1]"]), errors
    assert errors["body.grade_bands[0]"] == ["grade must be 1 to 8 characters"]
    assert errors["body.grade_bands[1]"] == ["grade must be 1 to 8 characters"]
    good = doc(it("a"))
    good["body"]["grade_bands"] = [{"grade": "很差" * 4, "min": 50}, {"grade": "A+", "min": 0}]
    validate_template(good)


def test_template_level_rules():
    bad = doc(it("a"))
    bad["template_key"] = "Bad Key"
    bad["pass_threshold"] = 120
    bad["body"]["grade_bands"] = [{"grade": "A", "min": 50}, {"grade": "B", "min": 60}]
    with pytest.raises(TemplateInvalid) as info:
        validate_template(bad)
    assert {"template_key", "pass_threshold", "body.grade_bands[1]"} <= set(info.value.errors)


DEVICE_OK = [
    ("draft", "in_progress"),
    ("in_progress", "completed"),
    ("returned", "in_progress"),
    ("returned", "completed"),
    ("draft", "completed"),
]
DEVICE_REFUSED = [
    ("completed", "approved"),
    ("in_progress", "approved"),
    ("in_progress", "returned"),
    ("approved", "in_progress"),
]


@pytest.mark.parametrize("old,new", DEVICE_OK)
def test_device_moves(old, new):
    lifecycle.transition(old, new, "inspector", via="device")


@pytest.mark.parametrize("old,new", DEVICE_REFUSED)
def test_device_cannot_review_or_reopen(old, new):
    with pytest.raises(lifecycle.TransitionRefused):
        lifecycle.transition(old, new, "inspector", via="device")


@pytest.mark.parametrize(
    "role,ok", [("regional_manager", True), ("hq", True), ("inspector", False)]
)
def test_who_reviews(role, ok):
    for target in ("approved", "returned"):
        if ok:
            lifecycle.transition("completed", target, role, via="review")
        else:
            with pytest.raises(lifecycle.TransitionRefused):
                lifecycle.transition("completed", target, role, via="review")


def test_only_completed_inspections_are_reviewed_and_only_hq_archives():
    with pytest.raises(lifecycle.TransitionRefused):
        lifecycle.transition("in_progress", "approved", "hq", via="review")
    lifecycle.transition("approved", "archived", "hq", via="review")
    with pytest.raises(lifecycle.TransitionRefused):
        lifecycle.transition("approved", "archived", "regional_manager", via="review")
    assert lifecycle.is_locked("completed") and lifecycle.is_locked("approved")
    assert not lifecycle.is_locked("returned")


def test_actions_for_failed_items_priorities_and_due_times():
    body = doc(it("a"), it("k", critical=True), it("ok"))["body"]
    result = score(body, 80, {"a": "no", "k": "no", "ok": "yes"})
    done = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    drafts = actions.actions_for_failed_items(
        result, body, completed_at=done, policy=actions.ActionPolicy()
    )
    by_key = {d.item_key: d for d in drafts}
    assert set(by_key) == {"a", "k"}
    assert by_key["k"].priority == "high" and by_key["k"].due_at == done + dt.timedelta(hours=24)
    assert by_key["a"].priority == "medium" and by_key["a"].due_at == done + dt.timedelta(days=7)


@pytest.mark.parametrize(
    "old,new,role,note,evidence,reason",
    [
        ("open", "resolved", "inspector", "", True, "note_required"),
        ("open", "resolved", "inspector", "fixed", False, "evidence_required"),
        ("resolved", "verified", "inspector", None, True, "wrong_role"),
        ("open", "verified", "hq", None, True, "invalid_transition"),
        ("verified", "open", "hq", None, True, "invalid_transition"),
        ("resolved", "verified", "regional_manager", None, False, "evidence_not_uploaded"),
    ],
)
def test_action_refusals(old, new, role, note, evidence, reason):
    # `evidence`: photos there and, for verifying, uploaded.
    with pytest.raises(actions.ActionRefused) as info:
        actions.action_transition(
            old, new, role, note=note, has_evidence=evidence, evidence_uploaded=evidence
        )
    assert info.value.reason == reason


def test_action_flow_and_overdue():
    for old, new, role in (
        ("open", "in_progress", "inspector"),
        ("in_progress", "resolved", "inspector"),
        ("resolved", "verified", "regional_manager"),
        ("resolved", "reopened", "hq"),
    ):
        actions.action_transition(
            old, new, role, note="done", has_evidence=True, evidence_uploaded=True
        )
    now = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    past = now - dt.timedelta(hours=1)
    assert actions.is_overdue("open", past, now) and actions.is_overdue("reopened", past, now)
    assert not actions.is_overdue("resolved", past, now)
    assert not actions.is_overdue("open", now + dt.timedelta(hours=1), now)


def test_canonical_content_is_stable_and_sensitive_to_answers():
    insp = {"template_id": "t", "site_id": "s", "area": "1203", "score": 99}
    a = [
        {"id": "2", "item_key": "b", "value": '"no"', "note": None},
        {"id": "1", "item_key": "a", "value": '"yes"', "note": "好"},
    ]
    assert canonical_content(insp, a) == canonical_content(insp, list(reversed(a)))
    assert b"score" not in canonical_content(insp, a)
    changed = copy.deepcopy(a)
    changed[0]["value"] = '"yes"'
    assert content_sha256(insp, a) != content_sha256(insp, changed)
    assert canonical_content(insp, a).decode() == (
        '{"area":"1203","responses":[{"item_key":"a","note":"好","value":"\\"yes\\""},'
        '{"item_key":"b","note":null,"value":"\\"no\\""}],"site_id":"s","template_id":"t"}'
    )
