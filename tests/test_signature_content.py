"""Signatures bind to the inspection's answers (domain.md; sync-protocol.md "Photo and signature
items: the answer is the attachments that point to the item's response").

A photo item's answer is its live photo attachments, so replacing a photo stales a signature;
responses that carry no answer (a signature item's own response) are not content, so a co-signer
does not stale the first signature; a cleared answer still does.
"""

import hashlib
import json

import pytest

from inspections.canonical import canonical_content, content_sha256
from store.models import Attachment, Inspection, Response, Site
from tests.conftest import ANA, HQ_EMAIL
from tests.sync_env import now_ms

BODY = {
    "sections": [
        {
            "key": "main",
            "title": {"zh": "主要", "en": "Main"},
            "items": [
                {"key": "clean", "label": {"zh": "清洁", "en": "Clean"}, "type": "yes_no"},
                {"key": "room", "label": {"zh": "房间照片", "en": "Room photo"}, "type": "photo"},
                {
                    "key": "sig_insp",
                    "label": {"zh": "检查员签名", "en": "Inspector"},
                    "type": "signature",
                },
                {
                    "key": "sig_mgr",
                    "label": {"zh": "店长签名", "en": "Manager"},
                    "type": "signature",
                },
            ],
        }
    ]
}

INSP = {"template_id": "t", "site_id": "s", "area": "1203", "score": 99}
H1, H2, H3 = ("1" * 64), ("2" * 64), ("3" * 64)


# --- the canonical form itself ------------------------------------------------------------


def test_canonical_form_exact_bytes_with_photos():
    responses = [
        {"id": "r2", "item_key": "room", "value": None, "note": None},
        {"id": "r1", "item_key": "clean", "value": '"yes"', "note": "好"},
        {"id": "r3", "item_key": "sig", "value": None, "note": None},
    ]
    attachments = [
        {"id": "a", "response_id": "r2", "kind": "photo", "sha256": H2, "deleted_at": None},
        {"id": "b", "response_id": "r2", "kind": "photo", "sha256": H1, "deleted_at": None},
        {"id": "c", "response_id": "r2", "kind": "photo", "sha256": H3, "deleted_at": 5},
        {"id": "d", "response_id": "r3", "kind": "signature", "sha256": H3, "deleted_at": None},
        {"id": "e", "response_id": "r1", "kind": "photo", "sha256": None, "deleted_at": None},
    ]
    assert canonical_content(INSP, responses, attachments).decode() == (
        '{"area":"1203","responses":['
        '{"item_key":"clean","note":"好","photos":["e"],"value":"\\"yes\\""},'
        '{"item_key":"room","note":null,"photos":["a","b"],"value":null}'
        '],"site_id":"s","template_id":"t"}'
    )
    # Deterministic whatever the input order.
    assert canonical_content(INSP, responses[::-1], attachments[::-1]) == canonical_content(
        INSP, responses, attachments
    )


def test_photo_evidence_is_part_of_the_content():
    responses = [{"id": "r", "item_key": "room", "value": None, "note": None}]
    p1 = {"id": "p1", "response_id": "r", "kind": "photo", "sha256": H1, "deleted_at": None}
    p2 = {"id": "p2", "response_id": "r", "kind": "photo", "sha256": H2, "deleted_at": None}
    before = content_sha256(INSP, responses, [p1])
    assert content_sha256(INSP, responses, [{**p1, "deleted_at": 1}, p2]) != before
    assert content_sha256(INSP, responses, [p1, p2]) != before
    assert content_sha256(INSP, responses, []) != before
    # The photo's metadata is not content, nor is its hash (filled in by its upload); its id
    # (a new photo is a new record) is.
    assert content_sha256(INSP, responses, [{**p1, "latitude": 1.5, "sha256": None}]) == before
    assert content_sha256(INSP, responses, [{**p1, "id": "x"}]) != before


