"""Resolving sync conflicts: the same locks, lifecycle, placement and value checks as a push."""

from __future__ import annotations

import threading

import requests
from sqlalchemy import update

from store.models import Action, Attachment, AuditEvent, Conflict, Inspection, Response
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH, SOUTH
from tests.media.conftest import jpeg
from tests.sync_env import (
    answer,
    completed_with_action,
    concurrent_action_edit,
    new_inspection,
    photo_record,
    refused_fix_photo_deletion,
    upload_photo,
)


def _resolve(api, conflict_id: str, resolution: str, value=None, who: str = NORTH):
    body = {"resolution": resolution}
    if value is not None:
        body["value"] = value
    return api.post(f"/conflicts/{conflict_id}/resolve", who, json=body)


def _refused(resp, reason: str) -> dict:
    """A 422 in the error envelope with this reason; returns the body."""
    body = resp.get_json()
    assert resp.status_code == 422, body
    assert body["reason"] == reason and body["message"], body
    return body


def _unresolved(db, conflict_id: str) -> bool:
    db.expire_all()
    return db.get(Conflict, conflict_id).resolved_at is None


def _concurrent(env, device, db, column: str, from_a, from_b):
    """Two devices edit the same inspection column; a's value wins and b's is kept."""
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    b.sync()
    b.update("inspections", iid, **{column: from_b})
    b.sync()
    a.update("inspections", iid, **{column: from_a})
    a.sync()
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="concurrent_edit").one()
    return a, b, iid, conflict


def _completed(env, device):
    """A phone completes an inspection that passes."""
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    rid = answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    assert phone.sync()["conflicts"] == []
    phone.sync()
    return phone, iid, rid


def test_take_device_on_a_lifecycle_conflict_never_approves(env, device, api, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    phone.sync()
    phone.update("inspections", iid, status="approved")
    phone.sync()
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="lifecycle").one()
    body = _refused(_resolve(api, conflict.id, "take_device"), "review_only")
    assert "approve" in body["message"] and "return" in body["message"]
    _refused(_resolve(api, conflict.id, "edit", "completed"), "review_only")
    assert db.get(Inspection, iid).status == "in_progress"
    assert _unresolved(db, conflict.id)


def test_a_resolution_never_moves_a_record_or_changes_its_status(env, device, api, db):
    ana, ben = device(ANA, "ana"), device(BEN, "ben")
    ana.sync()
    iid = new_inspection(ana, env)
    ana.sync()
    ben.sync()
    ben.update("inspections", iid, notes="seen by ben")  # Ana's inspection: refused
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="out_of_scope").one()
    for site in ("S-HOTEL", "N-CANTEEN"):  # out of the manager's region, and inside it
        moved = _resolve(api, conflict.id, "edit", {"site_id": env["sites"][site]})
        assert "site_id" in _refused(moved, "not_resolvable")["errors"]
    _refused(_resolve(api, conflict.id, "edit", {"status": "approved"}), "review_only")
    db.expire_all()
    insp = db.get(Inspection, iid)
    assert (insp.site_id, insp.status) == (env["sites"]["N-HOTEL"], "in_progress")
    assert _unresolved(db, conflict.id)
    # The device's whole record (same site, same status) is still taken as it was sent.
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).notes == "seen by ben"


def test_a_locked_inspection_is_changed_only_after_it_is_returned(env, device, api, db):
    phone, iid, _ = _completed(env, device)
    phone.update("inspections", iid, notes="late edit")
    assert [c["kind"] for c in phone.sync()["conflicts"]] == ["locked"]
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="locked").one()
    body = _refused(_resolve(api, conflict.id, "take_device"), "locked")
    assert "return it for rework" in body["message"]
    _refused(_resolve(api, conflict.id, "edit", {"notes": "x"}), "locked")
    db.expire_all()
    assert db.get(Inspection, iid).notes is None
    assert _unresolved(db, conflict.id)
    returned = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "Add the note"})
    assert returned.status_code == 200
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    insp = db.get(Inspection, iid)
    assert (insp.notes, insp.status) == ("late edit", "returned")


