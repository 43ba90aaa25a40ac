"""An uploaded photo is the bytes its record names: the sha256 in any case, and no resolution
repoints it at other bytes."""

from __future__ import annotations

import hashlib
import uuid

from store.models import Attachment, Conflict
from tests.conftest import ANA, NORTH
from tests.media.conftest import jpeg
from tests.media.test_evidence_guards import _south_photo as south_photo_record
from tests.media.test_upload_flow import _failed_photo_inspection, _upload
from tests.sync_env import photo_record


def test_a_record_naming_its_sha256_in_upper_case_can_be_uploaded(env, device, client, db):
    """Hex digests and media types mean the same in any case: a record naming them in upper
    case (as many Android apps write hex) is stored in lower case, and its photo uploads."""
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = jpeg(320, 240, taken=uuid.uuid4().hex)
    upper = hashlib.sha256(data).hexdigest().upper()
    att = phone.create(
        "attachments",
        inspection_id=iid,
        response_id=rid,
        kind="photo",
        sha256=upper,
        mime="image/JPEG",
        byte_size=len(data),
    )
    assert phone.sync()["conflicts"] == []
    resp = client.post(
        f"/api/v1/attachments/{att}/upload",
        headers=phone.headers(),
        json={"sha256": upper, "byte_size": len(data), "mime": "image/jpeg"},
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    put = client.put(body["url"], data=data, headers={**phone.headers(), **body["headers"]})
    assert put.status_code == 200, put.get_json()
    done = client.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
    assert done.status_code == 200, done.get_json()
    db.expire_all()
    stored = db.get(Attachment, att)
    assert (stored.uploaded, stored.sha256, stored.mime) == (True, upper.lower(), "image/jpeg")


def _south_photo(device, client, env):
    """Ben's uploaded photo at S-HOTEL (South, outside Ana's scope); returns its bytes."""
    secret = jpeg(330, 250, taken=uuid.uuid4().hex)
    ben, att = south_photo_record(device, env, secret)
    assert _upload(client, ben, att, secret).status_code == 200
    return secret


def test_a_resolution_cannot_repoint_an_uploaded_photo_at_other_bytes(env, device, client, api, db):
    """A push changing a verified photo's sha256 is refused (keep_in_place) and kept as an
    invalid_value conflict; taking the device's value must not point the uploaded record at
    other bytes: here another region's photo, which Ana then downloads as her own evidence."""
    secret = _south_photo(device, client, env)
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    mine = jpeg(320, 240, taken=uuid.uuid4().hex)
    att = photo_record(phone, iid, rid, mine)
    phone.sync()
    assert _upload(client, phone, att, mine).status_code == 200
    phone.sync()
    phone.update("attachments", att, sha256=hashlib.sha256(secret).hexdigest())
    kinds = [(c["kind"], c.get("column")) for c in phone.sync()["conflicts"]]
    assert ("invalid_value", "sha256") in kinds
    conflict = db.query(Conflict).filter_by(record_id=att, column="sha256").one()
    resp = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "take_device"})
    assert resp.status_code == 422, resp.get_json()
    db.expire_all()
    assert db.get(Attachment, att).sha256 == hashlib.sha256(mine).hexdigest()
    got = client.get(f"/api/v1/attachments/{att}/file?variant=original", headers=phone.headers())
    assert got.data != secret


def test_bytes_staged_for_a_record_go_once_it_proves_possession_another_way(
    env, device, client, app
):
    """Ana stages a South photo's bytes for one record, then uploads them whole for another:
    asking again for the first answers already_uploaded, and its staged copy is removed (gc
    only visits uploads that never completed, so it stayed in the store for good)."""
    from api.media import blob_store
    from media import uploads
    from tests.sync_env import upload_photo

    secret = _south_photo(device, client, env)
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    first = photo_record(phone, iid, rid, secret)
    second = photo_record(phone, iid, rid, secret)
    phone.sync()
    sha = hashlib.sha256(secret).hexdigest()
    ask = {"sha256": sha, "byte_size": len(secret), "mime": "image/jpeg"}
    staged = client.post(f"/api/v1/attachments/{first}/upload", headers=phone.headers(), json=ask)
    body = staged.get_json()
    put = client.put(body["url"], data=secret, headers={**phone.headers(), **body["headers"]})
    assert put.status_code == 200
    upload_photo(phone, second, secret)  # proves she holds the bytes: staged, verified, done
    again = client.post(f"/api/v1/attachments/{first}/upload", headers=phone.headers(), json=ask)
    assert again.get_json() == {"already_uploaded": True}
    with app.app_context():
        assert not blob_store().exists(uploads.staged_key(sha, first))


def test_a_second_record_of_the_same_photo_shows_its_exif_too(env, device, client, db):
    """The same photo attached twice (to the failed item and to its action, say): the second
    upload is a dedupe, its bytes never processed again, and its record showed reviewers no
    EXIF capture time or location while the first showed both."""
    phone, tablet = device(ANA), device(ANA, "tablet")
    iid, rid = _failed_photo_inspection(phone, env)
    data = jpeg(320, 240, gps=(31.2304, 121.4737), taken="2026:11:20 09:15:00")
    first = photo_record(phone, iid, rid, data)
    second = photo_record(phone, iid, rid, data)
    third = photo_record(phone, iid, rid, data)
    phone.sync()
    assert _upload(client, phone, first, data).status_code == 200
    assert _upload(client, phone, second, data).status_code == 200  # already uploaded
    # Another device of the same photo whose copy is checked against the processed original.
    tablet.sync()
    assert _upload(client, tablet, third, data).status_code == 200
    db.expire_all()
    facts = [
        (a.exif_captured_at, a.exif_latitude, a.exif_longitude)
        for a in (db.get(Attachment, i) for i in (first, second, third))
    ]
    assert facts[0][0] is not None and facts[0][1] is not None
    assert facts[1] == facts[0] and facts[2] == facts[0], facts


def test_bytes_staged_for_a_record_go_when_it_completes_by_possession(env, device, client, app):
    """As above, but the phone simply completes the first record (its queue's next step): the
    completion needs no bytes of its own, and the copy it staged stayed in the store for good."""
    from api.media import blob_store
    from media import uploads
    from tests.sync_env import upload_photo

    secret = _south_photo(device, client, env)
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    first = photo_record(phone, iid, rid, secret)
    second = photo_record(phone, iid, rid, secret)
    phone.sync()
    assert _upload(client, phone, first, secret, complete=False).status_code == 200
    upload_photo(phone, second, secret)
    done = client.post(f"/api/v1/attachments/{first}/complete", headers=phone.headers())
    assert done.status_code == 200 and done.get_json()["uploaded"] is True
    sha = hashlib.sha256(secret).hexdigest()
    with app.app_context():
        assert not blob_store().exists(uploads.staged_key(sha, first))
