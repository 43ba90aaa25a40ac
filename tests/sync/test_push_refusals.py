"""What a push may not do to the store, and how the device gets back in step when refused:
moving records, deleting a locked inspection's actions, joining a deleted parent."""

from __future__ import annotations

import hashlib
import threading

import pytest
from sqlalchemy import func, select

from store.models import Action, Attachment, Conflict, Inspection, Response
from tests.media.conftest import jpeg
from tests.media.test_upload_flow import _upload
from tests.sync.device import SyncFailed, random_id
from tests.sync_env import ANA, BEN, answer, new_action, new_inspection, now_ms, photo_record


def _completed(phone, env) -> str:
    """A completed inspection with a failed critical item (so it has corrective actions)."""
    phone.sync()
    iid = new_inspection(phone, env)
    answer(phone, iid, "clean", "no")
    answer(phone, iid, "fridge", 9)
    phone.sync()
    phone.update("inspections", iid, status="completed", completed_at=now_ms())
    assert phone.sync()["conflicts"] == []
    phone.sync()
    return iid


def _kinds(result) -> list[str]:
    return [c["kind"] for c in result["conflicts"]]


def test_an_answer_cannot_move_into_an_inspection_outside_scope(env, device, db):
    ana, ben = device(ANA), device(BEN)
    ana.sync()
    ben.sync()
    south = new_inspection(ben, env, site="S-HOTEL")  # Ana cannot see S-HOTEL
    answer(ben, south, "fridge", 3)
    ben.sync()
    mine = new_inspection(ana, env)
    rid = answer(ana, mine, "fridge", 99)
    ana.sync()
    ana.update("responses", rid, inspection_id=south, note="moved")
    assert _kinds(ana.sync()) == ["out_of_scope"]
    db.expire_all()
    row = db.get(Response, rid)
    assert row.inspection_id == mine and row.note == "moved"  # the other change applied
    assert db.get(Inspection, south).critical_failed is False  # Ben's score untouched
    ana.sync()
    assert ana.get("responses", rid)["inspection_id"] == mine  # the device moved it back


def test_an_answer_cannot_move_into_another_inspectors_inspection(env, device, db):
    ana, ben = device(ANA), device(BEN)
    ana.sync()
    ben.sync()
    bens = new_inspection(ben, env, site="N-HOTEL")  # a site both see
    ben.sync()
    mine = new_inspection(ana, env)
    rid = answer(ana, mine, "fridge", 99)
    ana.sync()
    ana.update("responses", rid, inspection_id=bens)
    assert _kinds(ana.sync()) == ["out_of_scope"]
    db.expire_all()
    assert db.get(Response, rid).inspection_id == mine


def test_an_action_cannot_move_to_a_site_outside_scope(env, device, db):
    ana = device(ANA)
    ana.sync()
    aid = ana.create("actions", site_id=env["sites"]["N-HOTEL"], title="Fix the tap", status="open")
    ana.sync()
    ana.update("actions", aid, site_id=env["sites"]["S-HOTEL"])
    assert _kinds(ana.sync()) == ["out_of_scope"]
    db.expire_all()
    assert db.get(Action, aid).site_id == env["sites"]["N-HOTEL"]


def test_an_inspection_stays_at_its_site_and_its_answers_stay_with_it(env, device, db):
    ana = device(ANA)
    ana.sync()
    iid = new_inspection(ana, env, site="N-HOTEL")
    rid = answer(ana, iid, "clean", "yes")
    ana.sync()
    ana.update("inspections", iid, site_id=env["sites"]["N-CANTEEN"])  # both Ana's sites
    result = ana.sync()
    assert _kinds(result) == ["invalid_value"], result
    conflict = db.execute(select(Conflict).where(Conflict.record_id == iid)).scalar_one()
    assert conflict.column == "site_id" and conflict.device_value == env["sites"]["N-CANTEEN"]
    db.expire_all()
    assert db.get(Inspection, iid).site_id == env["sites"]["N-HOTEL"]
    ana.sync()
    assert ana.get("inspections", iid)["site_id"] == env["sites"]["N-HOTEL"]
    ben = device(BEN)  # N-HOTEL and S-HOTEL: sees the inspection and its answer together
    ben.sync()
    assert ben.get("inspections", iid) is not None and ben.get("responses", rid) is not None


