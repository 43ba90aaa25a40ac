"""What answers an item (reviewer B's findings): a signature item is answered by a signature
bound to the content it signed, a photo item or photo rule by a photo, never by evidence of the
other kind; and whitespace does not answer a required text item. The same over REST and sync,
in the missing-evidence list and in the reviewer's view."""

from __future__ import annotations

import hashlib
import json

import pytest

from inspections.scoring import score
from store.models import Conflict, Inspection
from tests.conftest import ANA, HQ_EMAIL, NORTH
from tests.media.conftest import jpeg
from tests.sync_env import answer, now_ms, photo_record, upload_photo

STROKES = json.dumps([[[10, 10], [50, 40], [90, 10]]]).encode()


def _publish(api, key, items):
    """HQ publishes a one-section template of these items; returns the version id."""
    body = {"sections": [{"key": "s", "title": {"zh": "节", "en": "S"}, "items": items}]}
    draft = api.post(
        "/templates",
        HQ_EMAIL,
        json={
            "template_key": key,
            "category": "other",
            "title": {"zh": "测", "en": key},
            "body": body,
        },
    )
    assert draft.status_code == 201, draft.get_json()
    version = api.post(f"/templates/{draft.json['id']}/publish", HQ_EMAIL)
    assert version.status_code == 201, version.get_json()
    return version.json["id"]


def _started(phone, env, tpl) -> str:
    """An in-progress inspection of this template version at N-HOTEL on the phone."""
    phone.sync()
    return phone.create(
        "inspections",
        template_id=tpl,
        site_id=env["sites"]["N-HOTEL"],
        status="in_progress",
        started_at=now_ms(),
    )


def _signature(phone, iid, response_id, **extra) -> str:
    """A signature record (strokes) on the phone, pointing at a response."""
    return phone.create(
        "attachments",
        inspection_id=iid,
        response_id=response_id,
        kind="signature",
        sha256=hashlib.sha256(STROKES).hexdigest(),
        mime="application/json",
        byte_size=len(STROKES),
        signer_name="店长 王",
        signer_role="site_manager",
        signed_at=now_ms(),
        **extra,
    )


def _signed_walk(api) -> str:
    return _publish(
        api,
        "signed_walk",
        [
            {"key": "ok", "label": {"zh": "好", "en": "OK"}, "type": "yes_no"},
            {"key": "sign", "label": {"zh": "签名", "en": "Manager signs"}, "type": "signature"},
        ],
    )


# --- a signature item needs a signature ---------------------------------------------------


def test_a_photo_does_not_stand_in_for_a_required_signature(env, device, api, db):
    """A required signature item is answered by a signature, not by any photo."""
    tpl = _signed_walk(api)
    phone = device(ANA, "phone")
    iid = _started(phone, env, tpl)
    answer(phone, iid, "ok", "yes")
    sign = phone.create("responses", inspection_id=iid, item_key="sign", value=None)
    photo_record(phone, iid, sign, jpeg(20, 20))  # a photo of anything, kind "photo"
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    result = phone.sync()
    db.expire_all()
    insp = db.get(Inspection, iid)
    # The required signature was never given: completion is refused ("incomplete").
    assert insp.status != "completed", result["conflicts"]
    assert [(c["kind"], c["detail"]) for c in result["conflicts"]] == [
        ("incomplete", "required items unanswered: sign")
    ]


def test_rest_completion_and_the_reviewers_view_want_a_bound_signature(env, device, api, db):
    """Over REST too: a photo, then a signature bound to no content (no signed_content_sha256,
    domain.md: a signature attachment carries it) leave the item unanswered and its signature
    missing in the reviewer's view; the signature bound to what was signed answers it."""
    tpl = _signed_walk(api)
    phone = device(ANA, "phone")
    iid = _started(phone, env, tpl)
    answer(phone, iid, "ok", "yes")
    sign = phone.create("responses", inspection_id=iid, item_key="sign", value=None)
    photo = photo_record(phone, iid, sign, jpeg(20, 20))
    assert phone.sync()["conflicts"] == []
    upload_photo(phone, photo, jpeg(20, 20))

    def refused() -> list:
        done = api.post(f"/inspections/{iid}/complete", ANA)
        assert done.status_code == 422, done.get_json()
        assert done.get_json()["reason"] == "incomplete"
        assert "sign" in done.get_json()["message"]
        view = api.get(f"/inspections/{iid}", NORTH).get_json()
        return [(m["item_key"], m["kind"], m["state"]) for m in view["missing_evidence"]]

    assert refused() == [("sign", "signature", "no_record")]
    unbound = _signature(phone, iid, sign)
    assert phone.sync()["conflicts"] == []
    upload_photo(phone, unbound, STROKES, mime="application/json")
    assert refused() == [("sign", "signature", "no_record")]
    phone.update("attachments", unbound, signed_content_sha256="a" * 64)
    assert phone.sync()["conflicts"] == []
    done = api.post(f"/inspections/{iid}/complete", ANA)
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["media_complete"] is True
    assert api.get(f"/inspections/{iid}", NORTH).get_json()["missing_evidence"] == []