def test_responses_without_an_answer_and_signatures_are_not_content():
    answered = [{"id": "r1", "item_key": "clean", "value": '"yes"', "note": None}]
    base = content_sha256(INSP, answered)
    cosign = [*answered, {"id": "r9", "item_key": "sig_mgr", "value": None, "note": None}]
    sig = {"id": "s", "response_id": "r9", "kind": "signature", "sha256": H1, "deleted_at": None}
    assert content_sha256(INSP, cosign, [sig]) == base
    # A cleared answer changes the content; so does a note alone.
    assert content_sha256(INSP, [{**answered[0], "value": None}]) != base
    noted = [{**answered[0], "value": None, "note": "n"}]
    assert b'"note":"n"' in canonical_content(INSP, noted)


# --- end to end through sync --------------------------------------------------------------


@pytest.fixture
def sig_env(api, demo_org, db):
    draft = api.post(
        "/templates",
        HQ_EMAIL,
        json={
            "template_key": "sig_probe",
            "category": "hygiene",
            "title": {"zh": "签名", "en": "Sig"},
            "body": BODY,
        },
    ).get_json()
    version = api.post(f"/templates/{draft['id']}/publish", HQ_EMAIL).get_json()
    return {"template": version["id"], "sites": {s.code: s.id for s in db.query(Site)}}


def _digest(db, iid):
    """The content as the server holds it, computed the way a device would."""
    db.expire_all()
    insp = db.get(Inspection, iid)
    rows = [
        dict(id=r.id, item_key=r.item_key, value=r.value, note=r.note, deleted_at=r.deleted_at)
        for r in db.query(Response).filter_by(inspection_id=iid)
    ]
    atts = [
        dict(id=a.id, response_id=a.response_id, kind=a.kind, deleted_at=a.deleted_at)
        for a in db.query(Attachment).filter_by(inspection_id=iid)
    ]
    return content_sha256(
        {"template_id": insp.template_id, "site_id": insp.site_id, "area": insp.area}, rows, atts
    )


def _att(phone, iid, rid, kind, data, **extra):
    return phone.create(
        "attachments",
        inspection_id=iid,
        response_id=rid,
        kind=kind,
        sha256=hashlib.sha256(data).hexdigest(),
        mime="image/jpeg" if kind == "photo" else "application/json",
        byte_size=len(data),
        **extra,
    )


def _start(device, sig_env):
    phone = device(ANA, "phone")
    phone.sync()
    iid = phone.create(
        "inspections",
        template_id=sig_env["template"],
        site_id=sig_env["sites"]["N-HOTEL"],
        status="in_progress",
        started_at=now_ms(),
        area="Room 1203",
    )
    phone.create("responses", inspection_id=iid, item_key="clean", value=json.dumps("yes"))
    room = phone.create("responses", inspection_id=iid, item_key="room", value=None)
    p1 = _att(phone, iid, room, "photo", b"first photo bytes")
    assert phone.sync()["conflicts"] == []
    return phone, iid, room, p1


def _sign(phone, db, iid, key, who):
    rid = phone.create("responses", inspection_id=iid, item_key=key, value=None)
    phone.sync()
    digest = _digest(db, iid)  # the content as it is when the signer signs
    strokes = json.dumps([[[1, 2], [3, 4]], who]).encode()
    sig = _att(
        phone,
        iid,
        rid,
        "signature",
        strokes,
        signer_name=who,
        signer_role="x",
        signed_at=now_ms(),
        signed_content_sha256=digest,
    )
    assert phone.sync()["conflicts"] == []
    return sig


def _stale(db, aid):
    db.expire_all()
    return db.get(Attachment, aid).signature_stale


def test_swapping_the_photo_that_answers_an_item_makes_the_signature_stale(sig_env, device, db):
    phone, iid, room, p1 = _start(device, sig_env)
    sig = _sign(phone, db, iid, "sig_insp", "inspector")
    assert _stale(db, sig) is False
    phone.delete("attachments", p1)
    _att(phone, iid, room, "photo", b"a different photo of another room")
    phone.sync()
    assert _stale(db, sig) is True, "answer changed, signature valid"