def test_a_response_of_an_approved_inspection_stays_as_approved(env, device, api, db):
    _, iid, rid = _completed(env, device)
    assert api.post(f"/inspections/{iid}/approve", NORTH, json={}).status_code == 200
    stale = device(ANA, "stale")
    stale.sync()
    stale.update("responses", rid, value='"no"')
    assert [c["kind"] for c in stale.sync()["conflicts"]] == ["locked"]
    conflict = db.query(Conflict).filter_by(record_id=rid, kind="locked").one()
    db.expire_all()
    score = db.get(Inspection, iid).score
    _refused(_resolve(api, conflict.id, "take_device"), "locked")
    db.expire_all()
    insp = db.get(Inspection, iid)
    assert (insp.status, insp.score, db.get(Response, rid).value) == ("approved", score, '"yes"')


def test_keep_server_restores_the_overwritten_value_and_devices_converge(env, device, api, db):
    a, _, iid, conflict = _concurrent(env, device, db, "notes", "from a", "from b")
    assert (conflict.server_value, conflict.device_value) == ("from b", "from a")
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).notes == "from b"
    a.sync()
    assert a.get("inspections", iid)["notes"] == "from b"


def test_actions_are_not_locked_by_their_inspection(env, device, api, db):
    _phone, iid, aid = completed_with_action(env, device, db)  # its failed item opened the action
    conflict = concurrent_action_edit(device, db, aid)
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    assert db.get(Action, aid).description == "from b"
    assert db.get(Inspection, iid).status == "completed"


def test_resolving_never_brings_a_deleted_record_back(env, device, api, db):
    a, _, iid, conflict = _concurrent(env, device, db, "notes", "from a", "from b")
    a.delete("inspections", iid)
    a.sync()
    for resolution in ("edit", "take_device"):
        body = _refused(_resolve(api, conflict.id, resolution, "x"), "not_resolvable")
        assert "deleted" in body["message"]
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None
    # Keeping the server's state (the tombstone) closes the conflict without a write.
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None


def test_edited_values_are_checked_like_a_push(env, device, api, db):
    _, _, iid, conflict = _concurrent(env, device, db, "latitude", 10.0, 20.0)
    for bad in ("not a number", 1000.0, {"x": 1}, [1, 2], True):
        body = _refused(_resolve(api, conflict.id, "edit", bad), "invalid_value")
        assert "latitude" in body["message"] and "latitude" in body["errors"]
    assert _unresolved(db, conflict.id)
    assert _resolve(api, conflict.id, "edit", 45.5).status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).latitude == 45.5


def test_an_edited_time_must_be_epoch_milliseconds(env, device, api, db):
    _, _, iid, conflict = _concurrent(
        env, device, db, "started_at", 1_700_000_000_000, 1_700_000_000_001
    )
    body = _refused(_resolve(api, conflict.id, "edit", "yesterday"), "invalid_value")
    assert body["errors"] == {"started_at": ["must be a number"]}
    assert db.get(Inspection, iid).started_at == 1_700_000_000_000
    assert _resolve(api, conflict.id, "edit", 1_700_000_000_002.0).status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).started_at == 1_700_000_000_002


def test_taken_device_values_are_checked_too(env, device, api, db):
    _, _, iid, conflict = _concurrent(env, device, db, "latitude", 10.0, 20.0)
    # A conflict stored before today's rules, holding a value no push would accept now.
    db.execute(update(Conflict).where(Conflict.id == conflict.id).values(device_value=1000.0))
    _refused(_resolve(api, conflict.id, "take_device"), "invalid_value")
    db.expire_all()
    assert db.get(Inspection, iid).latitude == 10.0


def test_an_out_of_scope_create_is_made_at_its_site_with_its_required_columns(env, device, api, db):
    ana = device(ANA, "ana")
    ana.sync()
    iid = new_inspection(ana, env, site="S-HOTEL")
    assert [c["kind"] for c in ana.sync()["conflicts"]] == ["out_of_scope"]
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="out_of_scope").one()
    # The conflict lies at South's site: North's manager may not resolve it (a write: 403).
    assert _resolve(api, conflict.id, "keep_server", who=NORTH).status_code == 403
    refused = _resolve(api, conflict.id, "edit", {"notes": "x"}, who=SOUTH)
    assert "template_id" in _refused(refused, "not_resolvable")["errors"]
    assert _resolve(api, conflict.id, "take_device", who=SOUTH).status_code == 200
    db.expire_all()
    insp = db.get(Inspection, iid)
    assert (insp.site_id, insp.status) == (env["sites"]["S-HOTEL"], "in_progress")
    assert insp.inspector_id == env["users"][ANA]


