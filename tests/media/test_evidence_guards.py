"""Guards of the evidence pipeline: served types, proof of possession, shared bytes, stores."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from api import create_app
from api import db as api_db
from api.media import blob_store
from media import uploads
from media.signatures import SignatureRejected, render_strokes
from media.storage import S3BlobStore, StoreUnavailable
from store.models import Attachment
from tests.conftest import ANA, BEN
from tests.media.conftest import jpeg
from tests.media.test_upload_flow import _failed_photo_inspection, _upload
from tests.sync.device import Device
from tests.sync_env import answer, new_inspection, photo_record

POLYGLOT_TAIL = b"<html><script>alert(document.cookie)</script></html>"


def _photo(width, height):
    """A JPEG no other test uploads: blobs are shared by hash across the session."""
    return jpeg(width, height, taken=uuid.uuid4().hex)


def _south_photo(device, env, data):
    """Ben's photo record at S-HOTEL, outside Ana's scope; returns Ben's device and its id."""
    ben = device(BEN)
    ben.sync()
    iid = new_inspection(ben, env, site="S-HOTEL")
    rid = answer(ben, iid, "clean", "no")
    answer(ben, iid, "fridge", 3)
    att = photo_record(ben, iid, rid, data)
    ben.sync()
    return ben, att


def _ask(client, dev, att_id, data, mime="image/jpeg", byte_size=None):
    return client.post(
        f"/api/v1/attachments/{att_id}/upload",
        headers=dev.headers(),
        json={
            "sha256": hashlib.sha256(data).hexdigest(),
            "byte_size": len(data) if byte_size is None else byte_size,
            "mime": mime,
        },
    )


def _signature(phone, iid, data, mime="image/png"):
    return phone.create(
        "attachments",
        inspection_id=iid,
        kind="signature",
        sha256=hashlib.sha256(data).hexdigest(),
        mime=mime,
        byte_size=len(data),
        signer_name="X",
        signer_role="site_manager",
        signed_at=1_795_000_000_000,
    )


# --- 1. served types -------------------------------------------------------------------


def _uploaded_then_claiming_html(app, env, device, client):
    """An uploaded polyglot JPEG whose record then claims text/html (legacy data, or an edit
    that slipped through): the phone and the attachment id."""
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = _photo(64, 48) + POLYGLOT_TAIL
    att = photo_record(phone, iid, rid, data)
    phone.sync()
    assert _upload(client, phone, att, data).status_code == 200
    with app.app_context():
        api_db.session().get(Attachment, att).mime = "text/html"
        api_db.commit()
    return phone, att


def test_original_is_served_as_its_verified_type_not_the_record_claim(app, env, device, client):
    phone, att = _uploaded_then_claiming_html(app, env, device, client)
    got = client.get(f"/api/v1/attachments/{att}/file", headers=phone.headers())
    assert got.status_code == 200 and got.mimetype == "image/jpeg"
    assert got.headers["X-Content-Type-Options"] == "nosniff"


def test_presigned_download_is_bound_to_the_verified_type(app, env, device, client, monkeypatch):
    phone, att = _uploaded_then_claiming_html(app, env, device, client)
    asked = []
    store = app.extensions["blob_store"]
    monkeypatch.setattr(
        store, "presign_get", lambda key, expires, mime=None: asked.append(mime) or "http://s3/x"
    )
    got = client.get(f"/api/v1/attachments/{att}/file", headers=phone.headers())
    assert got.status_code == 302 and asked == ["image/jpeg"]


def test_a_record_claiming_html_does_not_dedupe_onto_stored_bytes(env, device, client, db):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = _photo(64, 48) + POLYGLOT_TAIL
    first = photo_record(phone, iid, rid, data)
    second = photo_record(phone, iid, rid, data, mime="text/html")
    phone.sync()
    assert _upload(client, phone, first, data).status_code == 200
    resp = _ask(client, phone, second, data)
    assert resp.status_code == 409 and resp.get_json()["reason"] == "mime_mismatch"
    db.expire_all()
    assert db.get(Attachment, second).uploaded is False


# --- 2. dedupe needs the bytes, not just their hash ------------------------------------


def test_naming_a_hash_outside_your_scope_does_not_hand_out_the_photo(env, device, client):
    secret = _photo(300, 200)
    ben, theirs = _south_photo(device, env, secret)
    assert _upload(client, ben, theirs, secret).status_code == 200
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    att = photo_record(phone, iid, rid, secret)
    phone.sync()
    plan = _ask(client, phone, att, secret)
    assert plan.status_code == 200 and "url" in plan.get_json()  # not already_uploaded
    done = client.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
    assert done.status_code == 422 and done.get_json()["reason"] == "bytes_missing"
    got = client.get(f"/api/v1/attachments/{att}/file", headers=phone.headers())
    assert got.status_code == 404
    # Holding the bytes is proof enough: PUT them and the upload completes.
    body = plan.get_json()
    put = client.put(body["url"], data=secret, headers={**phone.headers(), **body["headers"]})
    assert put.status_code == 200
    done = client.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
    assert done.status_code == 200 and done.get_json()["uploaded"] is True