def test_deleting_a_locked_inspection_keeps_its_corrective_actions(env, device, db):
    phone = device(ANA)
    iid = _completed(phone, env)
    actions = db.execute(select(Action.id).where(Action.inspection_id == iid)).scalars().all()
    assert len(actions) == 2
    phone.delete("inspections", iid)
    assert "locked" in _kinds(phone.sync())
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is None
    assert all(r.deleted_at is None for r in db.query(Response).filter_by(inspection_id=iid))
    assert all(db.get(Action, a).deleted_at is None for a in actions)
    phone.sync()
    assert phone.get("inspections", iid) is not None
    assert all(phone.get("actions", a) is not None for a in actions)


def test_a_photo_for_an_action_created_in_the_same_push_is_kept(env, device, db):
    ana = device(ANA)
    ana.sync()
    aid = ana.create("actions", site_id=env["sites"]["N-HOTEL"], title="Broken tap", status="open")
    att = photo_record(ana, None, None, jpeg(200, 100), action_id=aid)
    assert ana.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Attachment, att).site_id == env["sites"]["N-HOTEL"]
    ana.sync()
    assert ana.get("attachments", att) is not None


def test_late_evidence_whose_bytes_came_first_joins_a_completed_inspection(env, device, client, db):
    phone = device(ANA)
    iid = _completed(phone, env)
    rid = next(r for r, v in phone.live("responses").items() if v["item_key"] == "clean")
    data = jpeg(300, 200)
    att = photo_record(phone, iid, rid, data, captured_at=now_ms())
    assert _upload(client, phone, att, data).status_code == 200  # bytes first: pending
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    row = db.get(Attachment, att)
    assert row.pending_upload is False and row.inspection_id == iid and row.uploaded is True


def test_a_photo_whose_bytes_came_first_cannot_join_another_inspectors_inspection(
    env, device, client, db
):
    # Bytes uploaded first leave a pending record placed nowhere; the record's push is judged
    # where it names, as any new record is (it used to skip the owner check).
    ben = device(BEN)
    ben.sync()
    bens = new_inspection(ben, env)  # at N-HOTEL, which Ana sees too
    ben.sync()
    ana = device(ANA)
    ana.sync()
    data = jpeg(120, 90)
    att = photo_record(ana, bens, None, data)
    assert _upload(client, ana, att, data).status_code == 200  # bytes first: pending
    assert _kinds(ana.sync()) == ["out_of_scope"]
    db.expire_all()
    row = db.get(Attachment, att)
    assert row.pending_upload is True and row.inspection_id is None
    kept = db.execute(select(Conflict.device_value).where(Conflict.record_id == att)).scalar_one()
    assert kept["inspection_id"] == bens
    ana.sync()
    assert ana.get("attachments", att) is None


def test_a_refused_new_answer_leaves_the_device_too(env, device, db):
    phone = device(ANA)
    iid = _completed(phone, env)
    late = answer(phone, iid, "remark", "late remark")
    assert _kinds(phone.sync()) == ["locked"]
    assert db.get(Response, late) is None
    phone.sync()
    assert phone.get("responses", late) is None
    kept = db.execute(select(Conflict.device_value).where(Conflict.record_id == late)).scalar_one()
    assert kept["value"] == '"late remark"'  # nothing the device sent is lost


def test_an_answer_to_an_inspection_deleted_elsewhere_is_refused_and_kept(env, device, db):
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    b.sync()
    a.delete("inspections", iid)
    a.sync()
    rid = answer(b, iid, "clean", "yes")  # b answers offline, not knowing
    assert _kinds(b.sync()) == ["deleted_record"]
    db.expire_all()
    assert db.get(Response, rid) is None
    b.sync()
    assert b.get("inspections", iid) is None and b.get("responses", rid) is None


