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


def _lost_preview(app, env, device, client):
    """A signature uploaded as a PNG whose preview the store has since lost. Returns the phone,
    the inspection and the attachment."""
    from media.uploads import derived_key

    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    data = png(300, 120)
    att = _signature(phone, iid, data)
    phone.sync()
    assert _upload(client, phone, att, data, mime="image/png").status_code == 200
    phone.sync()
    sha = hashlib.sha256(data).hexdigest()
    for variant in ("preview-png", "thumb-png"):
        app.extensions["blob_store"].delete(derived_key(sha, variant))
    return phone, iid, att


def _signature(phone, iid, data, mime="image/png"):
    return phone.create(
        "attachments",
        inspection_id=iid,
        kind="signature",
        sha256=hashlib.sha256(data).hexdigest(),
        mime=mime,
        byte_size=len(data),
        signer_name="王",
        signer_role="site_manager",
        signed_at=1_795_000_000_000,
    )


def test_a_variant_the_store_lacks_is_a_404_envelope(app, env, device, client, db):
    phone, _iid, att = _lost_preview(app, env, device, client)
    assert db.get(Attachment, att).kind == "signature"
    assert _fetch(client, phone, att, "original").status_code == 200
    resp = _fetch(client, phone, att, "preview")
    assert resp.status_code == 404, (resp.status_code, resp.get_data()[:200])
    body = resp.get_json()
    assert body["code"] == 404 and body["reason"] == "file_missing"
    assert "variant=original" in body["message"]


def test_the_pdf_report_goes_out_without_a_thumbnail_the_store_lacks(app, env, device, client):
    phone, iid, _att = _lost_preview(app, env, device, client)
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


def test_a_png_too_large_for_a_signature_uploaded_before_its_signature_record_is_not_uploaded(
    env, device, client, db
):
    """Bytes first: the pending record guessed "photo" and processed them as one (no signature
    variants). The record then says "signature": the bytes serve it only if they pass the
    signature's checks, else it stays not uploaded and uploading again says why."""
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    phone.sync()
    data = png(4100, 20)  # a fine photo, too wide for a signature (4000 px a side)
    sig = _signature(phone, iid, data)
    assert _upload(client, phone, sig, data, mime="image/png").status_code == 200
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    row = db.get(Attachment, sig)
    assert (row.kind, row.uploaded, row.width, row.height) == ("signature", False, None, None)
    assert _fetch(client, phone, sig, "preview").status_code == 404
    again = _upload(client, phone, sig, data, mime="image/png")
    body = again.get_json()
    assert again.status_code == 422 and body["reason"] == "too_large", body
    db.expire_all()
    assert db.get(Attachment, sig).uploaded is False


def test_a_signature_uploaded_before_its_record_as_a_small_png_stays_uploaded(
    env, device, client, db
):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    phone.sync()
    data = png(4000, 20)  # at the limit
    sig = _signature(phone, iid, data)
    assert _upload(client, phone, sig, data, mime="image/png").status_code == 200
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    row = db.get(Attachment, sig)
    assert (row.kind, row.uploaded, row.width, row.height) == ("signature", True, 4000, 20)
    assert _fetch(client, phone, sig, "preview").status_code == 200


def _uploaded_photo(env, device, client, data, mime):
    phone = device(ANA)
    phone.sync()
    iid = new_inspection(phone, env)
    att = photo_record(phone, iid, None, data, mime=mime)
    phone.sync()
    assert _upload(client, phone, att, data, mime=mime).status_code == 200
    phone.sync()
    return phone, att


def test_an_uploaded_photo_relabelled_a_signature_its_bytes_cannot_be_is_refused(
    env, device, client, db
):
    """A push relabelling an uploaded photo a signature: its verified bytes must pass the
    signature's checks (a PNG of at most 4000 px a side), or the server keeps it a photo and
    says why (invalid_value on kind), as it keeps an uploaded file's content."""
    for data, mime, why in (
        (png(4100, 20), "image/png", "4000"),
        (jpeg(400, 300), "image/jpeg", "PNG"),
    ):
        phone, att = _uploaded_photo(env, device, client, data, mime)
        phone.update("attachments", att, kind="signature", signer_name="王")
        conflicts = phone.sync()["conflicts"]
        assert [(c["kind"], c["column"]) for c in conflicts] == [("invalid_value", "kind")]
        assert why in conflicts[0]["detail"]
        db.expire_all()
        row = db.get(Attachment, att)
        assert (row.kind, row.uploaded, row.signer_name) == ("photo", True, "王")
        assert _fetch(client, phone, att, "preview").status_code == 200
        phone.sync()
        assert phone.get("attachments", att)["kind"] == "photo"  # the device's copy goes back


def test_an_uploaded_small_png_photo_relabelled_a_signature_serves_its_variants(
    env, device, client, db
):
    phone, att = _uploaded_photo(env, device, client, png(300, 120), "image/png")
    phone.update("attachments", att, kind="signature")
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert (db.get(Attachment, att).kind, db.get(Attachment, att).uploaded) == ("signature", True)
    resp = _fetch(client, phone, att, "preview")
    assert resp.status_code == 200 and resp.mimetype == "image/png"


def test_resolving_the_refused_relabel_with_the_devices_kind_is_refused_too(
    env, device, client, db, api
):
    """The refused relabel's conflict offers the device's value; taking it would make the same
    uploaded signature without signature variants."""
    from sqlalchemy import select

    from store.models import Conflict
    from tests.conftest import NORTH

    phone, att = _uploaded_photo(env, device, client, png(4100, 20), "image/png")
    phone.update("attachments", att, kind="signature")
    assert [c["column"] for c in phone.sync()["conflicts"]] == ["kind"]
    conflict = db.scalars(select(Conflict).where(Conflict.record_id == att)).one()
    resp = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "take_device"})
    body = resp.get_json()
    assert resp.status_code == 422 and body["reason"] == "not_resolvable", body
    assert "4000" in body["message"]
    db.expire_all()
    assert (db.get(Attachment, att).kind, db.get(Attachment, att).uploaded) == ("photo", True)