def test_dedupe_refuses_a_size_other_than_the_known_bytes(env, device, client, db):
    data = _photo(300, 200)
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    first = photo_record(phone, iid, rid, data)
    second = phone.create(
        "attachments",
        inspection_id=iid,
        response_id=rid,
        kind="photo",
        sha256=hashlib.sha256(data).hexdigest(),
        mime="image/jpeg",
        byte_size=7,
    )
    phone.sync()
    assert _upload(client, phone, first, data).status_code == 200
    resp = _ask(client, phone, second, data, byte_size=7)
    assert resp.status_code == 409 and resp.get_json()["reason"] == "size_mismatch"
    db.expire_all()
    assert db.get(Attachment, second).uploaded is False


# --- 3. a refused record does not delete shared bytes ----------------------------------


def test_a_refused_record_does_not_delete_bytes_another_upload_needs(env, device, client):
    secret = _photo(300, 200)
    ben, theirs = _south_photo(device, env, secret)
    _upload(client, ben, theirs, secret, complete=False)
    phone = device(ANA)
    mine = uuid.uuid4().hex[:16]
    assert _ask(client, phone, mine, secret, byte_size=5).status_code == 200
    refused = client.post(f"/api/v1/attachments/{mine}/complete", headers=phone.headers())
    assert refused.status_code == 422
    done = client.post(f"/api/v1/attachments/{theirs}/complete", headers=ben.headers())
    assert done.status_code == 200, done.get_json()


# --- 4. gc spares bytes of live uploads ------------------------------------------------


def test_gc_spares_bytes_a_live_upload_of_the_same_photo_needs(app, env, device, client):
    phone, tablet = device(ANA), device(ANA, "tablet")
    iid, rid = _failed_photo_inspection(phone, env)
    data = _photo(300, 200)
    old = photo_record(phone, iid, rid, data)
    phone.sync()
    _upload(client, phone, old, data, complete=False)
    with app.app_context():
        api_db.session().get(Attachment, old).upload_requested_at = dt.datetime(
            2020, 1, 1, tzinfo=dt.UTC
        )
        api_db.commit()
    tablet.sync()
    new = photo_record(tablet, iid, rid, data)
    tablet.sync()
    _upload(client, tablet, new, data, complete=False)
    with app.app_context():
        uploads.gc(api_db.session(), blob_store(), dt.timedelta(days=1))
        api_db.commit()
    done = client.post(f"/api/v1/attachments/{new}/complete", headers=tablet.headers())
    assert done.status_code == 200, done.get_json()


# --- 5. signature derivatives carry no metadata ----------------------------------------


def test_signature_png_preview_and_thumb_carry_no_gps(env, device, client):
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (31.0, 13.0, 49.0), 3: "E", 4: (121.0, 28.0, 25.0)})
    out = io.BytesIO()
    Image.new("RGB", (400, 150), (255, 255, 255)).save(out, "PNG", exif=exif.tobytes())
    data = out.getvalue()
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    sig = _signature(phone, iid, data)
    phone.sync()
    assert _upload(client, phone, sig, data, mime="image/png").status_code == 200
    for variant in ("preview", "thumb"):
        got = client.get(
            f"/api/v1/attachments/{sig}/file?variant={variant}", headers=phone.headers()
        )
        assert got.status_code == 200 and got.mimetype == "image/png"
        img = Image.open(io.BytesIO(got.data))
        assert not img.getexif() and "exif" not in img.info
        assert img.size == (400, 150)


# --- 6. inspectors upload only for their own inspections -------------------------------


def test_another_inspector_cannot_supply_the_bytes_of_a_record(env, device, client, db):
    phone, ben = device(ANA), device(BEN)
    iid, rid = _failed_photo_inspection(phone, env)
    att = phone.create(
        "attachments", inspection_id=iid, response_id=rid, kind="photo", mime="image/jpeg"
    )
    phone.sync()
    ben.sync()
    bens = _photo(320, 240)
    resp = _ask(client, ben, att, bens)
    assert resp.status_code in (403, 404), resp.get_json()
    assert resp.get_json()["message"]
    db.expire_all()
    row = db.get(Attachment, att)
    assert row.sha256 is None and row.uploaded is False


# --- 7. multi-picture JPEGs -------------------------------------------------------------