def test_deleting_an_inspection_deletes_answers_pushed_with_it(env, device, client, db):
    ana = device(ANA)
    cursor = ana.pull()
    iid = new_inspection(ana, env)
    ana.push(cursor)
    cursor = ana.pull()
    rid = random_id()
    created = {"id": rid, "inspection_id": iid, "item_key": "clean", "value": '"yes"'}
    body = {
        "changes": {
            "responses": {
                "created": [created],
                "updated": [],
                "deleted": [],
            },
            "inspections": {"created": [], "updated": [], "deleted": [iid]},
        },
        "last_pulled_at": cursor,
    }
    resp = client.post("/api/v1/sync/push", json=body, headers=ana.headers())
    assert resp.status_code == 200, resp.get_json()
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None
    assert db.get(Response, rid).deleted_at is not None


@pytest.mark.parametrize("records", [1, 60])
def test_concurrent_retries_with_one_idempotency_key_answer_alike(app, env, api, db, records):
    token = api.login(ANA)["access_token"]
    inspections = [
        {
            "id": random_id(),
            "template_id": env["template"],
            "site_id": env["sites"]["N-HOTEL"],
            "status": "in_progress",
            "started_at": now_ms(),
        }
        for _ in range(records)
    ]
    body = {
        "changes": {"inspections": {"created": inspections, "updated": [], "deleted": []}},
        "last_pulled_at": 0,
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Device-Id": "retrying",
        "Idempotency-Key": "one-key",
    }
    answers: list = []
    barrier = threading.Barrier(2)

    def send() -> None:
        barrier.wait()
        resp = app.test_client().post("/api/v1/sync/push", json=body, headers=headers)
        answers.append((resp.status_code, resp.get_json()))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [200, 200], answers
    assert answers[0][1] == answers[1][1]
    count = db.execute(select(func.count()).select_from(Inspection)).scalar_one()
    assert count == records


def test_deleting_an_action_deletes_the_photos_evidencing_it(env, device, db):
    ana = device(ANA)
    ana.sync()
    aid = ana.create("actions", site_id=env["sites"]["N-HOTEL"], title="Tap", status="open")
    ana.sync()
    att = photo_record(ana, None, None, jpeg(100, 100), action_id=aid)
    ana.sync()
    ana.delete("actions", aid)
    ana.sync()
    db.expire_all()
    assert db.get(Attachment, att).deleted_at is not None
    other = device(ANA, "other")
    other.sync()
    assert other.get("actions", aid) is None and other.get("attachments", att) is None


def _action_with_evidence(phone, env, db) -> tuple[str, str, str]:
    """A completed inspection, one of its actions, and a fix photo evidencing that action."""
    iid = _completed(phone, env)
    aid = db.execute(select(Action.id).where(Action.inspection_id == iid)).scalars().first()
    att = photo_record(phone, None, None, jpeg(200, 100), action_id=aid)
    assert phone.sync()["conflicts"] == []
    return iid, aid, att


@pytest.mark.parametrize("deleted", ["inspections", "actions"])
def test_a_locked_inspections_actions_keep_their_photos(env, device, db, deleted):
    """Deleting the completed inspection, or one of its actions, is refused as locked, and
    the fix photos of its actions stay."""
    phone = device(ANA)
    iid, aid, att = _action_with_evidence(phone, env, db)
    phone.delete(deleted, iid if deleted == "inspections" else aid)
    assert "locked" in _kinds(phone.sync())
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is None
    assert db.get(Action, aid).deleted_at is None
    assert db.get(Attachment, att).deleted_at is None
    phone.sync()
    assert phone.get("actions", aid) is not None and phone.get("attachments", att) is not None