def test_only_one_of_concurrent_resolutions_wins(env, device, api, db, live_server):
    _, _, iid, conflict = _concurrent(env, device, db, "notes", "from a", "from b")
    tokens = [api.login(NORTH)["access_token"], api.login(HQ_EMAIL)["access_token"]] * 4
    barrier = threading.Barrier(len(tokens))
    answers: list[tuple[int, str | None]] = []

    def resolve(i: int, token: str) -> None:
        barrier.wait()
        resp = requests.post(
            f"{live_server}/api/v1/conflicts/{conflict.id}/resolve",
            headers={"Authorization": f"Bearer {token}"},
            json={"resolution": "edit", "value": f"value {i}"},
            timeout=30,
        )
        answers.append((resp.status_code, resp.json().get("reason")))

    threads = [threading.Thread(target=resolve, args=(i, t)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [(200, None)] + [(422, "already_resolved")] * 7, answers
    audits = db.query(AuditEvent).filter_by(action="resolve_conflict").count()
    assert audits == 1
    db.expire_all()
    assert db.get(Inspection, iid).notes.startswith("value ")


def test_a_created_inspection_cannot_start_approved(env, device, api, db):
    ana = device(ANA, "ana")
    ana.sync()
    iid = new_inspection(ana, env, site="S-HOTEL")
    ana.update("inspections", iid, status="approved")
    assert [c["kind"] for c in ana.sync()["conflicts"]] == ["out_of_scope"]
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="out_of_scope").one()
    body = _refused(_resolve(api, conflict.id, "take_device", who=SOUTH), "review_only")
    assert "review" in body["message"]
    assert db.get(Inspection, iid) is None and _unresolved(db, conflict.id)


def _deleted_by_ben(env, device, db, complete: bool = False):
    """Ben deletes Ana's inspection (with an answer): refused as out of scope, kept."""
    if complete:
        _, iid, rid = _completed(env, device)
    else:
        ana = device(ANA, "ana")
        ana.sync()
        iid = new_inspection(ana, env)
        rid = answer(ana, iid, "clean", "yes")
        ana.sync()
    ben = device(BEN, "ben")
    ben.sync()
    ben.delete("inspections", iid)
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="out_of_scope").one()
    assert conflict.device_value == {"id": iid, "_deleted": True}
    return iid, rid, conflict


def test_taking_a_deletion_tombstones_the_record_and_its_children(env, device, api, db):
    iid, rid, conflict = _deleted_by_ben(env, device, db)
    ana = device(ANA, "ana-2")
    ana.sync()
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None
    assert db.get(Response, rid).deleted_at is not None
    assert not _unresolved(db, conflict.id)
    ana.sync()  # devices drop it on their next pull, as after a push's deletion
    assert ana.get("inspections", iid) is None and ana.get("responses", rid) is None


def test_keeping_the_server_record_over_a_deletion_keeps_it(env, device, api, db):
    iid, _, conflict = _deleted_by_ben(env, device, db)
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is None
    assert not _unresolved(db, conflict.id)


def test_a_completed_inspection_is_deleted_only_after_it_is_returned(env, device, api, db):
    iid, rid, conflict = _deleted_by_ben(env, device, db, complete=True)
    body = _refused(_resolve(api, conflict.id, "take_device"), "locked")
    assert "return it for rework" in body["message"]
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is None and db.get(Response, rid).deleted_at is None
    assert _unresolved(db, conflict.id)
    returned = api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "Delete it"})
    assert returned.status_code == 200
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).deleted_at is not None


