"""Housekeeping commands: tombstone purge (old cursors get a replacement), idempotency
retention, and the garbage collection of uploads that never completed."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time

import pytest
from sqlalchemy import select, text, update

from media import uploads
from store.models import (
    Action,
    Attachment,
    Conflict,
    IdempotencyRecord,
    Inspection,
    Site,
    SiteAssignment,
    SyncCounter,
)
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, TEST_DATABASE_URL
from tests.media.conftest import jpeg
from tests.sync_env import action_with_photo, new_inspection


def test_purge_then_an_old_cursor_gets_a_replacement(app, env, device, db):
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    gone = new_inspection(a, env)
    kept = new_inspection(a, env)
    a.sync()
    b.sync()
    old_cursor = b.last_pulled_at
    a.delete("inspections", gone)
    a.sync()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    db.execute(update(Inspection).where(Inspection.id == gone).values(deleted_at=long_ago))
    result = app.test_cli_runner().invoke(args=["sync", "purge"])
    assert result.exit_code == 0 and "purged 1 tombstones" in result.output
    assert db.get(Inspection, gone) is None
    # b's cursor predates the purge: it gets the full dataset as a replacement and drops the
    # record whose tombstone it can no longer be sent.
    resp = b.client.get(
        "/api/v1/sync/pull", query_string={"last_pulled_at": old_cursor}, headers=b.headers()
    )
    body = resp.get_json()
    assert body["experimentalStrategy"] == "replacement"
    assert {r["id"] for r in body["changes"]["inspections"]["updated"]} == {kept}
    b.sync()
    assert b.get("inspections", gone) is None and b.get("inspections", kept) is not None
    # Once a device has pulled past the purge it syncs incrementally again.
    a.sync()
    fresh = a.client.get(
        "/api/v1/sync/pull", query_string={"last_pulled_at": a.last_pulled_at}, headers=a.headers()
    ).get_json()
    assert "experimentalStrategy" not in fresh


def test_paged_syncs_after_a_purge_end_and_converge(app, env, device, db):
    # After a purge, the cursors handed out mid-way through a first sync (or a replacement)
    # are older than the purged tombstones too: they must continue the sync, not restart it.
    a = device(ANA, "a")
    a.sync()
    created = [new_inspection(a, env) for _ in range(5)]
    a.sync()
    old = device(ANA, "old", limit=2)
    old.sync()
    gone = created[0]
    a.delete("inspections", gone)
    a.sync()
    for _ in range(3):
        new_inspection(a, env)
    a.sync()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    db.execute(update(Inspection).where(Inspection.id == gone).values(deleted_at=long_ago))
    assert app.test_cli_runner().invoke(args=["sync", "purge"]).exit_code == 0
    fresh = device(ANA, "fresh", limit=2)
    fresh.sync()
    old.sync()  # its cursor predates the purge: a replacement, in pages of two
    whole = device(ANA, "whole")
    whole.sync()
    assert old.get("inspections", gone) is None
    assert fresh.snapshot() == whole.snapshot() == old.snapshot()
    assert len(whole.live("inspections")) == 7


def test_idempotency_records_expire(app, env, device, db, client):
    phone = device(ANA)
    cursor = phone.pull()
    client.post(
        "/api/v1/sync/push",
        headers=phone.headers(**{"Idempotency-Key": "old"}),
        json={"changes": {}, "last_pulled_at": cursor},
    )
    assert db.query(IdempotencyRecord).count() == 1
    db.execute(
        update(IdempotencyRecord).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=90))
    )
    result = app.test_cli_runner().invoke(args=["sync", "purge"])
    assert "1 idempotency records" in result.output
    assert db.query(IdempotencyRecord).count() == 0


def test_media_gc_removes_uploads_that_never_completed(app, env, device, client, db):
    phone = device(ANA)
    data = jpeg(200, 100)
    sha = hashlib.sha256(data).hexdigest()
    resp = client.post(
        "/api/v1/attachments/never-done/upload",
        headers=phone.headers(),
        json={"sha256": sha, "byte_size": len(data), "mime": "image/jpeg"},
    )
    assert resp.status_code == 200
    client.put(resp.get_json()["url"], data=data, headers=phone.headers())
    store = app.extensions["blob_store"]
    sent = uploads.staged_key(sha, "never-done")  # each upload PUTs its own copy
    assert store.exists(sent)
    db.execute(
        update(Attachment).values(
            upload_requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
        )
    )
    result = app.test_cli_runner().invoke(args=["media", "gc"])
    assert result.exit_code == 0, result.output
    assert "objects deleted: 1" in result.output and "pending records deleted: 1" in result.output
    assert not store.exists(sent) and not store.exists(uploads.original_key(sha))
    assert db.get(Attachment, "never-done") is None


def test_expired_sign_ins_are_purged_and_live_ones_kept(app, api, db, demo_org):
    """Refresh tokens and console sign-ins past their expiry go; live ones (spent ones too,
    needed to detect reuse) stay, and signing in still works."""
    from store.models import RefreshToken

    api.headers(ANA)  # a sign-in: one live refresh token
    live = {t.jti for t in db.query(RefreshToken)}
    user_id = db.query(RefreshToken).first().user_id
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    for n in range(3):
        db.add(
            RefreshToken(
                jti=f"old{n}", user_id=user_id, family=f"console:old{n}", expires_at=long_ago
            )
        )
    db.commit()
    result = app.test_cli_runner().invoke(args=["sync", "purge"])
    assert "3 expired sign-ins" in result.output, result.output
    db.expire_all()
    assert {t.jti for t in db.query(RefreshToken)} == live
    login = api.client.post("/api/v1/auth/login", json={"email": ANA, "password": "demo-pass-2026"})
    assert login.status_code == 200


def test_purge_keeps_a_closed_sites_tombstone_while_its_history_points_at_it(
    app, env, device, api, db
):
    """N-HOTEL has assignments (and the demo's schedules) pointing at it: closed long ago, its
    tombstone stays, and the purge still removes every other tombstone past the horizon (one
    failing foreign key used to roll the whole purge back, every time it ran)."""
    a = device(ANA, "a")
    a.sync()
    gone = new_inspection(a, env, site="N-CANTEEN")
    a.sync()
    a.delete("inspections", gone)
    a.sync()
    popup = api.post(
        "/sites",
        HQ_EMAIL,
        json={
            "region_id": db.get(Site, env["sites"]["N-HOTEL"]).region_id,
            "name": "Pop-up",
            "code": "POPUP",
            "timezone": "UTC",
        },
    ).get_json()["id"]
    hotel = env["sites"]["N-HOTEL"]
    for site in (hotel, popup):
        assert api.delete(f"/sites/{site}", HQ_EMAIL).status_code == 204
    assert db.query(SiteAssignment).filter_by(site_id=hotel).count() > 0
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    db.execute(update(Inspection).where(Inspection.id == gone).values(deleted_at=long_ago))
    db.execute(update(Site).where(Site.id.in_([hotel, popup])).values(deleted_at=long_ago))
    db.commit()
    result = app.test_cli_runner().invoke(args=["sync", "purge"])
    assert result.exit_code == 0, result.output
    assert "purged 2 tombstones" in result.output
    db.expire_all()
    assert db.get(Inspection, gone) is None and db.get(Site, popup) is None
    assert db.get(Site, hotel).deleted_at is not None  # kept, as a tombstone
    # Devices still converge: an old cursor is answered with a replacement without the site.
    b = device(ANA, "b")
    resp = b.client.get(
        "/api/v1/sync/pull", query_string={"last_pulled_at": 1}, headers=b.headers()
    )
    body = resp.get_json()
    assert resp.status_code == 200 and body["experimentalStrategy"] == "replacement"
    assert hotel not in {s["id"] for s in body["changes"]["sites"]["updated"]}


def test_purge_keeps_the_tombstone_of_a_record_an_open_conflict_names(app, env, device, api, db):
    """Ben's refused edit of Ana's inspection waits for a manager; Ana deletes the inspection.
    Purged, its tombstone no longer told the resolution that it was deleted: taking Ben's
    value created it again (as a record the server never had), with Ben as its inspector."""
    ana, ben = device(ANA, "ana"), device(BEN, "ben")
    ana.sync()
    iid = new_inspection(ana, env)
    ana.sync()
    ben.sync()
    ben.update("inspections", iid, notes="seen by ben")
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="out_of_scope").one()
    ana.delete("inspections", iid)
    ana.sync()
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    db.execute(update(Inspection).where(Inspection.id == iid).values(deleted_at=long_ago))
    db.commit()
    assert app.test_cli_runner().invoke(args=["sync", "purge"]).exit_code == 0
    resp = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "take_device"})
    assert resp.status_code == 422 and resp.get_json()["reason"] == "not_resolvable"
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None
    # Once the conflict is closed, the next purge takes the tombstone.
    resp = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "keep_server"})
    assert resp.status_code == 200
    db.execute(update(Inspection).where(Inspection.id == iid).values(deleted_at=long_ago))
    db.commit()
    result = app.test_cli_runner().invoke(args=["sync", "purge"])
    assert "purged 1 tombstones" in result.output, result.output
    db.expire_all()
    assert db.get(Inspection, iid) is None


_PG_ONLY = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="SQLite writers take the one write lock at BEGIN: they never overlap",
)


def _purge_while_held(app, held, then) -> dict:
    """A writer holds rows (`held`), the purge starts and runs into them, then the writer
    runs `then` (more rows, in its order) and commits; returns the purge's CLI result."""
    engine = app.extensions["db_engine"]
    out: dict = {}

    def purge() -> None:
        out["result"] = app.test_cli_runner().invoke(args=["sync", "purge"])

    with engine.connect() as writer:
        writer.execute(held)
        thread = threading.Thread(target=purge)
        thread.start()
        deadline = time.monotonic() + 20
        waiting = text("SELECT count(*) FROM pg_locks WHERE NOT granted")
        with engine.connect() as watcher:
            while thread.is_alive() and time.monotonic() < deadline:
                if watcher.execute(waiting).scalar():
                    break
                watcher.rollback()
                time.sleep(0.02)
        writer.execute(text("SET LOCAL lock_timeout = '5s'"))
        for statement in then:
            writer.execute(statement)
        writer.commit()
    thread.join(60)
    return out


def _purgeable(db, *models_and_ids) -> None:
    """Make these tombstones older than the horizon."""
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    for model, rid in models_and_ids:
        db.execute(update(model).where(model.id == rid).values(deleted_at=long_ago))
    db.commit()


@_PG_ONLY
def test_a_purge_takes_the_counter_last_as_writers_do(app, env, device, db):
    """A writer (a push, a resolution) holds the rows it decides on, a tombstone among them, and
    takes the counter's row right before COMMIT. The purge took the counter first, then waited
    for that tombstone: a deadlock, and PostgreSQL ended the purge (every push meanwhile
    waited for the purge's whole run)."""
    a = device(ANA, "a")
    a.sync()
    gone = new_inspection(a, env)
    a.sync()
    a.delete("inspections", gone)
    a.sync()
    _purgeable(db, (Inspection, gone))
    out = _purge_while_held(
        app,
        select(Inspection.id).where(Inspection.id == gone).with_for_update(),
        [update(SyncCounter).values(value=SyncCounter.value + 1)],  # stamps
    )
    result = out["result"]
    assert result.exit_code == 0, repr(result.exception)
    assert "purged 1 tombstones" in result.output
    db.expire_all()
    assert db.get(Inspection, gone) is None


@_PG_ONLY
def test_a_purge_takes_tombstones_in_the_order_writers_lock_them(app, env, device, db):
    """Writers lock an action before its photos (a push, a resolution); the purge deleted
    photos before actions, and deadlocked with a writer holding an old action's tombstone."""
    aid, att = action_with_photo(env, device, uploaded=False)
    phone = device(ANA, "phone-2")
    phone.sync()
    phone.delete("actions", aid)  # with its photo
    assert phone.sync()["conflicts"] == []
    _purgeable(db, (Action, aid), (Attachment, att))
    out = _purge_while_held(
        app,
        select(Action.id).where(Action.id == aid).with_for_update(),
        [
            select(Attachment.id).where(Attachment.id == att).with_for_update(),
            update(SyncCounter).values(value=SyncCounter.value + 1),
        ],
    )
    result = out["result"]
    assert result.exit_code == 0, repr(result.exception)
    db.expire_all()
    assert db.get(Action, aid) is None and db.get(Attachment, att) is None
