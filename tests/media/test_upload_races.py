"""Completions racing each other on PostgreSQL: a double tap on the same upload, and two uploads
of the same bytes, complete once each; neither loses the photo nor answers an error."""

from __future__ import annotations

import hashlib
import threading
import uuid

import pytest

from media import images
from store.models import Attachment, Blob
from tests.conftest import ANA, TEST_DATABASE_URL
from tests.media.conftest import jpeg
from tests.media.test_upload_flow import _upload
from tests.sync.test_parent_locks import _waits_for_a_lock

pytestmark = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="SQLite writers take the one write lock at BEGIN: they never overlap",
)


def _photo() -> bytes:
    return jpeg(160, 120, taken=uuid.uuid4().hex)


def _complete_in_thread(app, dev, att_id: str, out: dict, name: str) -> threading.Thread:
    """POST /complete from a thread of its own; the response lands in out[name]."""

    def run() -> None:
        try:
            with app.test_client() as c:
                out[name] = c.post(f"/api/v1/attachments/{att_id}/complete", headers=dev.headers())
        except Exception as exc:  # reported by the assertions
            out["error"] = repr(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_a_double_tap_on_complete_completes_once_and_both_succeed(
    app, env, device, client, db, monkeypatch
):
    """The phone sends POST /complete twice at once (a retry after a timeout) for bytes that
    came before their record: the second read the upload's own copy after the first had
    deleted it, and told the phone its bytes never arrived (422 bytes_missing) although the
    first was storing them."""
    phone = device(ANA)
    data = _photo()
    att = uuid.uuid4().hex[:16]
    assert _upload(client, phone, att, data, complete=False).status_code == 200

    processing, release = threading.Event(), threading.Event()
    real = images.process_image

    def slow(*args, **kwargs):
        if threading.current_thread().name == "first":
            processing.set()
            release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "process_image", slow)
    out: dict = {}
    first = _complete_in_thread(app, phone, att, out, "first")
    assert processing.wait(20)
    second = _complete_in_thread(app, phone, att, out, "second")
    _waits_for_a_lock(app.extensions["db_engine"], second)
    release.set()
    first.join(30)
    second.join(30)
    assert "error" not in out, out
    for name in ("first", "second"):
        assert out[name].status_code == 200, (name, out[name].get_json())
        assert out[name].get_json()["uploaded"] is True
    got = client.get(f"/api/v1/attachments/{att}/file", headers=phone.headers())
    assert got.status_code == 200 and got.data == data


def test_two_uploads_of_the_same_new_photo_completing_at_once_both_succeed(
    app, env, device, client, db, monkeypatch
):
    """The same photo sent for two records at once (a phone's parallel upload queue, the photo
    of a failed item that is also its action's evidence): both found no processed blob, both
    inserted it, and the second answered 409 integrity_conflict, its copy already deleted."""
    from api.blueprints import attachments as endpoints

    phone = device(ANA)
    data = _photo()
    one, two = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    for att in (one, two):
        assert _upload(client, phone, att, data, complete=False).status_code == 200

    committed, release = threading.Event(), threading.Event()
    recompute = endpoints.recompute_inspection

    def held(session, attachment_id):
        if attachment_id == one:  # the first has inserted the blob; it commits later
            committed.set()
            release.wait(20)
        recompute(session, attachment_id)

    monkeypatch.setattr(endpoints, "recompute_inspection", held)
    out: dict = {}
    first = _complete_in_thread(app, phone, one, out, one)
    assert committed.wait(20)
    second = _complete_in_thread(app, phone, two, out, two)
    _waits_for_a_lock(app.extensions["db_engine"], second)
    release.set()
    first.join(30)
    second.join(30)
    assert "error" not in out, out
    for att in (one, two):
        assert out[att].status_code == 200, out[att].get_json()
    db.expire_all()
    assert db.get(Blob, hashlib.sha256(data).hexdigest()).has_derivatives is True
    for att in (one, two):
        assert db.get(Attachment, att).uploaded is True
        got = client.get(f"/api/v1/attachments/{att}/file", headers=phone.headers())
        assert got.status_code == 200 and got.data == data