def test_a_deletion_refused_by_the_lock_is_taken_after_the_return(env, device, api, db):
    phone, iid, rid = _completed(env, device)
    phone.delete("responses", rid)
    assert [c["kind"] for c in phone.sync()["conflicts"]] == ["locked"]
    conflict = db.query(Conflict).filter_by(record_id=rid, kind="locked").one()
    assert "deleted_at" in conflict.device_value
    _refused(_resolve(api, conflict.id, "take_device"), "locked")
    db.expire_all()
    assert db.get(Response, rid).deleted_at is None and _unresolved(db, conflict.id)
    assert api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "x"}).status_code == 200
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    assert db.get(Response, rid).deleted_at is not None


def _status_conflict(env, device, db):
    """Device b moves an inspection back to draft; device a, which never saw that, completes
    it: a's status applies and b's is kept in a concurrent_edit conflict."""
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    answer(a, iid, "clean", "yes")
    answer(a, iid, "fridge", 3)
    a.sync()
    b.sync()
    b.update("inspections", iid, status="draft")
    b.sync()
    a.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    a.sync()
    conflict = db.query(Conflict).filter_by(record_id=iid, kind="concurrent_edit").one()
    assert (conflict.column, conflict.server_value, conflict.device_value) == (
        "status",
        "draft",
        "completed",
    )
    return iid, conflict


def test_keep_server_of_a_status_resolves_without_changing_the_status(env, device, api, db):
    iid, conflict = _status_conflict(env, device, db)
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).status == "completed"  # review moves it, not a resolution
    assert not _unresolved(db, conflict.id)


def test_keep_server_of_a_status_that_moved_on_since(env, device, api, db):
    iid, conflict = _status_conflict(env, device, db)
    assert api.post(f"/inspections/{iid}/approve", NORTH, json={}).status_code == 200
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    assert db.get(Inspection, iid).status == "approved"
    assert not _unresolved(db, conflict.id)


def _duplicate(env, device, db):
    """Two of Ana's phones answer the same item: both kept, b's (the newest) scored."""
    a, b = device(ANA, "a"), device(ANA, "b")
    a.sync()
    iid = new_inspection(a, env)
    a.sync()
    b.sync()
    first = answer(a, iid, "fridge", 3)
    a.sync()
    second = answer(b, iid, "fridge", 9)
    assert [c["kind"] for c in b.sync()["conflicts"]] == ["duplicate_response"]
    conflict = db.query(Conflict).filter_by(kind="duplicate_response").one()
    assert (conflict.record_id, conflict.server_value) == (second, [first])
    return a, iid, first, second, conflict


def test_take_device_of_a_duplicate_answer_makes_it_the_only_one(env, device, api, db):
    a, iid, first, second, conflict = _duplicate(env, device, db)
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    assert db.get(Response, first).deleted_at is not None
    kept = db.get(Response, second)
    assert (kept.deleted_at, kept.item_key, kept.value) == (None, "fridge", "9")
    assert db.get(Inspection, iid).critical_failed
    assert not _unresolved(db, conflict.id)
    a.sync()
    assert a.get("responses", first) is None and a.get("responses", second) is not None


def test_take_device_of_a_duplicate_answer_respects_the_lock(env, device, api, db):
    a, iid, first, second, conflict = _duplicate(env, device, db)
    answer(a, iid, "clean", "yes")
    a.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    a.sync()
    assert db.get(Inspection, iid).status == "completed"
    body = _refused(_resolve(api, conflict.id, "take_device"), "locked")
    assert "return it for rework" in body["message"]
    db.expire_all()
    assert db.get(Response, first).deleted_at is None and _unresolved(db, conflict.id)
    assert db.get(Response, second).deleted_at is None


def test_a_duplicate_answer_is_resolved_by_choosing_not_by_moving_it(env, device, api, db):
    # The conflict names the item_key column, but an edited item_key would move the answer to
    # another checklist item: a "no" about the fridge would become an answer about the floor.
    _a, _iid, first, second, conflict = _duplicate(env, device, db)
    body = _refused(_resolve(api, conflict.id, "edit", "clean"), "not_resolvable")
    assert "take_device" in body["message"] and "keep_server" in body["message"]
    db.expire_all()
    assert [db.get(Response, r).item_key for r in (first, second)] == ["fridge", "fridge"]
    assert _unresolved(db, conflict.id)