def test_a_signature_does_not_stand_in_for_a_photo(env, device, api, db):
    """A photo item, and a failed item whose photo rule asks for a photo (on_fail), are not
    evidenced by a signature on their responses, uploaded or not."""
    tpl = _publish(
        api,
        "photo_walk",
        [
            {"key": "ok", "label": {"zh": "好", "en": "OK"}, "type": "yes_no", "photo": "on_fail"},
            {"key": "room", "label": {"zh": "房间", "en": "Room"}, "type": "photo"},
        ],
    )
    phone = device(ANA, "phone")
    iid = _started(phone, env, tpl)
    ok = answer(phone, iid, "ok", "no")
    room = phone.create("responses", inspection_id=iid, item_key="room", value=None)
    signed = [_signature(phone, iid, rid, signed_content_sha256="a" * 64) for rid in (ok, room)]
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    result = phone.sync()
    assert [(c["kind"], c["detail"]) for c in result["conflicts"]] == [
        ("incomplete", "required items unanswered: room")
    ]
    for att in signed:
        upload_photo(phone, att, STROKES, mime="application/json")
    room_photo = photo_record(phone, iid, room, jpeg(20, 20))
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    assert phone.sync()["conflicts"] == []
    upload_photo(phone, room_photo, jpeg(20, 20))
    db.expire_all()
    insp = db.get(Inspection, iid)
    # Completed (a photo rule is evidence to collect, not an answer), but the failed item's
    # photo is still missing: the signature on its response is no photo of the fault.
    assert (insp.status, insp.media_complete) == ("completed", False)
    view = api.get(f"/inspections/{iid}", NORTH).get_json()
    assert [(m["item_key"], m["kind"], m["state"]) for m in view["missing_evidence"]] == [
        ("ok", "photo", "no_record")
    ]


# --- a blank is no answer -------------------------------------------------------------------


def _text_required(api) -> str:
    return _publish(
        api,
        "text_required",
        [
            {"key": "ok", "label": {"zh": "好", "en": "OK"}, "type": "yes_no"},
            {"key": "room", "label": {"zh": "房号", "en": "Room number"}, "type": "text"},
        ],
    )


def test_a_blank_text_does_not_answer_a_required_text_item(env, device, api, db):
    tpl = _text_required(api)
    phone = device(ANA, "phone")
    iid = _started(phone, env, tpl)
    answer(phone, iid, "ok", "yes")
    answer(phone, iid, "room", "   ")
    phone.sync()
    done = api.post(f"/inspections/{iid}/complete", ANA)
    # domain.md: "cannot be completed with required items unanswered" - a blank is no answer
    assert done.status_code == 422, done.get_json()
    assert done.get_json()["reason"] == "incomplete"


@pytest.mark.parametrize("blank", ["", "   ", "\u3000", " \n\t"], ids=repr)
def test_a_synced_completion_with_a_blank_text_is_refused(env, device, api, db, blank):
    """The same over sync, for the blanks an IME or a cleared field leaves (the full-width
    space included); the blank is kept as sent, not refused as an invalid value."""
    tpl = _text_required(api)
    phone = device(ANA, "phone")
    iid = _started(phone, env, tpl)
    answer(phone, iid, "ok", "yes")
    room = answer(phone, iid, "room", blank)
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    result = phone.sync()
    assert [(c["kind"], c["detail"]) for c in result["conflicts"]] == [
        ("incomplete", "required items unanswered: room")
    ]
    db.expire_all()
    assert db.get(Inspection, iid).status == "in_progress"
    assert db.query(Conflict).filter_by(record_id=room).count() == 0
    phone.update("responses", room, value=json.dumps(" 1203 "))
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Inspection, iid).status == "completed"


def test_scoring_counts_a_blank_text_unanswered():
    text = {"key": "t", "label": {"zh": "t", "en": "t"}, "type": "text"}
    optional = {**text, "key": "o", "required": False}
    body = {"sections": [{"key": "s", "title": {"zh": "s", "en": "s"}, "items": [text, optional]}]}
    blank = score(body, 80, {"t": " \u3000", "o": ""})
    assert blank.unanswered_required == ["t"]
    assert not blank.items["t"].answered and not blank.items["o"].answered
    assert score(body, 80, {"t": "x"}).unanswered_required == []
