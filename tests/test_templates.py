"""Templates: everyone reads published versions; HQ drafts, validates, publishes; versions
never change."""

from __future__ import annotations

import copy

from tests.conftest import ANA, HQ_EMAIL, NORTH

LIBRARY_KEYS = {
    "hotel_room_hygiene",
    "room_status_check",
    "canteen_food_handler_hygiene",
    "staff_grooming_conduct",
    "five_s",
    "reception_service",
    "corrective_action_follow_up",
    "safety_walkthrough",
}


def _body():
    return {
        "sections": [
            {
                "key": "s1",
                "title": {"zh": "卫生", "en": "Hygiene"},
                "items": [
                    {
                        "key": "a",
                        "label": {"zh": "地面清洁", "en": "Floor clean"},
                        "type": "yes_no",
                    },
                    {
                        "key": "b",
                        "label": {"zh": "温度", "en": "Temperature"},
                        "type": "number",
                        "unit": "°C",
                        "max": 5,
                    },
                ],
            }
        ]
    }


def _draft(api, key="test_tpl", body=None):
    resp = api.post(
        "/templates",
        HQ_EMAIL,
        json={
            "template_key": key,
            "category": "hygiene",
            "title": {"zh": "测试", "en": "Test"},
            "body": body or _body(),
        },
    )
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_everyone_lists_the_bilingual_library(api, demo_org):
    for email in (ANA, NORTH, HQ_EMAIL):
        items = api.get("/templates?page_size=100", email).get_json()
        keys = {t["template_key"] for t in items}
        assert keys >= LIBRARY_KEYS
        for t in items:
            assert t["title"]["zh"] and t["title"]["en"]
            assert t["latest_version"] >= 1


def test_drafts_are_hq_only(api, demo_org):
    draft = _draft(api)
    assert api.get(f"/templates/{draft['id']}", ANA).status_code == 404
    assert draft["template_key"] not in {
        t["template_key"] for t in api.get("/templates?page_size=100", ANA).get_json()
    }
    hq_all = api.get("/templates?include_drafts=true&page_size=100", HQ_EMAIL).get_json()
    assert draft["template_key"] in {t["template_key"] for t in hq_all}
    assert (
        api.post(
            "/templates",
            NORTH,
            json={
                "template_key": "x_y",
                "category": "hygiene",
                "title": {"zh": "x", "en": "x"},
                "body": _body(),
            },
        ).status_code
        == 403
    )
    assert api.post(f"/templates/{draft['id']}/publish", ANA).status_code == 403


def test_publishing_freezes_a_version_and_never_changes_it(api, demo_org):
    draft = _draft(api)
    v1 = api.post(f"/templates/{draft['id']}/publish", HQ_EMAIL)
    assert v1.status_code == 201
    v1 = v1.get_json()
    assert v1["version"] == 1
    body = _body()
    body["sections"][0]["items"][0]["label"]["en"] = "Floor spotless"
    assert api.patch(f"/templates/{draft['id']}", HQ_EMAIL, json={"body": body}).status_code == 200
    v2 = api.post(f"/templates/{draft['id']}/publish", HQ_EMAIL).get_json()
    assert v2["version"] == 2 and v2["id"] != v1["id"]
    again = api.get(f"/template-versions/{v1['id']}", ANA).get_json()
    assert again["body"] == v1["body"]
    assert again["body"]["sections"][0]["items"][0]["label"]["en"] == "Floor clean"
    versions = api.get(f"/templates/{draft['id']}/versions", ANA).get_json()
    assert [v["version"] for v in versions] == [2, 1]


def test_unpublished_edits_stay_hqs_until_published(api, demo_org):
    draft = _draft(api)
    assert api.post(f"/templates/{draft['id']}/publish", HQ_EMAIL).status_code == 201
    body = _body()
    body["sections"][0]["items"][0]["label"]["en"] = "Secret new wording"
    edit = {"body": body, "title": {"zh": "草稿", "en": "Draft title"}}
    assert api.patch(f"/templates/{draft['id']}", HQ_EMAIL, json=edit).status_code == 200
    for email in (ANA, NORTH):
        one = api.get(f"/templates/{draft['id']}", email).get_json()
        listed = next(
            t
            for t in api.get("/templates?page_size=100", email).get_json()
            if t["id"] == draft["id"]
        )
        for shown in (one, listed):
            assert shown["title"]["en"] == "Test" and "Secret" not in str(shown["body"])
    hq = api.get(f"/templates/{draft['id']}", HQ_EMAIL).get_json()
    assert hq["title"]["en"] == "Draft title"
    assert hq["body"]["sections"][0]["items"][0]["label"]["en"] == "Secret new wording"


def _invalid(api, mutate):
    body = _body()
    mutate(body)
    draft = _draft(api, key=f"bad_{abs(hash(str(body))) % 10**8}", body=body)
    resp = api.post(f"/templates/{draft['id']}/publish", HQ_EMAIL)
    assert resp.status_code == 422, resp.get_json()
    payload = resp.get_json()
    assert payload["reason"] == "invalid_template"
    return payload


def test_each_body_rule_is_refused_naming_the_item(api, demo_org):
    items = lambda b: b["sections"][0]["items"]  # noqa: E731
    cases = {
        "duplicate key": (lambda b: items(b).append(copy.deepcopy(items(b)[0])), "'a'"),
        "unknown type": (lambda b: items(b)[1].update(type="slider"), "'b'"),
        "negative weight": (lambda b: items(b)[0].update(weight=-1), "'a'"),
        "visible_if unknown": (
            lambda b: items(b)[0].update(visible_if={"item": "zz", "equals": "yes"}),
            "'a'",
        ),
        "visible_if later item": (
            lambda b: items(b)[0].update(visible_if={"item": "b", "equals": 1}),
            "'a'",
        ),
        "choice without options": (
            lambda b: items(b).append(
                {
                    "key": "c",
                    "label": {"zh": "选", "en": "Pick"},
                    "type": "choice",
                    "options": [{"value": "x"}],
                }
            ),
            "'c'",
        ),
    }
    for name, (mutate, needle) in cases.items():
        payload = _invalid(api, mutate)
        text = " ".join(payload["errors"]) + payload["message"]
        assert needle in text, (name, payload)
