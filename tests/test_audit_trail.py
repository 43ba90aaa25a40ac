"""The audit trail (domain.md): every transition is kept - who, when, from which device, old and
new state - for device-raised and auto-opened actions, device edits of actions, conflict
resolutions, occurrences fulfilled by a completion, and HQ administration."""

from __future__ import annotations

from sqlalchemy import select

from store.models import Action, AuditEvent, Conflict, Occurrence, Response, TemplateVersion
from tests.conftest import ANA, BEN, HQ_EMAIL, NORTH
from tests.sync_env import (
    answer,
    completed_with_action,
    concurrent_action_edit,
    daily_schedule,
    new_action,
    new_inspection,
    open_window,
)


def _events(db, entity, entity_id):
    db.expire_all()
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == entity_id)
        .order_by(AuditEvent.id)
    )
    return list(db.execute(stmt).scalars())


# --- finding 4: an action raised on a device ---------------------------------------------------


def test_an_action_raised_on_a_device_is_audited_with_its_device(env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    phone.sync()
    aid = new_action(phone, env, iid, title="Replace broken lamp", priority="medium", status="open")
    assert phone.sync()["conflicts"] == []
    assert db.get(Action, aid) is not None
    events = _events(db, "action", aid)
    assert [e.action for e in events] == ["create"]
    ev = events[0]
    assert ev.device_id == "phone"
    assert ev.actor_id == env["users"][ANA]
    assert ev.inspection_id == iid
    assert ev.changes["title"] == [None, "Replace broken lamp"]
    assert ev.changes["status"] == [None, "open"]


# --- finding 5: actions opened automatically on completion -------------------------------------


def test_actions_opened_on_completion_are_audited(env, device, db):
    _phone, iid, aid = completed_with_action(env, device, db)
    events = _events(db, "action", aid)
    assert [e.action for e in events] == ["create"]
    ev = events[0]
    assert ev.changes["source"] == "auto"
    assert ev.changes["status"] == [None, "open"]
    assert ev.changes["title"][0] is None and ev.changes["title"][1]
    assert ev.inspection_id == iid
    assert ev.actor_id == env["users"][ANA]
    assert ev.device_id == "phone"


# --- finding 6: a conflict resolution keeps old and new ----------------------------------------


def test_a_conflict_resolution_on_an_action_keeps_old_and_new(env, device, api, db):
    _phone, _iid, aid = completed_with_action(env, device, db)
    conflict = concurrent_action_edit(device, db, aid)
    resp = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "keep_server"})
    assert resp.status_code == 200
    db.expire_all()
    assert db.get(Action, aid).description == "from b"
    ev = [e for e in _events(db, "action", aid) if e.action == "resolve_conflict"]
    assert len(ev) == 1
    changes = ev[0].changes
    assert changes["resolution"] == "keep_server"
    assert changes["changes"]["description"] == ["from a", "from b"]
    # The action's own trail shows it too, through the read endpoint.
    trail = api.get(f"/actions/{aid}/audit", NORTH).get_json()
    assert any(e["action"] == "resolve_conflict" for e in trail)


def test_a_resolution_that_deletes_records_what_it_deleted(env, device, api, db):
    _phone, iid, _aid = completed_with_action(env, device, db)
    # The inspection is completed: a device's deletion of its answer is refused as locked.
    phone = device(ANA, "other")
    phone.sync()
    response = db.query(Response).filter_by(inspection_id=iid, item_key="fridge").one()
    phone.delete("responses", response.id)
    phone.sync()
    conflict = db.query(Conflict).filter_by(record_id=response.id, kind="locked").one()
    # Return the inspection so the deletion can be taken.
    assert (
        api.post(f"/inspections/{iid}/return", NORTH, json={"comment": "redo"}).status_code == 200
    )
    resp = api.post(f"/conflicts/{conflict.id}/resolve", NORTH, json={"resolution": "take_device"})
    assert resp.status_code == 200, resp.get_json()
    ev = [e for e in _events(db, "response", response.id) if e.action == "resolve_conflict"]
    assert len(ev) == 1
    changes = ev[0].changes
    assert changes["changes"]["deleted_at"][0] is None
    assert changes["changes"]["deleted_at"][1] is not None
    deleted = changes["deleted"]
    assert any(d["table"] == "responses" and d["id"] == response.id for d in deleted)
    gone = next(d for d in deleted if d["id"] == response.id)
    assert gone["before"]["item_key"] == "fridge"


