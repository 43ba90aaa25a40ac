"""An uploaded photo is the bytes its record names: the sha256 in any case, and no resolution
repoints it at other bytes."""

from __future__ import annotations

import hashlib
import uuid

from store.models import Attachment, Conflict
from tests.conftest import ANA, BEN, NORTH
from tests.media.conftest import jpeg
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
    from tests.sync_env import answer, new_inspection, photo_record

    ben = device(BEN)
    ben.sync()
    iid = new_inspection(ben, env, site="S-HOTEL")
    rid = answer(ben, iid, "clean", "no")
    answer(ben, iid, "fridge", 3)
    secret = jpeg(330, 250, taken=uuid.uuid4().hex)
    att = photo_record(ben, iid, rid, secret)
    ben.sync()
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