def test_an_uploaded_photo_keeps_its_verified_bytes(env, device, client, db):
    phone = device(ANA)
    iid = new_inspection(phone, env)
    phone.sync()
    data = jpeg(320, 240)
    att = photo_record(phone, iid, None, data)
    phone.sync()
    assert _upload(client, phone, att, data).status_code == 200
    phone.sync()
    phone.update("attachments", att, sha256="ab" * 32, byte_size=123, mime="text/html")
    result = phone.sync()
    assert sorted(c["column"] for c in result["conflicts"]) == ["byte_size", "mime", "sha256"]
    assert set(_kinds(result)) == {"invalid_value"}
    db.expire_all()
    row = db.get(Attachment, att)
    assert row.uploaded and row.sha256 == hashlib.sha256(data).hexdigest()
    assert row.byte_size == len(data) and row.mime == "image/jpeg"
    phone.sync()
    assert phone.get("attachments", att)["sha256"] == row.sha256


def test_bytes_uploaded_first_are_not_claimed_by_a_record_of_another_type(env, device, client, db):
    phone = device(ANA)
    iid = new_inspection(phone, env)
    phone.sync()
    strokes = b"[[[10, 10], [50, 40], [90, 10]]]"
    att = random_id()
    assert _upload(client, phone, att, strokes, mime="application/json").status_code == 200
    photo_record(phone, iid, None, strokes, id=att)  # claims image/jpeg
    phone.sync()
    db.expire_all()
    row = db.get(Attachment, att)
    assert row.pending_upload is False and row.uploaded is False


@pytest.mark.parametrize("table", ["responses", "actions"])
def test_a_record_created_again_under_a_new_inspection_is_not_moved_or_duplicated(
    env, device, db, table
):
    # Records created under an inspection the same push creates are taken as new without a
    # lookup (SQLite's fast path); one the server has after all (a device that re-created it
    # under a new run) must meet the same refusal as when every record is looked up.
    phone = device(ANA, "phone")
    phone.sync()
    home = new_inspection(phone, env)
    rid = (
        answer(phone, home, "clean", "yes")
        if table == "responses"
        else new_action(phone, env, home)
    )
    assert phone.sync()["conflicts"] == []
    tab = device(ANA, "tab")
    tab.sync()
    fresh = new_inspection(tab, env)
    other = answer(tab, fresh, "fridge", 4)
    raw = dict(tab.get(table, rid), inspection_id=fresh)
    del tab.db[table][rid]
    tab.create(table, **raw)

    pushed = tab.sync()

    assert [(c["kind"], c["id"], c["column"]) for c in pushed["conflicts"]] == [
        ("invalid_value", rid, "inspection_id")
    ]
    model = Response if table == "responses" else Action
    db.expire_all()
    assert db.get(model, rid).inspection_id == home
    assert db.scalar(select(func.count()).select_from(model).where(model.id == rid)) == 1
    assert db.get(Inspection, fresh) is not None
    assert db.get(Response, other).inspection_id == fresh


def test_an_action_stored_before_its_inspection_counts_when_the_inspection_comes(
    app, env, device, db
):
    # Earlier releases stored an action naming an inspection the server did not have (it was
    # placed by its own site; such a push is now refused, see test_missing_parents.py). When
    # that inspection arrives, completed with the answer the action is for, the stored action
    # is the one for that answer: none is opened twice.
    from store.changeset import ChangeSet
    from sync import writer

    ghost, rid = random_id(), random_id()
    with app.app_context():
        from api import db as api_db

        cs = ChangeSet(user_id=env["users"][ANA], role="inspector", device_id=None, now_ms=0)
        cs.add_new(
            "actions",
            {
                "id": random_id(),
                "inspection_id": ghost,
                "response_id": rid,
                "site_id": env["sites"]["N-HOTEL"],
                "title": "Fix it",
                "status": "open",
                "priority": "medium",
            },
        )
        writer.write(api_db.session(), cs)
        api_db.commit()
    phone = device(ANA, "phone")
    phone.sync()
    phone.create(
        "inspections",
        id=ghost,
        template_id=env["template"],
        site_id=env["sites"]["N-HOTEL"],
        status="in_progress",
        started_at=now_ms(),
    )
    answer(phone, ghost, "clean", "no", id=rid)
    answer(phone, ghost, "fridge", 3)
    phone.update("inspections", ghost, status="completed", completed_at=now_ms())
    phone.sync()
    assert db.query(Action).filter_by(response_id=rid).count() == 1