# --- finding 7: device edits of an action ------------------------------------------------------


def test_device_edits_of_an_action_are_audited_old_and_new(env, device, db):
    phone, _iid, aid = completed_with_action(env, device, db)
    before = db.get(Action, aid)
    old_priority, old_due, old_title = before.priority, before.due_at, before.title
    phone.sync()
    phone.update("actions", aid, priority="low", due_at=1_900_000_000_000, title="changed")
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Action, aid).priority == "low"
    edits = [e for e in _events(db, "action", aid) if e.action == "update"]
    assert len(edits) == 1
    changes = edits[0].changes
    assert changes["priority"] == [old_priority, "low"]
    assert changes["due_at"] == [old_due, 1_900_000_000_000]
    assert changes["title"] == [old_title, "changed"]
    assert "status" not in changes
    assert edits[0].device_id == "phone"


def test_a_device_status_move_with_edits_is_one_event_with_all_changes(env, device, db):
    phone, _iid, aid = completed_with_action(env, device, db)
    phone.sync()
    phone.update("actions", aid, status="in_progress", description="on it")
    assert phone.sync()["conflicts"] == []
    moves = [e for e in _events(db, "action", aid) if e.action != "create"]
    assert len(moves) == 1
    assert moves[0].action == "transition"
    assert moves[0].changes["status"] == ["open", "in_progress"]
    assert moves[0].changes["description"][1] == "on it"


def test_a_device_deleting_an_action_is_audited(env, device, db):
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env)
    phone.sync()
    aid = new_action(phone, env, iid, title="Oops", priority="low", status="open")
    phone.sync()
    phone.delete("actions", aid)
    assert phone.sync()["conflicts"] == []
    updates = [e for e in _events(db, "action", aid) if e.action == "update"]
    assert len(updates) == 1
    assert updates[0].changes["deleted_at"][0] is None
    assert updates[0].changes["deleted_at"][1] is not None


def test_a_refused_device_move_audits_nothing(env, device, db):
    phone, _iid, aid = completed_with_action(env, device, db)
    phone.sync()
    phone.update("actions", aid, status="verified")  # an inspector cannot verify
    assert phone.sync()["conflicts"]
    assert [e.action for e in _events(db, "action", aid)] == ["create"]


# --- finding 8: an occurrence fulfilled by a completion ----------------------------------------


def test_an_occurrence_fulfilled_by_a_completion_is_audited(api, env, device, db):
    sid = daily_schedule(api, env, assignee_ids=[env["users"][ANA]])
    occ = db.query(Occurrence).filter_by(schedule_id=sid).order_by(Occurrence.due_at).first()
    open_window(db, occ.id)
    old_status = occ.status
    phone = device(ANA, "phone")
    phone.sync()
    iid = new_inspection(phone, env, occurrence_id=occ.id, mode="scheduled")
    answer(phone, iid, "clean", "yes")
    answer(phone, iid, "fridge", 3)
    phone.update("inspections", iid, status="completed")
    assert phone.sync()["conflicts"] == []
    db.expire_all()
    assert db.get(Occurrence, occ.id).status == "done"
    events = _events(db, "occurrence", occ.id)
    assert [e.action for e in events] == ["fulfil"]
    assert events[0].changes == {"status": [old_status, "done"], "inspection_id": [None, iid]}
    assert events[0].inspection_id == iid
    assert events[0].device_id == "phone"


# --- finding 9: HQ administration --------------------------------------------------------------