def test_adding_a_photo_to_an_answer_makes_the_signature_stale(sig_env, device, db):
    phone, iid, room, _p1 = _start(device, sig_env)
    sig = _sign(phone, db, iid, "sig_insp", "inspector")
    _att(phone, iid, room, "photo", b"one more photo")
    phone.sync()
    assert _stale(db, sig) is True


def test_a_second_signature_does_not_make_the_first_stale(sig_env, device, db):
    phone, iid, _room, _p1 = _start(device, sig_env)
    first = _sign(phone, db, iid, "sig_insp", "inspector")
    assert _stale(db, first) is False
    second = _sign(phone, db, iid, "sig_mgr", "manager")
    assert _stale(db, first) is False, "co-signing staled the first"
    assert _stale(db, second) is False


def test_clearing_an_answer_makes_the_signature_stale(sig_env, device, db):
    phone, iid, _room, _p1 = _start(device, sig_env)
    sig = _sign(phone, db, iid, "sig_insp", "inspector")
    rid = next(r["id"] for r in phone.live("responses").values() if r["item_key"] == "clean")
    phone.update("responses", rid, value=None)
    phone.sync()
    assert _stale(db, sig) is True, "cleared answer, signature valid"


def test_editing_a_non_content_field_keeps_the_signature_valid(sig_env, device, db):
    phone, iid, _room, _p1 = _start(device, sig_env)
    sig = _sign(phone, db, iid, "sig_insp", "inspector")
    phone.update("inspections", iid, notes="lamp flickers", latitude=31.2, longitude=121.4)
    phone.sync()
    assert _stale(db, sig) is False
    rid = next(r["id"] for r in phone.live("responses").values() if r["item_key"] == "clean")
    phone.update("responses", rid, value=json.dumps("no"))
    phone.sync()
    assert _stale(db, sig) is True


# --- what does not change the content -----------------------------------------------------


def test_the_upload_of_a_photo_signed_before_its_hash_was_known_keeps_the_signature(
    sig_env, device, db, client
):
    """A photo record made when the photo is taken, hashed only for its upload: the upload
    fills in its sha256, which is not content, so the signature holds."""
    from tests.media.conftest import jpeg
    from tests.media.test_upload_flow import _upload

    phone, iid, room, _p1 = _start(device, sig_env)
    data = jpeg(40, 30)
    late = phone.create(
        "attachments",
        inspection_id=iid,
        response_id=room,
        kind="photo",
        mime="image/jpeg",
        byte_size=len(data),
    )
    assert phone.sync()["conflicts"] == []
    sig = _sign(phone, db, iid, "sig_insp", "inspector")
    assert _stale(db, sig) is False
    _upload(client, phone, late, data)
    db.expire_all()
    assert db.get(Attachment, late).sha256 == hashlib.sha256(data).hexdigest()
    assert _stale(db, sig) is False, "the upload made the signature stale"


def test_a_signature_made_by_an_earlier_release_stays_valid_until_its_content_changes(
    sig_env, device, db
):
    """Signatures in the legacy form (every live response, no photos) are not flagged stale by
    the next recompute, only by a change of what they covered."""
    from inspections.canonical import legacy_content_sha256

    phone, iid, _room, _p1 = _start(device, sig_env)
    sig = _sign(phone, db, iid, "sig_insp", "inspector")
    db.expire_all()
    insp = db.get(Inspection, iid)
    rows = [
        dict(id=r.id, item_key=r.item_key, value=r.value, note=r.note, deleted_at=r.deleted_at)
        for r in db.query(Response).filter_by(inspection_id=iid)
    ]
    legacy = legacy_content_sha256(
        {"template_id": insp.template_id, "site_id": insp.site_id, "area": insp.area}, rows
    )
    phone.update("attachments", sig, signed_content_sha256=legacy)
    assert phone.sync()["conflicts"] == []
    phone.update("inspections", iid, notes="recomputed, nothing answered changed")
    phone.sync()
    assert _stale(db, sig) is False, "a recompute made a legacy signature stale"
    rid = next(r["id"] for r in phone.live("responses").values() if r["item_key"] == "clean")
    phone.update("responses", rid, value=json.dumps("no"))
    phone.sync()
    assert _stale(db, sig) is True