def test_multi_picture_jpeg_is_processed_as_its_first_frame(env, device, client):
    out = io.BytesIO()
    first = Image.new("RGB", (200, 100), (255, 0, 0))
    first.save(out, "MPO", save_all=True, append_images=[Image.new("RGB", (200, 100))])
    data = out.getvalue()
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    att = photo_record(phone, iid, rid, data)
    phone.sync()
    done = _upload(client, phone, att, data)
    assert done.status_code == 200, done.get_data(as_text=True)[:300]
    assert (done.get_json()["width"], done.get_json()["height"]) == (200, 100)
    thumb = client.get(f"/api/v1/attachments/{att}/file?variant=thumb", headers=phone.headers())
    assert thumb.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.data)).convert("RGB").getpixel((5, 5))[0] > 200


# --- 8. S3 faults are 503 --------------------------------------------------------------


class _S3Faults(BaseHTTPRequestHandler):
    """HEAD: an object of 1000 bytes. GET on "drop": 10 of them, then the connection
    drops. Other GETs and PUTs: S3's 500 InternalError."""

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()

    def do_GET(self):
        if "drop" in self.path:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            return
        self._internal_error()

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._internal_error()

    def _internal_error(self):
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
            b"<Message>We encountered an internal error. Please try again.</Message></Error>"
        )
        self.send_response(500)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def faulty_s3():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _S3Faults)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_s3_internal_error_and_dropped_body_are_store_unavailable(faulty_s3):
    store = S3BlobStore("b", endpoint_url=faulty_s3, region="us-east-1")
    for call in (lambda: store.get("blobs/aa/x"), lambda: store.put("blobs/aa/x", b"abc")):
        with pytest.raises(StoreUnavailable):
            call()
    with pytest.raises(StoreUnavailable):
        store.get("blobs/aa/drop")


def test_complete_against_a_failing_s3_is_503_with_retry_after(app, env, faulty_s3):
    flaky = create_app(
        {
            **app.config,
            "MEDIA_STORE": "s3",
            "S3_BUCKET": "b",
            "S3_ENDPOINT_URL": faulty_s3,
            "S3_REGION": "us-east-1",
        }
    )
    try:
        c = flaky.test_client()
        login = c.post("/api/v1/auth/login", json={"email": ANA, "password": "demo-pass-2026"})
        phone = Device(c, login.get_json()["access_token"], "flaky")
        iid, rid = _failed_photo_inspection(phone, env)
        data = b"x" * 1000  # the size the fake store reports
        att = photo_record(phone, iid, rid, data)
        phone.sync()
        assert _ask(c, phone, att, data).status_code == 200
        done = c.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
        assert done.status_code == 503 and done.headers.get("Retry-After")
        assert done.get_json()["reason"] == "storage_unavailable"
    finally:
        flaky.extensions["db_engine"].dispose()


# --- 9. absurd stroke JSON ---------------------------------------------------------------


def test_bytes_in_flight_are_not_handed_to_whoever_names_their_hash(env, device, client, db):
    """Ana has PUT a photo but not completed it; Ben, who cannot see her site, names its hash
    for an upload of his own: completing it used to process her bytes as his evidence (and her
    own completion then failed). Now each upload completes only from what it sent itself."""
    ana, ben = device(ANA), device(BEN)
    ana.sync()
    iid = new_inspection(ana, env, site="N-CANTEEN")  # not one of Ben's sites
    secret = _photo(320, 240)
    att = photo_record(ana, iid, None, secret)
    ana.sync()
    assert _upload(client, ana, att, secret, complete=False).status_code == 200
    fishing = uuid.uuid4().hex[:16]
    plan = _ask(client, ben, fishing, secret)
    assert plan.status_code == 200 and "url" in plan.get_json()
    done = client.post(f"/api/v1/attachments/{fishing}/complete", headers=ben.headers())
    assert done.status_code == 422 and done.get_json()["reason"] == "bytes_missing"
    assert (
        client.get(f"/api/v1/attachments/{fishing}/file", headers=ben.headers()).status_code != 200
    )
    mine = client.post(f"/api/v1/attachments/{att}/complete", headers=ana.headers())
    assert mine.status_code == 200 and mine.get_json()["uploaded"] is True
    done = client.post(f"/api/v1/attachments/{fishing}/complete", headers=ben.headers())
    assert done.status_code == 422 and done.get_json()["reason"] == "bytes_missing"
    assert (
        client.get(f"/api/v1/attachments/{fishing}/file", headers=ben.headers()).status_code != 200
    )


def test_two_uploads_of_the_same_photo_complete_in_either_order(env, device, client, db):
    """Both hold the bytes: whichever completes first makes the original, the other's copy is
    checked against it; neither has to upload again."""
    ana, ben = device(ANA), device(BEN)
    ana.sync()
    ben.sync()
    data = _photo(300, 200)
    first = photo_record(ana, new_inspection(ana, env), None, data)
    second = photo_record(ben, new_inspection(ben, env), None, data)
    ana.sync()
    ben.sync()
    assert _upload(client, ana, first, data, complete=False).status_code == 200
    assert _upload(client, ben, second, data, complete=False).status_code == 200
    for dev, att in ((ben, second), (ana, first)):
        done = client.post(f"/api/v1/attachments/{att}/complete", headers=dev.headers())
        assert done.status_code == 200 and done.get_json()["uploaded"] is True
        got = client.get(f"/api/v1/attachments/{att}/file", headers=dev.headers())
        assert got.status_code == 200 and got.data == data