def test_keep_server_on_an_approved_inspection_closes_the_conflict(env, device, api, db):
    a, _, iid, conflict = _concurrent(env, device, db, "notes", "from a", "from b")
    answer(a, iid, "clean", "yes")
    answer(a, iid, "fridge", 3)
    a.update("inspections", iid, status="completed", completed_at=1_795_000_000_000)
    a.sync()
    assert api.post(f"/inspections/{iid}/approve", NORTH, json={}).status_code == 200
    # Approved records never change again, so the server's value cannot be written back:
    # keeping it closes the conflict rather than sending the manager round in a loop.
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    insp = db.get(Inspection, iid)
    assert (insp.status, insp.notes) == ("approved", "from a")
    assert not _unresolved(db, conflict.id)


def test_an_action_of_a_completed_inspection_is_not_deleted(env, device, api, db):
    _phone, _iid, aid = completed_with_action(env, device, db)  # its failed item opened the action
    ben = device(BEN, "ben")
    ben.sync()
    ben.delete("actions", aid)
    # Ben may not delete an action of Ana's inspection: a manager may take his deletion.
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    conflict = db.query(Conflict).filter_by(record_id=aid, kind="out_of_scope").one()
    # The action's own inspection locks it, whatever the conflict record names.
    db.execute(update(Conflict).where(Conflict.id == conflict.id).values(inspection_id=None))
    _refused(_resolve(api, conflict.id, "take_device"), "locked")
    db.expire_all()
    assert db.get(Action, aid).deleted_at is None and _unresolved(db, conflict.id)


def test_taking_a_fix_photo_deletion_of_a_resolved_action_is_refused(env, device, api, db):
    # A resolved action keeps the photos evidencing its fix: taking a device's deletion of one
    # is refused as locked (it was a 500), and says why; reopening the action frees it.
    _aid, att, conflict = refused_fix_photo_deletion(env, device, api, db)
    body = _refused(_resolve(api, conflict.id, "take_device"), "locked")
    assert "resolved" in body["message"]
    db.expire_all()
    assert db.get(Attachment, att).deleted_at is None and _unresolved(db, conflict.id)


def _photo_of(phone, inspection_id: str, response_id: str) -> str:
    """A photo record on the device naming this answer."""
    return phone.create(
        "attachments",
        inspection_id=inspection_id,
        response_id=response_id,
        kind="photo",
        sha256="ab" * 32,
        mime="image/jpeg",
        byte_size=100,
    )


def _two_answered(env, device) -> tuple:
    """Ana's phone and two synced inspections with an answer each: (phone, a, a's, b, b's)."""
    phone = device(ANA, "phone")
    phone.sync()
    first = new_inspection(phone, env)
    mine = answer(phone, first, "clean", "no")
    second = new_inspection(phone, env)
    theirs = answer(phone, second, "clean", "yes")
    assert phone.sync()["conflicts"] == []
    return phone, first, mine, second, theirs


def test_a_resolution_never_creates_a_photo_of_another_inspections_answer(env, device, api, db):
    phone, first, _mine, _second, theirs = _two_answered(env, device)
    att = _photo_of(phone, first, theirs)
    assert [c["kind"] for c in phone.sync()["conflicts"]] == ["invalid_parent"]
    conflict = db.query(Conflict).filter_by(record_id=att).one()
    body = _refused(_resolve(api, conflict.id, "take_device"), "not_resolvable")
    assert "response_id" in body["errors"]
    assert db.get(Attachment, att) is None and _unresolved(db, conflict.id)
    # Edited to name no answer, the device's photo is kept in its inspection.
    value = dict(conflict.device_value, response_id=None)
    assert _resolve(api, conflict.id, "edit", value).status_code == 200
    db.expire_all()
    assert (db.get(Attachment, att).inspection_id, db.get(Attachment, att).response_id) == (
        first,
        None,
    )


def test_a_resolution_moves_a_record_only_to_an_answer_of_its_inspection(env, device, api, db):
    phone, first, mine, _second, theirs = _two_answered(env, device)
    att = _photo_of(phone, first, mine)
    phone.sync()
    phone.update("attachments", att, response_id=theirs)
    assert [c["kind"] for c in phone.sync()["conflicts"]] == ["invalid_value"]
    conflict = db.query(Conflict).filter_by(record_id=att, column="response_id").one()
    body = _refused(_resolve(api, conflict.id, "take_device"), "not_resolvable")
    assert "response_id" in body["errors"]
    _refused(_resolve(api, conflict.id, "edit", "unknown-answer"), "not_resolvable")
    db.expire_all()
    assert db.get(Attachment, att).response_id == mine
    other = answer(phone, first, "fridge", 3)
    phone.sync()
    assert _resolve(api, conflict.id, "edit", other).status_code == 200
    db.expire_all()
    assert db.get(Attachment, att).response_id == other


