"""The evidence pipeline through the API: sync the record, upload, complete, fetch."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import pytest
from PIL import Image

from api import create_app
from store.models import Attachment, Blob, Inspection
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH
from tests.media.conftest import jpeg, make_bucket, png
from tests.media.test_images import BAD_FILES, _bomb_png
from tests.sync_env import answer, new_inspection, photo_record

SHANGHAI = (31.2304, 121.4737)


def _upload(client, dev, att_id, data, mime="image/jpeg", complete=True):
    sha = hashlib.sha256(data).hexdigest()
    resp = client.post(
        f"/api/v1/attachments/{att_id}/upload",
        headers=dev.headers(),
        json={"sha256": sha, "byte_size": len(data), "mime": mime},
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    if not body.get("already_uploaded"):
        put = client.put(body["url"], data=data, headers={**dev.headers(), **body["headers"]})
        assert put.status_code == 200, put.get_json()
    if complete:
        return client.post(f"/api/v1/attachments/{att_id}/complete", headers=dev.headers())
    return resp


def _failed_photo_inspection(dev, env):
    dev.sync()
    iid = new_inspection(dev, env)
    rid = answer(dev, iid, "clean", "no")
    answer(dev, iid, "fridge", 3)
    return iid, rid


def test_end_to_end_photo_upright_stripped_original_kept(env, device, client, db, app):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = jpeg(4000, 3000, orientation=6, gps=SHANGHAI, taken="2026:11:20 09:15:00")
    att = photo_record(phone, iid, rid, data)
    phone.sync()
    assert db.get(Inspection, iid).media_complete is False  # photo on_fail, not uploaded
    done = _upload(client, phone, att, data)
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["uploaded"] is True and (body["width"], body["height"]) == (3000, 4000)
    assert abs(body["exif_latitude"] - SHANGHAI[0]) < 1e-3
    sizes = {"preview": (1200, 1600), "thumb": (240, 320)}
    for variant, size in sizes.items():
        resp = client.get(
            f"/api/v1/attachments/{att}/file?variant={variant}", headers=phone.headers()
        )
        assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
        img = Image.open(io.BytesIO(resp.data))
        assert img.size == size and not img.getexif()
        assert resp.headers["ETag"]
        again = client.get(
            f"/api/v1/attachments/{att}/file?variant={variant}",
            headers={**phone.headers(), "If-None-Match": resp.headers["ETag"]},
        )
        assert again.status_code == 304
    original = client.get(
        f"/api/v1/attachments/{att}/file?variant=original", headers=phone.headers()
    )
    assert original.data == data
    db.expire_all()
    assert db.get(Inspection, iid).media_complete is True
    other = device(ANA, "tablet")
    other.sync()
    assert other.get("attachments", att)["uploaded"] is True
    assert other.get("inspections", iid)["media_complete"] is True


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_through_the_api_are_4xx_and_change_nothing(env, device, client, db, app, name):
    make, mime, reason = BAD_FILES[name]
    data = make()
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    if not data:
        resp = client.post(
            f"/api/v1/attachments/{uuid.uuid4().hex}/upload",
            headers=phone.headers(),
            json={"sha256": hashlib.sha256(b"").hexdigest(), "byte_size": 0, "mime": mime},
        )
        assert resp.status_code == 422
        return
    att = photo_record(phone, iid, rid, data, mime=mime)
    phone.sync()
    resp = _upload(client, phone, att, data, mime=mime)
    assert 400 <= resp.status_code < 500, resp.get_json()
    assert resp.get_json()["reason"] == reason
    db.expire_all()
    assert db.get(Attachment, att).uploaded is False
    sha = hashlib.sha256(data).hexdigest()
    assert db.get(Blob, sha) is None
    media = app.extensions["blob_store"]
    assert not any(media.exists(f"derived/{sha[:2]}/{sha}/{v}.jpg") for v in ("preview", "thumb"))
    assert not media.exists(f"blobs/{sha[:2]}/{sha}")  # bad bytes are not kept


def test_wrong_sha_and_wrong_size_are_refused(env, device, client, db):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    # Bytes no other test uploads: the blob store outlives each test, and bytes already in it
    # would make the early completion below succeed.
    data = jpeg(301, 199)
    att = photo_record(phone, iid, rid, data)
    phone.sync()
    sha = hashlib.sha256(data).hexdigest()
    resp = client.post(
        f"/api/v1/attachments/{att}/upload",
        headers=phone.headers(),
        json={"sha256": "0" * 64, "byte_size": len(data), "mime": "image/jpeg"},
    )
    assert resp.status_code == 409 and resp.get_json()["reason"] == "sha256_mismatch"
    client.post(
        f"/api/v1/attachments/{att}/upload",
        headers=phone.headers(),
        json={"sha256": sha, "byte_size": len(data), "mime": "image/jpeg"},
    )
    half = client.put(
        f"/api/v1/attachments/{att}/content", data=data[: len(data) // 2], headers=phone.headers()
    )
    assert half.status_code == 422 and half.get_json()["reason"] == "size_mismatch"
    tampered = bytearray(data)
    tampered[-10] ^= 0xFF
    bad = client.put(
        f"/api/v1/attachments/{att}/content", data=bytes(tampered), headers=phone.headers()
    )
    assert bad.status_code == 422 and bad.get_json()["reason"] == "sha256_mismatch"
    early = client.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
    assert early.status_code == 422 and early.get_json()["reason"] == "bytes_missing"
    # The interrupted upload is retried whole and succeeds.
    assert _upload(client, phone, att, data).status_code == 200


def test_retries_are_harmless_and_same_bytes_are_stored_once(env, device, client, db, app):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = jpeg(640, 480)
    first = photo_record(phone, iid, rid, data)
    second = photo_record(phone, iid, rid, data)
    phone.sync()
    assert _upload(client, phone, first, data).status_code == 200
    assert _upload(client, phone, first, data).status_code == 200  # whole flow again
    again = client.post(f"/api/v1/attachments/{first}/complete", headers=phone.headers())
    assert again.status_code == 200 and again.get_json()["uploaded"] is True
    sha = hashlib.sha256(data).hexdigest()
    resp = client.post(
        f"/api/v1/attachments/{second}/upload",
        headers=phone.headers(),
        json={"sha256": sha, "byte_size": len(data), "mime": "image/jpeg"},
    )
    assert resp.get_json() == {"already_uploaded": True}
    db.expire_all()
    assert db.get(Attachment, second).uploaded is True
    assert db.query(Blob).count() == 1


def test_upload_before_the_record_syncs(env, device, client, db):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = jpeg(500, 400)
    att = photo_record(phone, iid, rid, data)
    # Bytes first: the upload creates a pending record nobody else can see yet.
    assert _upload(client, phone, att, data).status_code == 200
    ben = device(BEN)
    assert client.get(f"/api/v1/attachments/{att}", headers=ben.headers()).status_code == 404
    phone.sync()  # now the metadata arrives
    db.expire_all()
    row = db.get(Attachment, att)
    assert row.uploaded is True and row.pending_upload is False and row.inspection_id == iid
    assert db.get(Inspection, iid).media_complete is True


def test_early_bytes_are_not_claimed_by_another_record(env, device, client, db):
    phone, ben = device(ANA), device(BEN)
    iid, rid = _failed_photo_inspection(phone, env)
    theirs, mine = jpeg(300, 200), jpeg(320, 240)
    guessed = uuid.uuid4().hex[:16]
    # Ben uploads bytes for an id nobody has pushed yet...
    assert _upload(client, ben, guessed, theirs).status_code == 200
    # ...then Ana's phone pushes a record with that id describing other bytes.
    photo_record(phone, iid, rid, mine, id=guessed)
    phone.sync()
    db.expire_all()
    row = db.get(Attachment, guessed)
    assert row.sha256 == hashlib.sha256(mine).hexdigest()
    assert row.uploaded is False and row.width is None and row.pending_upload is False
    assert db.get(Inspection, iid).media_complete is False
    # Ana's own bytes then complete it as usual.
    assert _upload(client, phone, guessed, mine).status_code == 200
    db.expire_all()
    assert db.get(Attachment, guessed).uploaded is True


def test_out_of_scope_attachment_is_404(env, device, client, api):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = png()
    att = photo_record(phone, iid, rid, data, mime="image/png")
    phone.sync()
    assert _upload(client, phone, att, data, mime="image/png").status_code == 200
    south = api.headers("south.manager@demo.example")
    assert client.get(f"/api/v1/attachments/{att}/file", headers=south).status_code == 404
    north = api.headers(NORTH)
    assert (
        client.get(f"/api/v1/attachments/{att}/file?variant=thumb", headers=north).status_code
        == 200
    )


def test_signature_strokes_and_stale_flag(env, device, client, db):
    from inspections.canonical import content_sha256
    from store.models import Response

    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.sync()
    db.expire_all()
    insp = db.get(Inspection, iid)
    responses = [
        dict(id=r.id, item_key=r.item_key, value=r.value, note=r.note, deleted_at=None)
        for r in db.query(Response).filter_by(inspection_id=iid)
    ]
    digest = content_sha256(
        {"template_id": insp.template_id, "site_id": insp.site_id, "area": insp.area}, responses
    )
    strokes = json.dumps([[[10, 10], [50, 40], [90, 10]]]).encode()
    sig = phone.create(
        "attachments",
        inspection_id=iid,
        kind="signature",
        sha256=hashlib.sha256(strokes).hexdigest(),
        mime="application/json",
        byte_size=len(strokes),
        signer_name="Site manager 王",
        signer_role="site_manager",
        signed_at=1_795_000_000_000,
        signed_content_sha256=digest,
    )
    phone.sync()
    done = _upload(client, phone, sig, strokes, mime="application/json")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["signature_stale"] is False
    png_resp = client.get(
        f"/api/v1/attachments/{sig}/file?variant=preview", headers=phone.headers()
    )
    assert png_resp.mimetype == "image/png" and png_resp.data.startswith(b"\x89PNG")
    # Changing an answer after signing makes the signature stale.
    rid = next(r["id"] for r in phone.live("responses").values() if r["item_key"] == "fridge")
    phone.sync()
    phone.update("responses", rid, value="4")
    phone.sync()
    db.expire_all()
    assert db.get(Attachment, sig).signature_stale is True


def test_s3_upload_uses_a_presigned_put_and_redirects_downloads(app, env, s3_endpoint, client):
    bucket = f"app-{uuid.uuid4().hex[:10]}"
    make_bucket(s3_endpoint, bucket)
    s3_app = create_app(
        {
            **app.config,
            "MEDIA_STORE": "s3",
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": s3_endpoint,
            "S3_REGION": "us-east-1",
        }
    )
    s3_client = s3_app.test_client()
    import urllib.request

    from tests.sync.device import Device

    token = s3_client.post(
        "/api/v1/auth/login", json={"email": ANA, "password": "demo-pass-2026"}
    ).get_json()["access_token"]
    phone = Device(s3_client, token, "s3-phone")
    iid, rid = _failed_photo_inspection(phone, env)
    data = jpeg(800, 600)
    att = photo_record(phone, iid, rid, data)
    phone.sync()
    sha = hashlib.sha256(data).hexdigest()
    plan = s3_client.post(
        f"/api/v1/attachments/{att}/upload",
        headers=phone.headers(),
        json={"sha256": sha, "byte_size": len(data), "mime": "image/jpeg"},
    )
    body = plan.get_json()
    assert body["url"].startswith(s3_endpoint) and "x-amz-checksum-sha256" in body["headers"]
    req = urllib.request.Request(body["url"], data=data, method="PUT", headers=body["headers"])
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    done = s3_client.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
    assert done.status_code == 200 and done.get_json()["uploaded"] is True
    got = s3_client.get(f"/api/v1/attachments/{att}/file?variant=thumb", headers=phone.headers())
    assert got.status_code == 302
    with urllib.request.urlopen(got.headers["Location"], timeout=10) as resp:
        assert Image.open(io.BytesIO(resp.read())).size == (320, 240)
    s3_app.extensions["db_engine"].dispose()


def test_unreachable_store_is_503_with_retry_after(app, env, device, client):
    dead = create_app(
        {
            **app.config,
            "MEDIA_STORE": "s3",
            "S3_BUCKET": "x",
            "S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "S3_REGION": "us-east-1",
        }
    )
    c = dead.test_client()
    token = c.post(
        "/api/v1/auth/login", json={"email": ANA, "password": "demo-pass-2026"}
    ).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Device-Id": "d"}
    data = jpeg(100, 100)
    att = uuid.uuid4().hex
    # Presigning needs no network, so the device gets its URL; completing needs the store.
    resp = c.post(
        f"/api/v1/attachments/{att}/upload",
        headers=headers,
        json={
            "sha256": hashlib.sha256(data).hexdigest(),
            "byte_size": len(data),
            "mime": "image/jpeg",
        },
    )
    assert resp.status_code == 200
    resp = c.post(f"/api/v1/attachments/{att}/complete", headers=headers)
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) > 0
    assert resp.get_json()["reason"] == "storage_unavailable"
    health = c.get("/api/v1/health")  # degraded, but still worth routing traffic to
    assert health.status_code == 200
    assert health.get_json() == {"status": "degraded", "database": "ok", "storage": "unavailable"}
    # Sync keeps working without the blob store.
    assert c.get("/api/v1/sync/pull", headers=headers).status_code == 200
    dead.extensions["db_engine"].dispose()


_ = _bomb_png


def test_bytes_before_their_record_reach_no_ones_pull(env, device, client, db):
    """A pending upload has no site: HQ's unscoped pull sent it (with no inspection), and the
    uploads' garbage collection could then drop it with no tombstone to follow."""
    phone, hq = device(ANA), device(HQ_EMAIL, "hq")
    iid, rid = _failed_photo_inspection(phone, env)
    phone.sync()
    hq.sync()
    data = jpeg(500, 400)
    att = photo_record(phone, iid, rid, data)
    assert _upload(client, phone, att, data).status_code == 200
    assert db.get(Attachment, att).pending_upload is True
    hq.sync()
    assert hq.get("attachments", att) is None
    fresh = device(HQ_EMAIL, "hq-new")
    fresh.sync()
    assert fresh.get("attachments", att) is None
    phone.sync()  # the record arrives: now everyone in scope pulls it, uploaded
    hq.sync()
    fresh.sync()
    for dev in (hq, fresh):
        got = dev.get("attachments", att)
        assert got is not None and got["inspection_id"] == iid and got["uploaded"] is True