def test_deeply_nested_strokes_are_rejected_not_a_crash():
    with pytest.raises(SignatureRejected) as info:
        render_strokes(b"[" * 200_000 + b"]" * 200_000)
    assert info.value.reason == "bad_strokes"


def test_deeply_nested_strokes_upload_is_422(env, device, client):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    strokes = b"[" * 200_000 + b"]" * 200_000
    sig = _signature(phone, iid, strokes, mime="application/json")
    phone.sync()
    done = _upload(client, phone, sig, strokes, mime="application/json")
    assert done.status_code == 422 and done.get_json()["reason"] == "bad_strokes"


def test_a_signature_png_declaring_hundreds_of_millions_of_pixels_is_422(env, device, client):
    """A few KB of PNG declaring 20000 x 20001 pixels: Pillow will not open it at all (it was a
    500); as a photo it is a decompression bomb, as a signature too large."""
    out = io.BytesIO()
    Image.new("1", (20000, 20001)).save(out, "PNG")
    data = out.getvalue()
    assert len(data) < 100_000
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    sig = _signature(phone, iid, data)
    phone.sync()
    done = _upload(client, phone, sig, data, mime="image/png")
    assert done.status_code == 422 and done.get_json()["reason"] == "too_large"


# --- 10. size before reading -------------------------------------------------------------


def test_complete_refuses_an_oversized_object_without_reading_it(app, env, device, client):
    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    data = _photo(64, 48)
    att = photo_record(phone, iid, rid, data)
    phone.sync()
    assert _ask(client, phone, att, data).status_code == 200
    store = app.extensions["blob_store"]
    sha = hashlib.sha256(data).hexdigest()
    store.put(uploads.staged_key(sha, att), b"\0" * (1024 * 1024))  # a store that did not check
    reads = []
    real_get = store.get
    store.get = lambda key: reads.append(key) or real_get(key)
    try:
        done = client.post(f"/api/v1/attachments/{att}/complete", headers=phone.headers())
    finally:
        del store.get
    assert done.status_code == 422 and done.get_json()["reason"] == "size_mismatch"
    assert reads == []


# --- 11. attachment ids --------------------------------------------------------------------


def test_overlong_attachment_ids_are_client_errors(env, device, client):
    phone = device(ANA)
    data = _photo(64, 48)
    long_id = "a" * 100
    resp = _ask(client, phone, long_id, data)
    assert resp.status_code == 422 and "id" in resp.get_json()["errors"]
    for method, path in (
        ("post", "complete"),
        ("put", "content"),
        ("get", "file"),
    ):
        got = getattr(client, method)(
            f"/api/v1/attachments/{long_id}/{path}", headers=phone.headers()
        )
        assert got.status_code == 404, (path, got.status_code)


# --- 12. body limit vs upload limit ----------------------------------------------------------


def test_a_photo_accepted_for_upload_can_be_put(app, env, device, client):
    assert app.config["MAX_UPLOAD_BYTES"] > app.config["MAX_CONTENT_LENGTH"]
    size = app.config["MAX_CONTENT_LENGTH"] + 1024
    data = os.urandom(size)
    phone = device(ANA)
    att = uuid.uuid4().hex[:16]
    plan = _ask(client, phone, att, data)
    assert plan.status_code == 200, plan.get_json()
    put = client.put(
        plan.get_json()["url"], data=data, headers={**phone.headers(), "Content-Type": "image/jpeg"}
    )
    assert put.status_code == 200, (put.status_code, put.get_json())
    # Other request bodies keep the smaller limit.
    big = json.dumps({"x": "y" * size})
    resp = client.post(
        f"/api/v1/attachments/{att}/upload",
        data=big,
        headers={**phone.headers(), "Content-Type": "application/json"},
    )
    assert resp.status_code == 413


def test_attachment_ids_with_a_trailing_newline_are_not_ids(env, device, client):
    # A regex `$` also matches before a final newline: "abc%0A" must not reach the store.
    phone = device(ANA)
    resp = _ask(client, phone, "abc%0A", _photo(64, 48))
    assert resp.status_code == 422 and "id" in resp.get_json()["errors"]
    for method, path in (("post", "complete"), ("put", "content"), ("get", "file")):
        got = getattr(client, method)(f"/api/v1/attachments/abc%0A/{path}", headers=phone.headers())
        assert got.status_code == 404, (path, got.status_code)