def _answer_on_two_devices(device, env) -> tuple:
    """An answer the phone synced, and a tab that has pulled it: (phone, tab, inspection, id)."""
    phone = device(ANA, "phone")
    phone.sync()
    home = new_inspection(phone, env)
    rid = answer(phone, home, "clean", "yes")
    assert phone.sync()["conflicts"] == []
    tab = device(ANA, "tab")
    tab.sync()
    return phone, tab, home, rid


def _recreated_under(tab, table: str, rid: str, parent: str) -> None:
    """The device sends a stored record again, as created, under another inspection."""
    raw = dict(tab.get(table, rid), inspection_id=parent)
    raw.pop("server_rev", None)
    raw.pop("base_rev", None)
    del tab.db[table][rid]
    tab.create(table, **raw)


def test_an_answer_sent_again_under_a_refused_new_inspection_is_judged_as_stored(env, device, db):
    # The new inspection is outside Ana's scope, so it and its answers are refused: the one
    # the server has must still be found, its refusal worded and its place kept, as when
    # every record is looked up (PostgreSQL always does).
    _phone, tab, home, rid = _answer_on_two_devices(device, env)
    _recreated_under(tab, "responses", rid, new_inspection(tab, env, site="S-HOTEL"))

    pushed = tab.sync()

    assert ("out_of_scope", "inspection_id") in [
        (c["kind"], c["column"]) for c in pushed["conflicts"] if c["id"] == rid
    ], pushed
    db.expire_all()
    assert db.get(Response, rid).inspection_id == home


def test_a_stale_answer_sent_again_under_a_new_inspection_makes_the_push_stale(env, device):
    phone, tab, _home, rid = _answer_on_two_devices(device, env)
    cursor = tab.last_pulled_at
    phone.update("responses", rid, note="seen again")
    phone.sync()  # the answer changed after the tab's pull
    _recreated_under(tab, "responses", rid, new_inspection(tab, env, site="S-HOTEL"))
    with pytest.raises(SyncFailed) as refused:
        tab.push(cursor)
    assert refused.value.status == 409
    assert rid in refused.value.body["stale"]["responses"]


def test_a_clash_found_at_the_insert_still_stores_the_idempotent_answer(env, device, client, db):
    # The request runs again after the clash, its replay bookkeeping included: the same key
    # and body then replay the answer the device got, and nothing is stored twice.
    _phone, tab, home, rid = _answer_on_two_devices(device, env)
    fresh = new_inspection(tab, env)
    _recreated_under(tab, "responses", rid, fresh)

    def created(table: str, record_id: str) -> dict:
        return dict(tab.db[table][record_id]["raw"], _status="created", _changed="")

    body = {
        "changes": {
            "inspections": {
                "created": [created("inspections", fresh)],
                "updated": [],
                "deleted": [],
            },
            "responses": {"created": [created("responses", rid)], "updated": [], "deleted": []},
        },
        "last_pulled_at": tab.last_pulled_at,
    }
    headers = tab.headers(**{"Idempotency-Key": "clash-1"})
    first = client.post("/api/v1/sync/push", headers=headers, json=body)
    again = client.post("/api/v1/sync/push", headers=headers, json=body)
    assert first.status_code == again.status_code == 200, first.get_json()
    assert again.get_json() == first.get_json()
    assert [c["kind"] for c in first.get_json()["conflicts"]] == ["invalid_value"]
    assert (
        db.execute(
            select(func.count()).select_from(Inspection).where(Inspection.id == fresh)
        ).scalar()
        == 1
    )
    assert db.get(Response, rid).inspection_id == home
