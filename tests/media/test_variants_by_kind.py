"""Variants follow the kind a record gives when they are fetched, not the kind guessed when
the bytes were processed; a variant the store lacks is a 404, never a 500."""

from __future__ import annotations

import hashlib

from store.models import Attachment
from tests.conftest import ANA, BEN
from tests.media.conftest import jpeg, png
from tests.media.test_upload_flow import _upload
from tests.sync_env import new_inspection, photo_record


def _fetch(client, dev, att_id, variant):
    return client.get(f"/api/v1/attachments/{att_id}/file?variant={variant}", headers=dev.headers())


def test_png_signature_uploaded_before_its_record_serves_every_variant(env, device, client, db):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    phone.sync()
    data = png(300, 120)
    sig = phone.create(
        "attachments",
        inspection_id=iid,
        kind="signature",
        sha256=hashlib.sha256(data).hexdigest(),
        mime="image/png",
        byte_size=len(data),
        signer_name="王",
        signer_role="site_manager",
        signed_at=1_795_000_000_000,
    )
    # Bytes first: the pending record guesses "photo" until the record says "signature".
    done = _upload(client, phone, sig, data, mime="image/png")
    assert done.status_code == 200, done.get_json()
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    row = db.get(Attachment, sig)
    assert (row.kind, row.uploaded) == ("signature", True)
    for variant in ("original", "preview", "thumb"):
        resp = _fetch(client, phone, sig, variant)
        assert resp.status_code == 200, (variant, resp.status_code, resp.get_data()[:200])
        assert resp.mimetype == "image/png"
    assert _fetch(client, phone, sig, "preview").data == data


def _relabelled(env, device, client):
    """A photo uploaded as a JPEG, then relabelled a signature: its PNG variants were never
    made. Returns the phone, the inspection and the attachment."""
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    data = jpeg(400, 300)
    att = photo_record(phone, iid, None, data)
    phone.sync()
    assert _upload(client, phone, att, data).status_code == 200
    phone.sync()
    phone.update("attachments", att, kind="signature")
    assert phone.sync()["conflicts"] == []
    return phone, iid, att


def test_a_variant_the_store_lacks_is_a_404_envelope(env, device, client, db):
    phone, _iid, att = _relabelled(env, device, client)
    assert db.get(Attachment, att).kind == "signature"
    assert _fetch(client, phone, att, "original").status_code == 200
    resp = _fetch(client, phone, att, "preview")
    assert resp.status_code == 404, (resp.status_code, resp.get_data()[:200])
    body = resp.get_json()
    assert body["code"] == 404 and body["reason"] == "file_missing"
    assert "variant=original" in body["message"]


def test_the_pdf_report_goes_out_without_a_thumbnail_the_store_lacks(env, device, client):
    phone, iid, _att = _relabelled(env, device, client)
    resp = client.get(f"/api/v1/inspections/{iid}/report.pdf", headers=phone.headers())
    assert resp.status_code == 200, resp.get_data()[:300]
    assert resp.mimetype == "application/pdf" and resp.data.startswith(b"%PDF")


def test_a_photos_png_too_large_for_a_signature_does_not_become_one(env, device, client, db):
    """Bytes already processed as a photo serve a signature record only if they pass the
    signature's own checks, whether the user holds them already or uploads them again."""
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env, site="N-CANTEEN")  # a site Ben does not see
    data = png(4100, 20)
    photo = photo_record(phone, iid, None, data, mime="image/png")
    phone.sync()
    assert _upload(client, phone, photo, data, mime="image/png").status_code == 200
    for who in (phone, device(BEN)):  # holds the bytes already; proves it by uploading
        who.sync()
        sig = who.create(
            "attachments",
            inspection_id=new_inspection(
                who, env, site="S-HOTEL" if who is not phone else "N-HOTEL"
            ),
            kind="signature",
            sha256=hashlib.sha256(data).hexdigest(),
            mime="image/png",
            byte_size=len(data),
            signer_name="王",
            signer_role="site_manager",
            signed_at=1_795_000_000_000,
        )
        assert who.sync()["conflicts"] == []
        ask = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "byte_size": len(data),
            "mime": "image/png",
        }
        url = f"/api/v1/attachments/{sig}"
        resp = client.post(f"{url}/upload", headers=who.headers(), json=ask)
        if who is not phone:
            put = resp.get_json()
            client.put(put["url"], data=data, headers={**who.headers(), **put["headers"]})
            resp = client.post(f"{url}/complete", headers=who.headers())
        body = resp.get_json()
        assert resp.status_code == 422 and body["reason"] == "too_large", body
        assert "4000" in body["message"]
        db.expire_all()
        assert db.get(Attachment, sig).uploaded is False