def test_deactivating_and_changing_a_user_is_audited(api, demo_org, db):
    ben = demo_org[BEN]
    hq = demo_org[HQ_EMAIL]
    resp = api.patch(f"/users/{ben}", HQ_EMAIL, json={"active": False})
    assert resp.status_code == 200, resp.get_json()
    resp = api.patch(
        f"/users/{ben}", HQ_EMAIL, json={"name": "Benjamin", "password": "a-new-password-9"}
    )
    assert resp.status_code == 200, resp.get_json()
    events = _events(db, "user", ben)
    assert [e.action for e in events] == ["update", "update"]
    assert all(e.actor_id == hq for e in events)
    assert events[0].changes == {"active": [True, False]}
    assert events[1].changes["name"][1] == "Benjamin"
    assert events[1].changes["password_changed"] is True
    assert "hash" not in str(events[1].changes) and "a-new-password" not in str(events[1].changes)


def test_creating_a_user_region_site_and_assignment_is_audited(api, demo_org, db):
    hq = demo_org[HQ_EMAIL]
    region = api.post("/regions", HQ_EMAIL, json={"name": "East", "code": "E"}).get_json()
    site = api.post(
        "/sites", HQ_EMAIL, json={"region_id": region["id"], "name": "East Inn", "code": "E-1"}
    ).get_json()
    user = api.post(
        "/users",
        HQ_EMAIL,
        json={
            "email": "eve@demo.example",
            "name": "Eve",
            "role": "inspector",
            "password": "pw-long-enough-1",
        },
    ).get_json()
    assignment = api.post(
        "/assignments", HQ_EMAIL, json={"user_id": user["id"], "site_id": site["id"]}
    ).get_json()
    assert (
        api.patch(f"/sites/{site['id']}", HQ_EMAIL, json={"name": "East Hotel"}).status_code == 200
    )
    assert (
        api.patch(f"/regions/{region['id']}", HQ_EMAIL, json={"name": "Eastern"}).status_code == 200
    )
    assert api.delete(f"/assignments/{assignment['id']}", HQ_EMAIL).status_code == 204

    (reg_create, reg_update) = _events(db, "region", region["id"])
    assert reg_create.action == "create" and reg_create.changes["code"] == [None, "E"]
    assert reg_update.changes == {"name": ["East", "Eastern"]}
    site_events = _events(db, "site", site["id"])
    assert [e.action for e in site_events] == ["create", "update"]
    assert site_events[1].changes == {"name": ["East Inn", "East Hotel"]}
    (user_create,) = _events(db, "user", user["id"])
    assert user_create.action == "create"
    assert user_create.changes["role"] == [None, "inspector"]
    assert user_create.changes["email"] == [None, "eve@demo.example"]
    assert "password_hash" not in user_create.changes
    assign_events = _events(db, "site_assignment", assignment["id"])
    assert [e.action for e in assign_events] == ["assign", "revoke"]
    assert assign_events[0].changes["user_id"] == [None, user["id"]]
    assert assign_events[1].changes["revoked_at"][0] is None
    assert all(e.actor_id == hq for e in [reg_create, *site_events, user_create, *assign_events])


def test_closing_a_site_is_audited(api, demo_org, db):
    site = next(s for s in api.get("/sites", HQ_EMAIL).get_json() if s["code"] == "S-STORE")
    assert api.delete(f"/sites/{site['id']}", HQ_EMAIL).status_code == 204
    (ev,) = _events(db, "site", site["id"])
    assert ev.action == "delete"
    assert ev.changes["deleted_at"][0] is None and ev.changes["deleted_at"][1]


def test_publishing_a_template_is_audited(env, demo_org, db):
    version = db.get(TemplateVersion, env["template"])
    (ev,) = _events(db, "template", version.draft_id)
    assert ev.action == "publish"
    assert ev.actor_id == demo_org[HQ_EMAIL]
    assert ev.changes["latest_version"] == [0, 1]
    assert ev.changes["version_id"] == version.id