def _refused_edit_of_anas(env, device, db):
    """Ben edits the notes of Ana's inspection (refused: out of scope, his whole copy kept)."""
    ana, ben = device(ANA, "ana"), device(BEN, "ben")
    ana.sync()
    iid = new_inspection(ana, env)
    ana.sync()
    ben.sync()
    ben.update("inspections", iid, notes="seen by ben")
    assert [c["kind"] for c in ben.sync()["conflicts"]] == ["out_of_scope"]
    return ana, iid, db.query(Conflict).filter_by(record_id=iid, kind="out_of_scope").one()


def test_taking_a_refused_edit_applies_only_the_columns_the_device_changed(env, device, api, db):
    # The conflict keeps the device's whole record: the columns it did not change are its copy
    # of the server's values, stale once someone else edits them.
    ana, iid, conflict = _refused_edit_of_anas(env, device, db)
    ana.update("inspections", iid, area="Room 1204")
    ana.sync()
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    insp = db.get(Inspection, iid)
    assert (insp.notes, insp.area) == ("seen by ben", "Room 1204")
    ana.sync()
    assert ana.get("inspections", iid)["area"] == "Room 1204"


def test_taking_a_refused_edit_after_the_status_moved_on(env, device, api, db):
    # The device's stale status is no change of its own: taking its note is not a status move.
    ana, iid, conflict = _refused_edit_of_anas(env, device, db)
    ana.update("inspections", iid, status="draft")
    ana.sync()
    assert _resolve(api, conflict.id, "take_device").status_code == 200
    db.expire_all()
    insp = db.get(Inspection, iid)
    assert (insp.notes, insp.status) == ("seen by ben", "draft")


def test_a_refused_photo_whose_bytes_came_is_taken_with_them(env, device, api, db):
    # The app uploads a photo's bytes whatever became of its record: refused, the record left
    # the bytes' pending row under its id, and a resolution must make the record over it (it
    # was refused as a move of that row), keeping the verified bytes of its own uploader.
    phone, first, _mine, _second, theirs = _two_answered(env, device)
    data = jpeg(40, 30)
    att = photo_record(phone, first, theirs, data)
    assert [c["kind"] for c in phone.sync()["conflicts"]] == ["invalid_parent"]
    upload_photo(phone, att, data)
    db.expire_all()
    assert db.get(Attachment, att).pending_upload
    conflict = db.query(Conflict).filter_by(record_id=att).one()
    value = dict(conflict.device_value, response_id=None)
    assert _resolve(api, conflict.id, "edit", value).status_code == 200
    db.expire_all()
    row = db.get(Attachment, att)
    assert (row.pending_upload, row.uploaded, row.inspection_id, row.site_id) == (
        False,
        True,
        first,
        env["sites"]["N-HOTEL"],
    )
    phone.sync()
    assert phone.get("attachments", att)["uploaded"] is True


def test_keep_server_of_a_duplicate_answer_keeps_the_servers_answer_scored(env, device, api, db):
    # Closing the conflict alone left the device's answer (9 °C, critical) live and scored:
    # the inspection stayed critically failed on the answer the manager chose against.
    a, iid, first, second, conflict = _duplicate(env, device, db)
    assert db.get(Inspection, iid).critical_failed
    assert _resolve(api, conflict.id, "keep_server").status_code == 200
    db.expire_all()
    assert db.get(Response, second).deleted_at is not None
    kept = db.get(Response, first)
    assert (kept.deleted_at, kept.value) == (None, "3")
    insp = db.get(Inspection, iid)
    assert (insp.critical_failed, insp.has_conflicts) == (False, False)
    assert not _unresolved(db, conflict.id)
    a.sync()
    assert a.get("responses", second) is None and a.get("responses", first) is not None