def test_gc_leaves_an_old_upload_being_completed_alone(app, env, device, client, db, monkeypatch):
    """A phone requested an upload days ago (the PUT failed, the phone went offline) and
    completes it while cron runs `media gc`: gc took it for abandoned, deleted the original the
    completion had just stored and then the record itself (bytes before their record), so the
    photo was reported uploaded and lost."""
    import datetime as dt

    from sqlalchemy import update

    from api import db as api_db
    from api.media import blob_store
    from media import uploads

    phone = device(ANA)
    data = _photo()
    att = uuid.uuid4().hex[:16]
    assert _upload(client, phone, att, data, complete=False).status_code == 200
    db.execute(
        update(Attachment)
        .where(Attachment.id == att)
        .values(upload_requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    )
    db.commit()

    processing, release = threading.Event(), threading.Event()
    real = images.process_image

    def slow(*args, **kwargs):
        processing.set()
        release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "process_image", slow)
    out: dict = {}
    completing = _complete_in_thread(app, phone, att, out, "complete")
    assert processing.wait(20)

    def run_gc() -> None:
        try:
            with app.app_context():
                out["gc"] = uploads.gc(api_db.session(), blob_store(), dt.timedelta(days=1))
                api_db.commit()
        except Exception as exc:  # reported by the assertions
            out["error"] = repr(exc)

    collecting = threading.Thread(target=run_gc)
    collecting.start()
    _waits_for_a_lock(app.extensions["db_engine"], collecting)
    release.set()
    completing.join(30)
    collecting.join(30)
    assert "error" not in out, out
    assert out["complete"].status_code == 200, out["complete"].get_json()
    db.expire_all()
    assert db.get(Attachment, att) is not None and db.get(Attachment, att).uploaded is True
    got = client.get(f"/api/v1/attachments/{att}/file", headers=phone.headers())
    assert got.status_code == 200 and got.data == data


def test_a_dedupe_racing_a_push_of_new_bytes_does_not_mark_them_uploaded(
    app, env, device, client, db
):
    """The phone retook a photo: its push names the new bytes while its upload queue still asks
    to upload the old ones, which it already sent for another record. The upload decided on the
    record as it read it before waiting for the inspection, and marked the record uploaded over
    the new sha256: `uploaded` with no such bytes on the server, so the new photo was never
    asked for and the evidence was lost."""
    from sqlalchemy import select, text

    from store.models import Inspection
    from tests.media.test_upload_flow import _failed_photo_inspection
    from tests.sync_env import photo_record

    phone = device(ANA)
    iid, rid = _failed_photo_inspection(phone, env)
    old, new = _photo(), _photo()
    first = photo_record(phone, iid, rid, old)
    second = photo_record(phone, iid, rid, old)
    phone.sync()
    assert _upload(client, phone, first, old).status_code == 200

    engine = app.extensions["db_engine"]
    out: dict = {}

    def ask() -> None:
        with app.test_client() as c:
            out["r"] = c.post(
                f"/api/v1/attachments/{second}/upload",
                headers=phone.headers(),
                json={
                    "sha256": hashlib.sha256(old).hexdigest(),
                    "byte_size": len(old),
                    "mime": "image/jpeg",
                },
            )

    with engine.connect() as push:  # the push of the retaken photo holds the inspection
        push.execute(select(Inspection.id).where(Inspection.id == iid).with_for_update())
        asking = threading.Thread(target=ask)
        asking.start()
        assert _waits_for_a_lock(engine, asking)
        push.execute(
            text("UPDATE attachments SET sha256 = :s, byte_size = :n WHERE id = :i"),
            {"s": hashlib.sha256(new).hexdigest(), "n": len(new), "i": second},
        )
        push.commit()
    asking.join(30)
    db.expire_all()
    row = db.get(Attachment, second)
    assert row.sha256 == hashlib.sha256(new).hexdigest()
    assert row.uploaded is False, out["r"].get_json()
    assert out["r"].status_code == 409, out["r"].get_json()
